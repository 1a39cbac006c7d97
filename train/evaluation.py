"""Scoring the served model's answers to drawings: the one definition that `make evaluate`
(scripts/lifecycle.py, through TorchServe by version), `make bench-canvas` (bench/canvas_accuracy.py,
through the web app or in-process) and bench/read_accuracy.py's single digits all report.

A Result is (label, digit read, the guess's probabilities over the ten digits). The digit read is
NOT_A_DIGIT (10) where the answer was 422 "not_a_digit": wrong for a real digit, right for a non-digit
(label 10); None where the drawing was refused otherwise (a 4xx such as "no digit drawn"): wrong. The
ECE is of the digits answered, refused drawings (None and "not a digit") left out and counted
(train/calibration.py answered_calibration_error).
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

from handler.answers import NOT_A_DIGIT, digit_answer
from train.calibration import answered_calibration_error

# label, digit read (None: refused as no digit; 10: answered "not a digit"), the guess's probabilities
Result = tuple[int, int | None, list[float] | None]


def read_of(status: int, answer: dict) -> int | None:
    """The digit an answer (handler/mnist_handler.py's, as the web app relays it) reads."""
    if status == 422 and answer.get("reason") == "not_a_digit":
        return NOT_A_DIGIT
    return answer.get("digit") if status == 200 else None


def result(label: int, status: int, answer: dict) -> Result:
    return label, read_of(status, answer), answer.get("probabilities")


@dataclass
class Score:
    n: int
    accuracy: float
    ece: float  # of the digits answered (train/calibration.py answered_calibration_error)
    per_digit: dict  # digit -> accuracy (NaN: no such label)
    right: list  # per drawing: read right?
    rejected: list  # per drawing: answered "not a digit"?
    refused: int = 0  # drawings answered with no digit (4xx, "not a digit" too): outside the ECE


def score(results: list[Result], bins: int = 15) -> Score:
    labels = [label for label, _, _ in results]
    right = [read == label for label, read, _ in results]
    rejected = [read == NOT_A_DIGIT for _, read, _ in results]
    per_digit = {}
    for digit in range(10):
        mine = [r for r, label in zip(right, labels, strict=True) if label == digit]
        per_digit[digit] = sum(mine) / len(mine) if mine else math.nan
    given = [None if read in (None, NOT_A_DIGIT) else p for _, read, p in results]
    ece, refused = answered_calibration_error(given, labels, bins)
    return Score(len(right), sum(right) / len(right), ece, per_digit, right, rejected, refused)


def in_process(model_path: Path, items: list[tuple[int, bytes]]) -> tuple[list[Result], list[float]]:
    """The served preprocess() and model without the servers, read as handler/mnist_handler.py answers:
    (a Result per (label, body), preprocess() seconds per body)."""
    import warnings

    import numpy as np
    import torch

    # TorchScript is deprecated upstream and torch.jit.load says so; we use it knowingly.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)

    from handler.errors import InputError
    from handler.mnist_form import preprocess

    torch.set_num_threads(1)
    model = torch.jit.load(str(model_path), map_location="cpu").eval()
    images, seconds = [], []
    for _, body in items:
        start = time.perf_counter()
        try:
            images.append(preprocess(body))
        except InputError:
            images.append(None)
        seconds.append(time.perf_counter() - start)
    good = [i for i, image in enumerate(images) if image is not None]
    with torch.inference_mode():
        batch = torch.from_numpy(np.stack([images[i] for i in good])).unsqueeze(1)
        probabilities = dict(zip(good, torch.softmax(model(batch), 1).tolist(), strict=True))
    results = [(label, None, None) for label, _ in items]
    for i, p in probabilities.items():  # answered by the handler's own rule (handler/answers.py)
        status, answer = digit_answer(images[i], np.asarray(p), "")
        read, digits = (NOT_A_DIGIT if status == 422 else answer["digit"]), answer["probabilities"]
        results[i] = (items[i][0], read, digits)
    return results, seconds
