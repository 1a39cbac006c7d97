"""The answer to a drawing (docs/api.md): the reading the model's outputs choose, and the JSON that says
it. One builder (_read) makes what an answer says of one image the model read: /predict's answer is
one, each of /read's digits another.

"Not a digit" (docs/not-a-digit.md) has its one home here. A model of 11 outputs says it with the 11th,
index NOT_A_DIGIT (also the label training and the feedback store give it): a drawing is "not a digit"
when softmax(outputs)[NOT_A_DIGIT] > NOT_A_DIGIT_ABOVE (not_a_digit). The export bakes the threshold
training chose into that output (train/rejection.py), so serving needs this one fixed rule and no
number of its own. A model of 10 outputs (older versions) never says it. The guess is shown either
way: the ten digits' probabilities, renormalised over the ten.
"""

import base64
import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError, TooManyDigitsError
from .segment import MAX_DIGITS, ONE_DIGIT_ASPECT, Candidates, read_candidates

NOT_A_DIGIT = 10  # the model's 11th output, when it has one; the label of "not a digit"
NOT_A_DIGIT_ABOVE = 0.5  # softmax(outputs)[NOT_A_DIGIT] over this: "not a digit"
# Log-probability a reading pays per piece past the first of what is nearly always one digit (choose()).
# Chosen on writers 17-20 (TUNE=1 model, in-process; docs/reading.md): with the narrow drawing's whole
# (handler/segment.py ONE_DIGIT_ASPECT), /read of single digits drawn alone went from 98.04 to 98.65%
# (/predict 98.70%), numbers apart 90.33 -> 92.00%, touching unchanged; 0.5 cost touching numbers with
# strokes 0.7 points.
EXTRA_PIECE = -0.3
# The piece reader's weight (train/piece_reader.py, pieces.pt beside model.pt): each piece /read cut has its
# digit probabilities multiplied by the piece reader's to this power, not renormalised, so that a piece it
# calls "not one digit" (two touching digits, or part of one) scores low in choose(). Chosen on writers
# 17-20 (TUNE=1 models, in-process, 900 numbers each way and 1,994 single digits; docs/reading.md): with
# 0.5, the picture alone read touching numbers 40.3 -> 55.7% exact, close 91.0 -> 92.7%, apart 92.0 ->
# 92.7%; with strokes 88.3 -> 90.7%, 91.3 -> 93.0%, 92.0 -> 93.0%; single digits 0.1 lower (2 of 1,994).
# 1.0 read numbers a little better and single digits 0.35 lower; 0.3 touching numbers a point lower.
PIECE_WEIGHT = 0.5
PIECE_READER_FILE = "pieces.pt"  # beside model.pt in a model's directory and its archive


def not_a_digit(probabilities) -> bool:
    """Whether one drawing's softmax outputs (10 or 11 of them: an array, a tensor or a list) say "not a
    digit"."""
    return len(probabilities) > NOT_A_DIGIT and bool(probabilities[NOT_A_DIGIT] > NOT_A_DIGIT_ABOVE)


def not_a_digit_rows(probabilities):
    """not_a_digit() of each row of a batch of 11 softmax outputs (an array or a tensor, n x 11), as n
    booleans of the same kind."""
    return probabilities[:, NOT_A_DIGIT] > NOT_A_DIGIT_ABOVE


def _read(image: np.ndarray, probabilities: np.ndarray, **fields) -> tuple[bool, dict]:
    """One image the model read, as an answer says it: whether it is "not a digit", and {"digit": the best
    of the ten digits, "probabilities": the ten renormalised over themselves, **fields, "input_28x28"}."""
    guess = probabilities[:NOT_A_DIGIT] / probabilities[:NOT_A_DIGIT].sum()
    answer = {
        "digit": int(guess.argmax()),
        "probabilities": guess.tolist(),
        **fields,
        # What the model saw: 784 bytes, row-major, 255 = ink; the page draws it back.
        "input_28x28": base64.b64encode((image * 255).round().astype(np.uint8)).decode(),
    }
    return not_a_digit(probabilities), answer


def error_answer(error: InputError) -> tuple[int, dict]:
    """(status, answer) for a drawing refused before or after the model: its message, and its reason
    where it has one (no_digit, two_lines, too_many_digits)."""
    answer = {"error": str(error)}
    if getattr(error, "reason", None):
        answer["reason"] = error.reason
    return error.status, answer


def digit_answer(
    image: np.ndarray, probabilities: np.ndarray, version: str, adapted: bool = False
) -> tuple[int, dict]:
    """/predict's (status, answer) for one digit's image and the model's softmax outputs for it: 200 with
    the digit, or 422 "not_a_digit" that still carries the best guess and its probabilities. adapted: the
    probabilities are blended with the writer's memory (handler/adapt.py), and the answer says so."""
    rejected, answer = _read(image, probabilities, version=version, **_adapted(adapted))
    if rejected:
        return 422, {"error": "that does not look like a digit", "reason": "not_a_digit", **answer}
    return 200, answer


@dataclass
class Digit:
    index: int  # into Candidates.images
    box: list
    probabilities: np.ndarray  # the model's, softmax over all its outputs


