"""Activation-boundary loss (Heo et al., AAAI 2019; Zhao et al. 2019, section III-D, eq. 1).

Stage 1 of the student's training: the student's mapped region features are pushed to the same
side of every ReLU boundary as the teacher's, with a margin ``u``:

    L_A = 1/M sum_i || d(T_i) * r(u - S_i) + (1 - d(T_i)) * r(u + S_i) ||_2^2

with T_i, S_i the teacher's and student's mapped (pre-ReLU) features of region i, r = ReLU and
d(x) = 1 where x > 0 (the teacher's neuron is active).

Note on the indicator: the paper's text says d outputs 0 for a positive input, but its very next
paragraph (the student's response approaches +u where the teacher's neuron is activated and -u
where it is not) and Heo et al.'s definition both require d(x) = 1 for x > 0. The code follows
that meaning: an active teacher neuron penalises a student response below +u, an inactive one a
response above -u, so the loss is zero exactly when every margin is met.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def boundary_loss(feat_s: torch.Tensor, feat_t: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Activation-boundary loss (paper eq. 1), batch mean.

    Args:
        feat_s: (B, M, D) student mapped region features, before the ReLU.
        feat_t: (B, M, D) teacher mapped region features, before the ReLU (no gradient needed).
        margin: the margin u (> 0).

    Returns:
        Scalar: squared L2 norm over D, mean over the M regions, mean over the batch.
    """
    if feat_s.shape != feat_t.shape:
        raise ValueError(f"feature shapes differ: student {tuple(feat_s.shape)}, "
                         f"teacher {tuple(feat_t.shape)}")
    active = (feat_t > 0).to(feat_s.dtype)  # d(T): 1 where the teacher neuron fires
    gap = active * F.relu(margin - feat_s) + (1.0 - active) * F.relu(margin + feat_s)
    return gap.pow(2).sum(dim=-1).mean()


class BoundaryLoss(nn.Module):
    """Module form of :func:`boundary_loss` with a fixed margin ``u``."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        self.margin = margin

    def forward(self, feat_s: torch.Tensor, feat_t: torch.Tensor) -> torch.Tensor:
        return boundary_loss(feat_s, feat_t, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
