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


def calibration_error(confidence: torch.Tensor, right: torch.Tensor, bins: int = 15) -> float:
    """The same for answers given as their confidence and whether each was right (scripts/lifecycle.py
    scores answers from TorchServe so). Bins are (low, high]; the first also takes confidence 0, where an
    answer refused as 'no digit drawn' lands: wrong, and sure of nothing."""
    right = right.float()
    edges = torch.linspace(0, 1, bins + 1)
    edges[0] = -1.0
    error = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.float().mean() * (right[inside].mean() - confidence[inside].mean()).abs()
    return float(error)
