"""REJECTION=head (train/rejection.py): "not a digit" as a yes/no score of its own beside the ten digits'
softmax, exported in the 11-logit form the handler's rule reads."""

import torch

from handler.answers import not_a_digit_rows
from train.rejection import RejectionHead, digit_probabilities, head_loss, scores


def test_the_exported_form_gives_the_head_its_own_probability_and_the_digits_their_own_softmax():
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(64, 11, generator=generator) * 4
    out = RejectionHead(0.5)(raw)
    assert torch.allclose(scores(out), raw[:, 10], atol=1e-5)
    assert torch.allclose(torch.softmax(out, 1)[:, 10], torch.sigmoid(raw[:, 10]), atol=1e-6)
    assert torch.allclose(digit_probabilities(out), torch.softmax(raw[:, :10] / 0.5, 1), atol=1e-6)
    assert torch.equal(not_a_digit_rows(torch.softmax(out, 1)), raw[:, 10] > 0)
    scripted = torch.jit.script(RejectionHead(0.5))  # what the export saves
    assert torch.allclose(scripted(raw), out)


def test_a_drawing_that_is_not_a_digit_teaches_the_head_and_leaves_the_digits_alone():
    logits = torch.randn(4, 11, generator=torch.Generator().manual_seed(1), requires_grad=True)
    labels = torch.tensor([3, 10, 7, 10])
    head_loss(logits, labels, 0.1).backward()
    grad = logits.grad
    assert grad[[1, 3], :10].abs().max() == 0  # not digits: no pull on any digit's logit
    assert (grad[[0, 2], :10].abs().sum(1) > 0).all()  # digits: the ten-way loss
    assert (grad[[1, 3], 10] < 0).all() and (grad[[0, 2], 10] > 0).all()  # the head: yes up, no down