def with_pieces(probabilities: np.ndarray, piece_probabilities: np.ndarray) -> np.ndarray:
    """A number's candidate pieces' softmax outputs (n x 10 or 11) with the piece reader's (n x 11) taken
    in (PIECE_WEIGHT): each digit's probability times the piece reader's to that power, in float64 (the
    products of small probabilities underflow float32). "Not a digit" stays the digit reader's say."""
    combined = np.array(probabilities, dtype=np.float64)
    combined[:, :NOT_A_DIGIT] *= np.asarray(piece_probabilities, np.float64)[:, :NOT_A_DIGIT] ** PIECE_WEIGHT
    return combined


def read_digits(candidates: Candidates, probabilities: np.ndarray, piece_probabilities=None) -> list:
    """choose()'s digits, with the piece reader's outputs (if any) weighing every candidate (with_pieces):
    the cuts are chosen, and each piece read, with both. A drawing read whole as one digit (the candidate
    that is /predict's image, Candidates.alone) is read by the digit reader alone, as /predict reads it."""
    if piece_probabilities is None:
        return choose(candidates, probabilities)
    digits = choose(candidates, with_pieces(probabilities, piece_probabilities))
    for digit in digits:
        if digit.index == candidates.alone:
            digit.probabilities = probabilities[digit.index]
    return digits


def choose(candidates: Candidates, probabilities: np.ndarray) -> list:
    """The reading that the model likes best: per group, the path of candidates from its left edge to its
    right whose digits' summed log-probabilities (the best digit of each) is highest. A piece the model
    calls "not a digit" scores low, so two touching digits left whole lose to the cut between them. In
    what is nearly always one digit (a group, or the whole drawing of several, no wider than
    ONE_DIGIT_ASPECT of its height) every piece past the first costs EXTRA_PIECE. The whole drawing read
    as one digit (candidates.one) wins over the groups read apart when it scores higher. Digits left to
    right."""
    score = np.log(np.maximum(probabilities[:, :NOT_A_DIGIT].max(axis=1), 1e-12))
    total, chosen = 0.0, []
    for g, nodes in enumerate(candidates.nodes):
        best = [(-math.inf, [])] * nodes
        best[0] = (0.0, [])
        extra = EXTRA_PIECE if _narrow(candidates, g, nodes) else 0.0
        for end in range(1, nodes):
            for i, (group, start, stop) in enumerate(candidates.spans):
                if group == g and stop == end and best[start][0] > -math.inf:
                    value = best[start][0] + score[i] + (extra if start else 0.0)
                    if value > best[end][0]:
                        best[end] = (value, best[start][1] + [i])
        total, chosen = total + best[-1][0], chosen + best[-1][1]
    one = candidates.one
    if one is not None and score[one] >= total + EXTRA_PIECE * (len(chosen) - 1):
        chosen = [one]
    return [Digit(i, candidates.boxes[i], probabilities[i]) for i in chosen]


def _narrow(candidates: Candidates, g: int, nodes: int) -> bool:
    """Whether group g (its whole candidate's box) is no wider than ONE_DIGIT_ASPECT of its height."""
    whole = (g, 0, nodes - 1)
    if whole not in candidates.spans:  # its whole was only specks
        return False
    _, _, width, height = candidates.boxes[candidates.spans.index(whole)]
    return width <= ONE_DIGIT_ASPECT * height


def _adapted(adapted) -> dict:
    """An answer's "adapted": true when the writer's memory blended it; nothing otherwise."""
    return {"adapted": True} if adapted else {}


def read_answer(candidates: Candidates, digits: list, adapted=None) -> dict:
    """The answer's "number" and "digits" (docs/api.md): a piece the model calls "not a digit" is
    "digit": null, and then the number is null. TooManyDigitsError past MAX_DIGITS (the cuts of wide
    groups may add digits to the pieces read_candidates counted)."""
    if len(digits) > MAX_DIGITS:
        raise TooManyDigitsError(f"more than {MAX_DIGITS} digits: at most {MAX_DIGITS} are read")
    pieces = []
    for d in digits:
        fields = _adapted(adapted is not None and adapted[d.index])
        rejected, piece = _read(candidates.images[d.index], d.probabilities, box=d.box, **fields)
        if rejected:
            piece["digit"] = None
        pieces.append(piece)
    number = "".join(str(p["digit"]) for p in pieces) if all(p["digit"] is not None for p in pieces) else None
    return {"number": number, "digits": pieces}


def number_answer(
    candidates: Candidates, probabilities: np.ndarray, version: str, adapted=None, pieces=None
) -> tuple[int, dict]:
    """/read's (status, answer) for a number's candidate pieces and the model's softmax outputs for them
    (adapted: per piece, whether the writer's memory blended its probabilities; pieces: the piece
    reader's outputs, or None: read_digits)."""
    try:
        answer = read_answer(candidates, read_digits(candidates, probabilities, pieces), adapted)
        return 200, {**answer, "version": version}
    except InputError as error:  # more digits than a number may have
        return error_answer(error)


def read_number(payload, probabilities_of, pieces_of=None) -> dict:
    """A drawing's number, in-process (benchmarks, evaluation): probabilities_of maps (n, 28, 28) images
    to the model's softmax outputs (n, 10 or 11), pieces_of (if any) to the piece reader's (with_pieces)."""
    candidates = read_candidates(payload)
    pieces = pieces_of(candidates.images) if pieces_of is not None else None
    return read_answer(candidates, read_digits(candidates, probabilities_of(candidates.images), pieces))
