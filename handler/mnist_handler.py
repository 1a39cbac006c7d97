"""TorchServe handler: canvas drawing in, digit and probabilities out.

preprocess turns each drawing into MNIST's 28x28 form (handler/mnist_form.py, the same code every
evaluation uses; the pen's strokes, when a body carries them, checked by handler/pen.py), inference
runs the TorchScript CNN on the device TorchServe assigned, postprocess answers JSON per request
(handler/answers.py). Bad input in one drawing gets its own 4xx and does not fail the others.

A request carries one drawing as its body, or several as multipart/form-data parts named drawing-0,
drawing-1, ... (the web app packs drawings that arrive together: web/batching.py). A part named
number-N is a drawing of a whole number (POST /read): cut into its digits (handler/segment.py
read_candidates), every candidate piece of every drawing goes through the model in the same batch, and
the model's scores choose the cuts (handler/answers.py choose), weighed by the piece reader's where the
archive has one (pieces.pt, train/piece_reader.py: a small network trained on pieces of numbers, run on
the pieces only; handler/answers.py read_digits). A request of parts is answered 200 with
a JSON array, one {"status": ..., "answer": ..., "pieces": ...} per part, in their order: the answer is
what the part alone would have been answered, with that status; pieces the images of it the model read
(a number's candidate pieces, a digit's 1, 0 when refused before the model): the work it was, which the
web app charges /read's rate limit by (web/ratelimit.py).

A model of 11 outputs also says "not a digit" (docs/not-a-digit.md; the rule: handler/answers.py), and
such a drawing is answered 422 with reason "not_a_digit", the best digit guess and its probabilities
over the ten digits. A model of 10 outputs (older versions) never rejects. Blank canvases and specks
are 422 with reason "no_digit".

A part named memory-N beside drawing-N or number-N is that drawing's writer's memory (handler/adapt.py,
docs/writers.md): the model's answers to the drawing are blended with it, and say "adapted". The model is
split at its last Linear at load (handler/features.py) so one pass gives the features the memory is
compared by; a drawing without a memory part is answered as ever.

In the .mar this file is the handler module, mnist_handler, and the modules it imports travel beside it
as the package handler/ (Makefile, archive): `handler.x` is imported the same way there as in the
repository.
"""

import gc
import json
import logging
import os
import warnings
import zlib

import cv2
import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

from handler.adapt import Memories, adapt, unpack
from handler.answers import PIECE_READER_FILE, digit_answer, error_answer, number_answer
from handler.errors import DrawingFault, InputError
from handler.features import split
from handler.pen import digit_image
from handler.segment import Candidates, read_candidates

# TorchScript is deprecated upstream and torch.jit.load, script, freeze and optimize_for_inference say so on every
# call; we use them knowingly.
warnings.filterwarnings(
    "ignore",
    message=r"`torch\.jit\.(load|freeze|optimize_for_inference|script)` is deprecated",
    category=FutureWarning,
)
log = logging.getLogger(__name__)
PART = "drawing-"  # the name of a drawing in a request of several, before its index
NUMBER = "number-"  # the name of a drawing of a number (POST /read), before its index
MEMORY = "memory-"  # the name of the writer's memory of the drawing of that index (handler/adapt.py)


def set_threads(count: int) -> None:
    """Workers share the cores: `count` threads each (one unless the config says otherwise), for torch and
    for OpenCV alike. OpenCV's default, a thread per core, spreads a number's larger images over both
    cores and spent a quarter more CPU on a /read than one thread (docs/performance.md): under load every
    core is busy already, and the CPU is what a prediction costs."""
    torch.set_num_threads(count)
    cv2.setNumThreads(count)


