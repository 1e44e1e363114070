"""Soft-label loss (eq. 3): BCE against the teacher's region probabilities, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from textsieve.losses.soft import SoftLabelLoss, mix_targets, soft_label_loss


def test_hand_computed_value() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5, 0.75
    probs_t = torch.tensor([[0.2, 1.0]])
    # region 0: -(0.2 ln .5 + 0.8 ln .5) = ln 2; region 1: -ln 0.75
    expected = (math.log(2.0) - math.log(0.75)) / 2
    assert soft_label_loss(logits, probs_t).item() == pytest.approx(expected, rel=1e-6)


def test_equals_bce_on_probabilities_and_is_a_batch_mean() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 34, generator=g)
    probs_t = torch.rand(3, 34, generator=g)
    p = torch.sigmoid(logits)
    by_formula = -(probs_t * p.log() + (1 - probs_t) * (1 - p).log()).mean()
    assert soft_label_loss(logits, probs_t).item() == pytest.approx(by_formula.item(), rel=1e-5)
    assert SoftLabelLoss()(logits, probs_t).item() == pytest.approx(by_formula.item(), rel=1e-5)


def test_minimum_is_at_the_teacher_probability() -> None:
    probs_t = torch.tensor([[0.3]])
    logit = torch.zeros(1, 1, requires_grad=True)
    soft_label_loss(logit, probs_t).backward()
    assert logit.grad.item() == pytest.approx(0.5 - 0.3)  # d/dx BCE = sigmoid(x) - target


def test_saturated_logits_stay_finite() -> None:
    loss = soft_label_loss(torch.tensor([[100.0]]), torch.tensor([[0.0]]))
    assert loss.item() == pytest.approx(100.0)  # log(1 + e^100)


def test_mix_targets() -> None:
    probs_t = torch.tensor([[0.2, 0.8], [0.4, 0.6]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert mix_targets(probs_t, labels, 0.0) is probs_t
    mixed = mix_targets(probs_t, labels, 0.5, mask=torch.tensor([1.0, 0.0]))
    assert torch.allclose(mixed, torch.tensor([[0.6, 0.4], [0.4, 0.6]]))
    with pytest.raises(ValueError):
        mix_targets(probs_t, labels, 1.5)
    with pytest.raises(ValueError, match="shapes differ"):
        soft_label_loss(torch.zeros(2, 34), torch.zeros(2, 9))
