"""A writer's memory, and the rule that blends it with the model (docs/writers.md): one source of truth for
serving (handler/mnist_handler.py) and the benchmark's in-process trial (bench/adaptation.py).

A writer's memory is the drawings they corrected, or confirmed while the page said "not sure", as the
model's 28x28 inputs with their labels (0-9, 10 "not a digit"); the web app keeps it (web/writers.py) and
sends it beside each drawing as one part (pack). Here it becomes the model's features of those drawings
(handler/features.py: the input of the last Linear), L2-normalised, cached per worker by the part's hash:
a worker, hence a model version, derives them from the stored drawings itself, so a new version never
reads another's features.

The rule, per image the model read (a /predict drawing, each candidate piece of a /read): a product of
experts. Every remembered drawing whose features are closer than SIMILAR (cosine) adds evidence for its
label, STRENGTH x (similarity - SIMILAR) / (1 - SIMILAR) to its log-odds, summed per label; the
probabilities become softmax(log p + evidence), and the answer says "adapted". The model's confidence and
the memory's closeness so weigh against each other: a model sure of a 2 keeps it beside a writer's 3 that
is merely near, and a drawing the writer corrected before (similarity ~1, +10) takes the writer's label
even from "not a digit". SIMILAR and STRENGTH were chosen in-process (bench/adaptation_trial.py) on pen
writers 17-20 with a model trained without them (TUNE=1), and writers 21-30 measured once with them,
through the stack (docs/writers.md).
"""

import hashlib
import zlib
from collections import OrderedDict

import numpy as np

SIDE = 28 * 28  # bytes of one remembered 28x28 (row-major, 255 = ink)
SIMILAR = 0.85  # cosine similarity of features above which a remembered drawing is evidence
STRENGTH = 10.0  # the log-odds a remembered drawing adds to its label when it is the same drawing
NOT_A_DIGIT = 10
CACHED_WRITERS = 256  # memories whose features a worker keeps (64 x 128 floats each: ~33 KB)


def pack(labels: list[int], images: list[bytes]) -> bytes:
    """A memory as one part: zlib of (n, the n labels, the n 784-byte 28x28s)."""
    return zlib.compress(bytes([len(labels)]) + bytes(labels) + b"".join(images), 6)


def unpack(blob: bytes, most: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """(labels (n,), images (n, 28, 28) float32 in [0, 1]); ValueError for anything else."""
    raw = zlib.decompressobj().decompress(blob, 1 + most + most * SIDE)
    n = raw[0] if raw else 0
    if not raw or n > most or len(raw) != 1 + n + n * SIDE:
        raise ValueError("a writer's memory part is malformed")
    labels = np.frombuffer(raw, np.uint8, n, 1).astype(np.int64)
    if (labels > NOT_A_DIGIT).any():
        raise ValueError("a writer's memory holds a label that is no digit")
    images = np.frombuffer(raw, np.uint8, n * SIDE, 1 + n).reshape(n, 28, 28).astype(np.float32) / 255
    return labels, images


class Memories:
    """Per worker: a memory part's hash -> (labels, normalised features). Features are computed by
    features_of (images -> (n, d) array) on a miss; the least recently used memory goes past the bound."""

    def __init__(self, features_of, size: int = CACHED_WRITERS):
        self.features_of = features_of
        self.size = size
        self.cache: OrderedDict = OrderedDict()

    def key(self, blob: bytes) -> bytes:
        return hashlib.sha256(blob).digest()

    def get(self, blob: bytes):
        """(labels, features) of a memory part, or None if it is not cached."""
        key = self.key(blob)
        found = self.cache.get(key)
        if found is not None:
            self.cache.move_to_end(key)
        return found

    def put(self, blob: bytes, labels: np.ndarray, features: np.ndarray):
        self.cache[self.key(blob)] = found = (labels, normalised(features))
        while len(self.cache) > self.size:
            self.cache.popitem(last=False)
        return found


def normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


def adapt(
    probabilities: np.ndarray,
    features: np.ndarray,
    memory,
    similar: float = SIMILAR,
    strength: float = STRENGTH,
) -> tuple[np.ndarray, np.ndarray]:
    """The rule, for a batch: probabilities (n, k) softmax outputs, features (n, d) of the same images,
    memory (labels, normalised features) or None. Gives (probabilities as answered, adapted (n,) bool).
    similar, strength: the rule's constants, other than the served ones only to choose them
    (bench/adaptation_trial.py)."""
    adapted = np.zeros(len(probabilities), bool)
    if memory is None or not len(memory[0]) or not len(probabilities):
        return probabilities, adapted
    labels, remembered = memory
    k = probabilities.shape[1]
    # Each remembered drawing closer than SIMILAR is evidence for its label, growing from 0 at SIMILAR
    # to STRENGTH at the same drawing; a label's evidence is the sum over its drawings.
    evidence = np.maximum(normalised(features) @ remembered.T - similar, 0) * (strength / (1 - similar))
    known = labels < k  # "not a digit" remembered means nothing to a model of 10 outputs
    votes = np.zeros((len(labels), k), np.float32)
    votes[np.flatnonzero(known), labels[known]] = 1
    shift = evidence @ votes  # (n, k)
    adapted = shift.max(axis=1) > 0
    if not adapted.any():
        return probabilities, adapted
    blended = probabilities.astype(np.float64) * np.exp(shift)
    return blended / blended.sum(axis=1, keepdims=True), adapted