def for_inference(model: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Freezing inlines the weights as constants; optimize_for_inference then folds batch norms into the
    convolutions and fuses what it can for this machine: same outputs (within float rounding), ~1.4x
    faster per batch here. Done at load so the exported model.pt stays the plain one."""
    return torch.jit.optimize_for_inference(torch.jit.freeze(model.eval()))


class MnistHandler(BaseHandler):
    def initialize(self, context):
        options = (context.model_yaml_config or {}).get("handler", {})
        set_threads(int(options.get("torch_threads", 1)))
        super().initialize(context)  # loads model.pt onto cuda:<gpu_id> when TorchServe gives a GPU
        # (outputs, features) from one pass when the model can be cut before its last Linear; else outputs
        # only, and memory parts are ignored (no adaptation).
        parts = split(self.model.eval())
        self.with_features = parts is not None
        self.model = for_inference(parts if parts is not None else self.model)
        self.memories = Memories(self._features)
        self.version = str(context.manifest["model"].get("modelVersion", ""))
        self.pieces = _piece_reader(context.system_properties.get("model_dir"), self.device)
        with torch.inference_mode():  # the first call is slow (allocations); pay it before serving
            for net in filter(None, (self.model, self.pieces)):
                net(torch.zeros(1, 1, 28, 28, device=self.device))
        # torch's import leaves ~10^5 objects that live as long as the worker: out of the collector's
        # sight, a full collection no longer walks them in the middle of a batch (a tail-latency hiccup).
        gc.freeze()

    def preprocess(self, data):
        """Per request, its drawings: each the 28x28 image, or the InputError that says what is wrong
        with it; and whether the request came as parts (answered as a list)."""
        requests = []
        for row in data:
            parts, memories = [], {}
            for name, value in row.items():
                if name.startswith((PART, NUMBER)):
                    read = _image if name.startswith(PART) else _candidates
                    parts.append((name.partition("-")[2], read(value)))
                elif name.startswith(MEMORY):
                    memories[name[len(MEMORY) :]] = bytes(value)
            items = [item for _, item in parts] or [_image(_body(row))]
            requests.append((bool(parts), items, [memories.get(index) for index, _ in parts] or [None]))
        return requests

    def inference(self, requests, *args, **kwargs):
        """Every good image of every request through the model at once (a number's candidate pieces
        among them); each item becomes (image or candidates, probabilities, adapted) or stays its
        InputError. A drawing with its writer's memory has its probabilities blended with it."""
        items = [item for _, request_items, _ in requests for item in request_items]
        memories = [self._memory(m) for _, _, request_memories in requests for m in request_memories]
        for i, memory in enumerate(memories):
            if isinstance(memory, InputError) and not isinstance(items[i], InputError):
                items[i] = memory
        good = [i for i, item in enumerate(items) if not isinstance(item, InputError)]
        if good:
            images = [_images(items[i]) for i in good]
            probabilities, features = self._run(np.concatenate(images))
            pieces = self._pieces([items[i].images for i in good if isinstance(items[i], Candidates)])
            start, piece = 0, 0
            for i, some in zip(good, images, strict=True):
                end = start + len(some)
                rows, adapted = adapt(probabilities[start:end], features[start:end], memories[i])
                if isinstance(items[i], Candidates):
                    mine = pieces[piece : piece + len(some)] if pieces is not None else None
                    piece += len(some)
                    items[i] = (items[i], (rows, mine), adapted)
                else:
                    items[i] = (items[i], rows[0], bool(adapted[0]))
                start = end
        outputs, start = [], 0
        for as_parts, request_items, _ in requests:
            outputs.append((as_parts, items[start : start + len(request_items)]))
            start += len(request_items)
        return outputs

    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(softmax outputs, features) of (n, 28, 28) images; features (n, 0) when the model has none."""
        batch = torch.from_numpy(images).unsqueeze(1).to(self.device)
        with torch.inference_mode():
            out = self.model(batch)
            outputs, features = out if self.with_features else (out, batch.new_zeros(len(batch), 0))
            probabilities = torch.softmax(outputs.float(), dim=1).cpu().numpy()
        return probabilities, features.float().cpu().numpy()

    def _pieces(self, numbers: list) -> np.ndarray | None:
        """The piece reader's softmax outputs for every candidate piece of these numbers, one batch; None
        without numbers or a piece reader (a version trained before it, or with PIECES=0)."""
        if not numbers or self.pieces is None:
            return None
        batch = torch.from_numpy(np.concatenate(numbers)).unsqueeze(1).to(self.device)
        with torch.inference_mode():
            return torch.softmax(self.pieces(batch).float(), dim=1).cpu().numpy()

    def _features(self, images: np.ndarray) -> np.ndarray:
        return self._run(images)[1]

    def _memory(self, blob: bytes | None):
        """A memory part as (labels, normalised features): cached per worker, derived here by this model
        on a miss; None without one (or with an empty one, or a model without features); InputError
        when it is malformed."""
        if blob is None or not self.with_features:
            return None
        found = self.memories.get(blob)
        if found is None:
            try:
                labels, images = unpack(blob)
            except (ValueError, zlib.error):
                return InputError("the writer's memory part is malformed")
            if not len(labels):
                return None
            found = self.memories.put(blob, labels, self._features(images))
        return found

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
        image, probabilities, adapted = item
        if isinstance(image, Candidates):  # a number: its digits, left to right
            rows, pieces = probabilities
            return number_answer(image, rows, self.version, adapted, pieces)
        return digit_answer(image, probabilities, self.version, adapted)


def _piece_reader(model_dir: str | None, device) -> torch.jit.ScriptModule | None:
    """pieces.pt of the archive (train/piece_reader.py), ready to run; None in a version without one."""
    path = os.path.join(model_dir or "", PIECE_READER_FILE)
    if not os.path.exists(path):
        return None
    return for_inference(torch.jit.load(path, map_location=device))


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
