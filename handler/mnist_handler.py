"""TorchServe handler: canvas drawing in, digit and probabilities out.

preprocess turns each request into MNIST's 28x28 form (handler/preprocess.py, the same code every
evaluation uses), inference runs the TorchScript CNN on the device TorchServe assigned, postprocess
answers JSON per item. Bad input in one item of a batch gets its own 4xx and does not fail the others.
"""

import base64
import gc
import json
import warnings

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

try:  # inside the .mar, preprocess.py sits beside this file
    from preprocess import InputError, preprocess
except ImportError:  # from the repository, as the package `handler`
    from handler.preprocess import InputError, preprocess

# TorchScript is deprecated upstream and torch.jit.load, freeze and optimize_for_inference say so on every
# call; we use them knowingly.
warnings.filterwarnings(
    "ignore",
    message=r"`torch\.jit\.(load|freeze|optimize_for_inference)` is deprecated",
    category=FutureWarning,
)


def for_inference(model: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Freezing inlines the weights as constants; optimize_for_inference then folds batch norms into the
    convolutions and fuses what it can for this machine: same outputs (within float rounding), ~1.4x
    faster per batch here. Done at load so the exported model.pt stays the plain one."""
    return torch.jit.optimize_for_inference(torch.jit.freeze(model.eval()))


class MnistHandler(BaseHandler):
    def initialize(self, context):
        options = (context.model_yaml_config or {}).get("handler", {})
        # Workers share the cores: one intra-op thread each unless the config says otherwise.
        torch.set_num_threads(int(options.get("torch_threads", 1)))
        super().initialize(context)  # loads model.pt onto cuda:<gpu_id> when TorchServe gives a GPU
        self.model = for_inference(self.model)
        self.version = str(context.manifest["model"].get("modelVersion", ""))
        with torch.inference_mode():  # the first call is slow (allocations); pay it before serving
            self.model(torch.zeros(1, 1, 28, 28, device=self.device))
        # torch's import leaves ~10^5 objects that live as long as the worker: out of the collector's
        # sight, a full collection no longer walks them in the middle of a batch (a tail-latency hiccup).
        gc.freeze()

    def preprocess(self, data):
        """One entry per request: the 28x28 image, or the InputError that explains what is wrong."""
        items = []
        for row in data:
            body = row.get("data")
            if body is None:
                body = row.get("body")
            try:
                items.append(preprocess(body if body is not None else b""))
            except InputError as error:
                items.append(error)
        return items

    def inference(self, items, *args, **kwargs):
        good = [i for i, item in enumerate(items) if not isinstance(item, InputError)]
        outputs = list(items)
        if good:
            batch = torch.from_numpy(np.stack([items[i] for i in good])).unsqueeze(1).to(self.device)
            with torch.inference_mode():
                probabilities = torch.softmax(self.model(batch).float(), dim=1).cpu()
            for row, i in enumerate(good):
                outputs[i] = (items[i], probabilities[row])
        return outputs

    def postprocess(self, outputs):
        """One JSON document per request, encoded here: given a dict, TorchServe's worker would encode it
        with indent=2, which takes Python's slow pure-Python encoder and pads every answer with
        whitespace."""
        answers = []
        for idx, output in enumerate(outputs):
            self.context.set_response_content_type(idx, "application/json")
            if isinstance(output, InputError):
                self.context.set_response_status(output.status, str(output), idx)
                answers.append(_json({"error": str(output)}))
                continue
            image, probabilities = output
            answers.append(
                _json(
                    {
                        "digit": int(probabilities.argmax()),
                        "probabilities": probabilities.tolist(),
                        "version": self.version,
                        # What the model saw: 784 bytes, row-major, 255 = ink; the page draws it back.
                        "input_28x28": base64.b64encode((image * 255).round().astype(np.uint8)).decode(),
                    }
                )
            )
        return answers


def _json(answer: dict) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode()
