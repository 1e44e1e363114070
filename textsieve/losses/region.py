"""Region classification loss of the teacher (Zhao et al., ICDAR 2019, section III-A).

The paper trains the teacher with a binary cross entropy on each of the M = 34 region
predictions (3x3 and 5x5 grids), the image decision being the OR of the regions. Two practical
additions, both configurable:

- ``pos_weight`` weighs positive regions (most regions of most pictures are negative);
- text pictures without region labels (no GT, or boxes too small to reach the region rule) still
  carry their image label: for them the loss is a BCE on the *max* region logit, which is exactly
  the image decision's score (``decision.image_probs``), weighted by ``image_weight``;
- ``all_image_weight`` adds that image-level BCE for *every* picture (a multiple-instance term:
  it trains the decision that is actually evaluated, the OR of the regions, and is less exposed
  to the noise of region labels). 0 gives the paper's loss.

Per picture ``b`` with region mask ``m_b`` (known labels), the loss is the mean region BCE over
the known regions when there are any, else ``image_weight`` times the image-level BCE; plus
``all_image_weight`` times the image-level BCE. The batch loss is the mean over pictures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def region_bce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    is_text: torch.Tensor,
    pos_weight: float = 1.0,
    image_weight: float = 1.0,
    all_image_weight: float = 0.0,
) -> torch.Tensor:
    """Masked region BCE plus image-level BCE on the max logit (batch mean).

    Args:
        logits: (B, 34) region logits.
        labels: (B, 34) region labels in {0, 1} (ignored where ``mask`` is False).
        mask: (B, 34) bool, True where the region label is known.
        is_text: (B,) image labels in {0, 1}.
        pos_weight: weight of positive region terms (``BCEWithLogits``' ``pos_weight``).
        image_weight: weight of the image-level term of pictures without region labels.
        all_image_weight: weight of the image-level term added for every picture.

    Returns:
        Scalar loss.
    """
    mask_f = mask.float()
    pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    per_region = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none",
                                                    pos_weight=pw)
    known = mask_f.sum(1)  # (B,)
    region_term = (per_region * mask_f).sum(1) / known.clamp(min=1.0)
    image_term = F.binary_cross_entropy_with_logits(
        logits.max(dim=1).values, is_text.float(), reduction="none"
    )
    has_regions = known > 0
    per_image = torch.where(has_regions, region_term, image_weight * image_term)
    if all_image_weight:
        per_image = per_image + all_image_weight * image_term
    return per_image.mean()


class RegionBCELoss(nn.Module):
    """:func:`region_bce` with its weights fixed (from the training config)."""

    def __init__(self, pos_weight: float = 1.0, image_weight: float = 1.0,
                 all_image_weight: float = 0.0) -> None:
        super().__init__()
        self.pos_weight = pos_weight
        self.image_weight = image_weight
        self.all_image_weight = all_image_weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                is_text: torch.Tensor) -> torch.Tensor:
        return region_bce(logits, labels, mask, is_text, self.pos_weight, self.image_weight,
                          self.all_image_weight)
