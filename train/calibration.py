"""Honest confidence: a temperature fitted after training, and the expected calibration error.

Label smoothing and weight averaging leave a CNN's probabilities too modest (mean top probability 90%
where 98.7% were right); one temperature T, fitted on the validation split, scales the logits so
that "95% sure" is right about 95% of the time. It is baked into the exported model (Temperature).
"""

import torch
from torch import nn


class Temperature(nn.Module):
    """logits / T: the last op of the exported model, so serving needs to know nothing about it."""

    def __init__(self, temperature: float):
        super().__init__()
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, logits):
        return logits / self.temperature


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T minimising the negative log-likelihood of softmax(logits / T) (fitted as log T, so T > 0)."""
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width bins of the top probability, weighted by bin size."""
    confidence, predicted = probabilities.max(1)
    return calibration_error(confidence, predicted == labels, bins)


def answered_calibration_error(
    probabilities: list[list[float] | None], labels: list[int], bins: int = 15
) -> tuple[float, int]:
    """(ECE of the answered drawings, how many were refused), for answers from the served model
    (`make evaluate`, `make bench-canvas`: the one definition both report).

    The rule for refused drawings (None here: answered with no digit, a 4xx such as 'no digit drawn' or
    'not a digit', even when that answer carries a guess): they are left out of the ECE, which measures
    only how honest the probabilities of the digits given were; accuracy counts them as it counts them
    (wrong for a real digit), and their number is reported beside the ECE. The figure is named for
    that: "ECE of answers". NaN when nothing was answered."""
    answered = [(p, label) for p, label in zip(probabilities, labels, strict=True) if p is not None]
    refused = len(labels) - len(answered)
    if not answered:
        return float("nan"), refused
    given = torch.tensor([p for p, _ in answered])
    return expected_calibration_error(given, torch.tensor([label for _, label in answered]), bins), refused


def calibration_error(confidence: torch.Tensor, right: torch.Tensor, bins: int = 15) -> float:
    """The same for answers given as their confidence and whether each was right. Bins are (low, high];
    the first also takes confidence 0."""
    right = right.float()
    edges = torch.linspace(0, 1, bins + 1)
    edges[0] = -1.0
    error = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.float().mean() * (right[inside].mean() - confidence[inside].mean()).abs()
    return float(error)
