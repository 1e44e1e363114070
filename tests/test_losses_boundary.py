"""Activation-boundary loss (eq. 1): golden values computed by hand on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from textsieve.losses.boundary import BoundaryLoss, boundary_loss


def test_zero_when_all_margins_are_met() -> None:
    feat_t = torch.tensor([[[2.0, -3.0], [0.5, -0.1]]])  # (B=1, M=2, D=2)
    feat_s = torch.tensor([[[1.5, -1.2], [1.0, -1.0]]])  # >= +u where active, <= -u where not
    assert boundary_loss(feat_s, feat_t, margin=1.0).item() == 0.0


def test_positive_when_a_margin_is_missed() -> None:
    feat_t = torch.tensor([[[2.0, -3.0]]])
    feat_s = torch.tensor([[[0.25, 0.5]]])
    # active dim: relu(1 - 0.25)^2 = 0.5625; inactive dim: relu(1 + 0.5)^2 = 2.25
    assert boundary_loss(feat_s, feat_t, 1.0).item() == pytest.approx(2.8125)


def test_mean_over_regions_and_batch_and_zero_counts_as_inactive() -> None:
    feat_t = torch.tensor([
        [[2.0, -3.0], [1.0, -1.0]],
        [[0.0, 1.0], [-1.0, 1.0]],  # T = 0 is "not active" (d(x) = 1 only for x > 0)
    ])
    feat_s = torch.tensor([
        [[0.25, 0.5], [3.0, -2.0]],
        [[0.0, 0.0], [-1.0, 1.0]],
    ])
    # per region sums: 2.8125, 0, (1^2 + 1^2) = 2, 0 -> mean over 4 = 1.203125
    assert boundary_loss(feat_s, feat_t, 1.0).item() == pytest.approx(1.203125)


def test_margin_is_used() -> None:
    feat_t = torch.tensor([[[1.0]]])
    feat_s = torch.tensor([[[1.0]]])
    assert boundary_loss(feat_s, feat_t, 1.0).item() == 0.0
    assert boundary_loss(feat_s, feat_t, 3.0).item() == pytest.approx(4.0)  # (3 - 1)^2


def test_gradient_pushes_student_to_the_teacher_side() -> None:
    feat_t = torch.tensor([[[1.0, -1.0]]])
    feat_s = torch.zeros(1, 1, 2, requires_grad=True)
    boundary_loss(feat_s, feat_t, 1.0).backward()
    # descending the gradient raises the active unit and lowers the inactive one
    assert feat_s.grad[0, 0, 0] < 0 < feat_s.grad[0, 0, 1]


def test_module_and_bad_input() -> None:
    loss = BoundaryLoss(margin=0.5)
    feat_t = torch.tensor([[[1.0]]])
    assert loss(torch.tensor([[[0.0]]]), feat_t).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="margin"):
        BoundaryLoss(margin=0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        boundary_loss(torch.zeros(1, 34, 64), torch.zeros(1, 34, 32))
