"""Soft-label distillation loss (Zhao et al. 2019, section III-D, eq. 3).

The teacher's region probabilities are the targets of a binary cross-entropy on the student's
region logits:

    L_K = -1/M sum_i ( l_i log p_i + (1 - l_i) log(1 - p_i) )

with l_i the teacher's probability that region i contains text and p_i the student's. Soft
targets carry the teacher's confidence, which the paper credits with absorbing the noise of the
rule-made hard region labels (Table II: hard 89.5 F, soft 91.5 F).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_label_loss(logits_s: torch.Tensor, probs_t: torch.Tensor) -> torch.Tensor:
    """BCE of student region logits against teacher region probabilities (eq. 3), batch mean.

    Args:
        logits_s: (B, M) student region logits (raw scores).
        probs_t: (B, M) teacher region probabilities in [0, 1] (targets; no gradient).

    Returns:
        Scalar: mean over regions and over the batch. Computed from logits (log-sum-exp form),
        so it stays finite for saturated student scores.
    """
    if logits_s.shape != probs_t.shape:
        raise ValueError(f"shapes differ: logits {tuple(logits_s.shape)}, "
                         f"targets {tuple(probs_t.shape)}")
    return F.binary_cross_entropy_with_logits(logits_s, probs_t.to(logits_s.dtype))


def mix_targets(
    probs_t: torch.Tensor, labels: torch.Tensor, alpha: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft targets with a share ``alpha`` of the hard region labels (not in the paper).

    ``alpha = 0`` returns the teacher's probabilities unchanged (the paper's eq. 3). Regions whose
    hard label is unknown (``mask == 0``, e.g. a text image without ground truth) keep the
    teacher's probability.

    Args:
        probs_t: (B, M) teacher region probabilities.
        labels: (B, M) hard region labels in {0, 1}.
        alpha: weight of the hard labels, in [0, 1].
        mask: optional (B, M) or (B,) 1 where the hard label is known.

    Returns:
        (B, M) targets in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha == 0.0:
        return probs_t
    weight = torch.full_like(probs_t, alpha)
    if mask is not None:
        m = mask.to(probs_t.dtype)
        weight = weight * (m if m.dim() == 2 else m[:, None])
    return (1.0 - weight) * probs_t + weight * labels.to(probs_t.dtype)


class SoftLabelLoss(nn.Module):
    """Module form of :func:`soft_label_loss`."""

    def forward(self, logits_s: torch.Tensor, probs_t: torch.Tensor) -> torch.Tensor:
        return soft_label_loss(logits_s, probs_t)
