"""Saying "not a digit": the 11th output's decision, its threshold, and the exported form of both.

The model has 11 outputs, the ten digits and "not a digit" (train/nondigits.py). Its score for a drawing
is the log-odds of "not a digit" against all ten digits together:
    score = logit[10] - logsumexp(logit[0..9])   (after the temperature).
How the 11th output is trained (train/train.py's REJECTION):
  - "head": its own yes/no score (head_loss: a logistic loss on every image), the ten digit logits a
    softmax over digits alone. A drawing that is not a digit then never pulls the digits' logits, and the
    reader reads as a ten-class network does. RejectionHead exports it in the 11-logit form above.
  - "class": an 11th class of one softmax, which competes with the digits for their probability.
The threshold is chosen on validation real digits only (MNIST's validation split drawn on canvases,
and the pen digits kept out of training, train/pendigits.VALIDATION_EVERY) so that at most
REJECT_TARGET of them score above it. It is baked into the export as a shift of the 11th logit
(NotADigitShift), so that serving needs one fixed rule and no number: a drawing is "not a digit" when
softmax(outputs)[10] > 0.5 (handler/answers.py not_a_digit). The digit guess is the softmax over the ten
digit logits alone.
"""

import math

import torch
import torch.nn.functional as F
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


class RejectionHead(nn.Module):
    """REJECTION=head's export (after the CNN): the ten digit logits over the temperature, and as the 11th
    the head's own score plus their logsumexp, so that score() of the result is the head's score and the
    handler's 11-way softmax gives "not a digit" sigmoid(score)."""

    def __init__(self, temperature: float):
        super().__init__()
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.digits = NOT_A_DIGIT  # an attribute: TorchScript reads no module-level names

    def forward(self, logits):
        digits = logits[:, : self.digits] / self.temperature
        score = logits[:, self.digits :] + torch.logsumexp(digits, dim=1, keepdim=True)
        return torch.cat([digits, score], dim=1)


def head_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """REJECTION=head's loss: cross-entropy over the ten digit logits, on the digits only, plus the
    logistic loss of the 11th output's yes/no ("not a digit") on every image."""
    is_not = labels == NOT_A_DIGIT
    loss = F.binary_cross_entropy_with_logits(logits[:, NOT_A_DIGIT], is_not.to(logits.dtype))
    if bool((~is_not).any()):
        digits = ~is_not
        loss = loss + F.cross_entropy(
            logits[digits, :NOT_A_DIGIT], labels[digits], label_smoothing=label_smoothing
        )
    return loss


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
