"""TorchServe handler: canvas drawing in, digit and probabilities out.

preprocess turns each drawing into MNIST's 28x28 form (handler/mnist_form.py, the same code every
evaluation uses; the pen's strokes, when a body carries them, checked by handler/pen.py), inference
runs the TorchScript CNN on the device TorchServe assigned, postprocess answers JSON per request
(handler/answers.py). Bad input in one drawing gets its own 4xx and does not fail the others.

A request carries one drawing as its body, or several as multipart/form-data parts named drawing-0,
drawing-1, ... (the web app packs drawings that arrive together: web/batching.py). A part named
number-N is a drawing of a whole number (POST /read): cut into its digits (handler/segment.py
read_candidates), every candidate piece of every drawing goes through the model in the same batch, and
the model's scores choose the cuts (handler/answers.py choose). A request of parts is answered 200 with
a JSON array, one {"status": ..., "answer": ..., "pieces": ...} per part, in their order: the answer is
what the part alone would have been answered, with that status; pieces the images of it the model read
(a number's candidate pieces, a digit's 1, 0 when refused before the model): the work it was, which the
web app charges /read's rate limit by (web/ratelimit.py).

A model of 11 outputs also says "not a digit" (docs/not-a-digit.md; the rule: handler/answers.py), and
such a drawing is answered 422 with reason "not_a_digit", the best digit guess and its probabilities
over the ten digits. A model of 10 outputs (older versions) never rejects. Blank canvases and specks
are 422 with reason "no_digit".

In the .mar this file is the handler module, mnist_handler, and the modules it imports travel beside it
as the package handler/ (Makefile, archive): `handler.x` is imported the same way there as in the
repository.
"""

import gc
import json
import logging
import warnings

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

from handler.answers import digit_answer, error_answer, number_answer
from handler.errors import DrawingFault, InputError
from handler.pen import digit_image
from handler.segment import Candidates, read_candidates

# TorchScript is deprecated upstream and torch.jit.load, freeze and optimize_for_inference say so on every
# call; we use them knowingly.
warnings.filterwarnings(
    "ignore",
    message=r"`torch\.jit\.(load|freeze|optimize_for_inference)` is deprecated",
    category=FutureWarning,
)
log = logging.getLogger(__name__)
PART = "drawing-"  # the name of a drawing in a request of several, before its index
NUMBER = "number-"  # the name of a drawing of a number (POST /read), before its index


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
        """Per request, its drawings: each the 28x28 image, or the InputError that says what is wrong
        with it; and whether the request came as parts (answered as a list)."""
        requests = []
        for row in data:
            parts = [
                _image(value) if name.startswith(PART) else _candidates(value)
                for name, value in row.items()
                if name.startswith((PART, NUMBER))
            ]
            requests.append((bool(parts), parts or [_image(_body(row))]))
        return requests

    def inference(self, requests, *args, **kwargs):
        """Every good image of every request through the model at once (a number's candidate pieces
        among them); each item becomes (image or candidates, probabilities) or stays its InputError."""
        items = [item for _, request_items in requests for item in request_items]
        good = [i for i, item in enumerate(items) if not isinstance(item, InputError)]
        if good:
            images = [_images(items[i]) for i in good]
            batch = torch.from_numpy(np.concatenate(images)).unsqueeze(1).to(self.device)
            with torch.inference_mode():
                probabilities = torch.softmax(self.model(batch).float(), dim=1).cpu().numpy()
            start = 0
            for i, some in zip(good, images, strict=True):
                end = start + len(some)
                rows = probabilities[start:end]
                items[i] = (items[i], rows if isinstance(items[i], Candidates) else rows[0])
                start = end
        outputs, start = [], 0
        for as_parts, request_items in requests:
            outputs.append((as_parts, items[start : start + len(request_items)]))
            start += len(request_items)
        return outputs

    def postprocess(self, outputs):
        """One JSON document per request, encoded here: given a dict, TorchServe's worker would encode it
        with indent=2, which takes Python's slow pure-Python encoder and pads every answer with
        whitespace."""
        answers = []
        for idx, (as_parts, items) in enumerate(outputs):
            self.context.set_response_content_type(idx, "application/json")
            if as_parts:
                parts = [
                    {"status": status, "answer": answer, "pieces": _pieces(item)}
                    for item, (status, answer) in zip(items, map(self._answer, items), strict=True)
                ]
                answers.append(_json(parts))
                continue
            status, answer = self._answer(items[0])
            if status != 200:
                self.context.set_response_status(status, answer["error"], idx)
            answers.append(_json(answer))
        return answers

    def _answer(self, item) -> tuple[int, dict]:
        if isinstance(item, InputError):
            return error_answer(item)
        image, probabilities = item
        if isinstance(image, Candidates):  # a number: its digits, left to right
            return number_answer(image, probabilities, self.version)
        return digit_answer(image, probabilities, self.version)


def _body(row: dict):
    """A lone drawing: the body TorchServe hands over (a form's field `data`, or the raw body)."""
    body = row.get("data")
    if body is None:
        body = row.get("body")
    return body if body is not None else b""


def _image(body):
    return _read_alone(digit_image, body)


def _candidates(body):
    return _read_alone(read_candidates, body)


def _read_alone(read, body):
    """What `read` makes of one drawing, or the error that is its answer: a fault in reading one drawing
    stays that drawing's (DrawingFault, a 500 of its own), never the batch's."""
    try:
        return read(body)
    except InputError as error:
        return error
    except Exception:
        log.exception("reading one drawing failed")
        return DrawingFault("the handler failed on this drawing (logged); the others are answered")


def _images(item) -> np.ndarray:
    """(n, 28, 28): a digit's one image, or a number's candidate pieces."""
    return item.images if isinstance(item, Candidates) else item[np.newaxis]


def _pieces(item) -> int:
    """The images of a drawing that went through the model (what inference made of _images)."""
    if isinstance(item, InputError):
        return 0
    return len(item[0].images) if isinstance(item[0], Candidates) else 1


def _json(answer: dict | list) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode()
