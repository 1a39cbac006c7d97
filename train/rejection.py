"""Saying "not a digit": the 11th output's decision, its threshold, and the exported form of both.

The model has 11 outputs, the ten digits and "not a digit" (train/nondigits.py). Its score for a drawing
is the log-odds of "not a digit" against all ten digits together:
    score = logit[10] - logsumexp(logit[0..9])   (after the temperature).
The threshold is chosen on validation real digits only (MNIST's validation split drawn on canvases,
and the pen digits kept out of training, train/pendigits.VALIDATION_EVERY) so that at most
REJECT_TARGET of them score above it. It is baked into the export as a shift of the 11th logit
(NotADigitShift), so that serving needs one fixed rule and no number: a drawing is "not a digit" when
softmax(outputs)[10] > 0.5 (handler/answers.py not_a_digit). The digit guess is the softmax over the ten
digit logits alone.
"""

import math

import torch
from torch import nn

from handler.answers import NOT_A_DIGIT


class NotADigitShift(nn.Module):
    """logit[10] - threshold: the export's last op, so "rejected" is softmax(outputs)[10] > 0.5."""

    def __init__(self, threshold: float):
        super().__init__()
        shift = torch.zeros(NOT_A_DIGIT + 1)
        shift[NOT_A_DIGIT] = -float(threshold)
        self.register_buffer("shift", shift)

    def forward(self, logits):
        return logits + self.shift


def scores(logits: torch.Tensor) -> torch.Tensor:
    """Log-odds of "not a digit" against the ten digits, per row of 11 logits."""
    return logits[:, NOT_A_DIGIT] - torch.logsumexp(logits[:, :NOT_A_DIGIT], dim=1)


def digit_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The guess's probabilities over the ten digits (what the answer shows, rejected or not)."""
    return torch.softmax(logits[:, :NOT_A_DIGIT], dim=1)


def choose_threshold(real_digit_scores: torch.Tensor, target: float) -> float:
    """The lowest threshold with at most floor(target x n) of the real digits scoring above it: midway
    between the highest score kept and the lowest rejected, so float rounding cannot tip either."""
    ordered = real_digit_scores.double().sort(descending=True).values
    allowed = math.floor(target * len(ordered))
    if allowed >= len(ordered):
        return float(ordered[-1]) - 1.0
    kept = float(ordered[allowed])
    if allowed == 0:
        return kept + 1e-3
    return (kept + float(ordered[allowed - 1])) / 2
