"""From region logits to decisions: the image is text when any region is (logical OR)."""

from __future__ import annotations

import torch


def region_probs(logits: torch.Tensor) -> torch.Tensor:
    """(B, 34) logits -> (B, 34) probabilities."""
    return torch.sigmoid(logits)


def image_probs(logits: torch.Tensor) -> torch.Tensor:
    """(B, 34) logits -> (B,) image probability: the max region probability.

    Thresholding the max is exactly the OR of thresholded regions.
    """
    return torch.sigmoid(logits.max(dim=1).values)


def is_text(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B,) bool image decisions at ``threshold``."""
    return image_probs(logits) >= threshold
