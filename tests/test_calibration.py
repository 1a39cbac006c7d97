"""Honest confidence: the temperature is inside the exported model, and the calibration measures work."""

import json
import warnings

import pytest
import torch

from train.calibration import (
    Temperature,
    answered_calibration_error,
    expected_calibration_error,
    fit_temperature,
)

warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)


def test_exported_model_divides_its_logits_by_the_fitted_temperature(model_dir):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    model = torch.jit.load(str(model_dir / "model.pt")).eval()
    network, temperature = getattr(model, "0"), getattr(model, "1")
    assert float(temperature.temperature) == pytest.approx(metrics["temperature"], abs=1e-4)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = network(x)
        expected = raw / temperature.temperature
        if temperature.original_name == "RejectionHead":  # REJECTION=head: the 11th is a score of its own
            digits = expected[:, :10]
            score = raw[:, 10:] + torch.logsumexp(digits, dim=1, keepdim=True)
            expected = torch.cat([digits, score], dim=1)
        if (
            "not_a_digit" in metrics
        ):  # 11 outputs: then the threshold's shift of the last logit (train/rejection.py)
            shift = getattr(model, "2").shift
            assert shift[:10].abs().max() == 0
            assert float(shift[10]) == pytest.approx(-metrics["not_a_digit"]["threshold"], abs=1e-4)
            expected = expected + shift
        assert torch.allclose(model(x), expected, atol=1e-5)
    for name in ("val_raw", "test_raw", "test_canvas", "pen_held_out"):  # docs/training.md
        assert 0 <= metrics[f"{name}_ece"] <= 1 and 0.5 < metrics[f"{name}_accuracy"] <= 1


def test_temperature_undoes_a_known_overconfidence():
    # Logits of a calibrated model (labels drawn from its own softmax), then made 3x too sharp.
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 10, generator=generator) * 2
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1)
    sharp = logits * 3
    assert expected_calibration_error(torch.softmax(sharp, 1), labels) > 0.15
    t = fit_temperature(sharp, labels)
    assert t == pytest.approx(3, rel=0.05)
    assert expected_calibration_error(torch.softmax(Temperature(t)(sharp), 1), labels) < 0.015


def test_expected_calibration_error_by_hand():
    # Two bins: 0.9 confident and right 2 of 2 (gap 0.1), 0.6 confident and right 0 of 2 (gap 0.6).
    probabilities = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = torch.tensor([0, 0, 1, 1])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.5 * 0.1 + 0.5 * 0.6)


def test_the_ece_of_answers_leaves_refused_drawings_out_and_counts_them():
    # Calibrated answers: 80% sure and right 4 times in 5; three drawings refused (a 4xx: no probabilities).
    sure = [0.8, 0.2]
    probabilities = [sure] * 5 + [None] * 3
    labels = [0, 0, 0, 0, 1, 0, 1, 0]
    assert answered_calibration_error(probabilities, labels) == (pytest.approx(0.0), 3)
    # Always sure, right half the time: off by 0.5, however many were refused.
    always = [[1.0, 0.0]] * 4
    assert answered_calibration_error(always + [None], [0, 1, 0, 1, 0]) == (pytest.approx(0.5), 1)
    # Two bins, weighted by their share of the answers: |1 - 0.95| * 1/2 + |0 - 0.55| * 1/2.
    two = answered_calibration_error([[0.95, 0.05], [0.55, 0.45], None], [0, 1, 1])
    assert two == (pytest.approx((0.05 + 0.55) / 2), 1)
    ece, refused = answered_calibration_error([None, None], [3, 4])
    assert ece != ece and refused == 2  # NaN: nothing answered
