"""Region pooling and the region head shared by teacher and student.

A feature map is adaptively pooled to 3x3 and 5x5; the 34 cells (3x3 row-major first, then
5x5 row-major) become 34 region feature vectors. The head maps each region feature into the
space shared by teacher and student (these mapped features, *before* their ReLU, are what the
activation-boundary and adversarial losses compare) and classifies it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from textsieve.regions import GRIDS


class RegionOutput(NamedTuple):
    """What every network returns.

    Attributes:
        logits: (B, 34) raw region scores.
        feats: (B, 34, D) mapped region features before the activation.
    """

    logits: torch.Tensor
    feats: torch.Tensor


def pool_regions(
    x: torch.Tensor, grids: tuple[int, ...] = GRIDS, mode: str = "max"
) -> torch.Tensor:
    """(B, C, H, W) -> (B, sum(g*g), C): adaptive pooling to each grid, cells row-major."""
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    cells = [pool(x, g).flatten(2) for g in grids]  # each (B, C, g*g)
    return torch.cat(cells, dim=2).transpose(1, 2)


def pool_grid(x: torch.Tensor, grid: int, mode: str = "max") -> torch.Tensor:
    """(B, C, H, W) -> (B, grid*grid, C) for a single grid size."""
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    return pool(x, grid).flatten(2).transpose(1, 2)


class RegionMap(nn.Module):
    """Linear map of region features into the shared space.

    Args:
        in_dim: region feature size C.
        dim: shared space size D.
        regions: number of regions; when ``per_region`` each region has its own map.
        per_region: one (C -> D) map per region instead of a single shared map.
    """

    def __init__(self, in_dim: int, dim: int, regions: int = 34, per_region: bool = False) -> None:
        super().__init__()
        self.per_region = per_region
        if per_region:
            # Same init as nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_dim.
            bound = in_dim**-0.5
            self.weight = nn.Parameter(torch.empty(regions, in_dim, dim).uniform_(-bound, bound))
            self.bias = nn.Parameter(torch.empty(regions, dim).uniform_(-bound, bound))
        else:
            self.linear = nn.Linear(in_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, M, C) -> (B, M, D)
        if self.per_region:
            return torch.einsum("bmc,mcd->bmd", x, self.weight) + self.bias
        return self.linear(x)


class RegionHead(nn.Module):
    """Map (B, M, C) region features into D, ReLU, then a shared classifier to (B, M) logits."""

    def __init__(self, in_dim: int, dim: int, regions: int = 34, per_region: bool = False) -> None:
        super().__init__()
        self.map = RegionMap(in_dim, dim, regions, per_region)
        self.classifier = nn.Linear(dim, 1)

    def forward(self, regions: torch.Tensor) -> RegionOutput:
        feats = self.map(regions)  # (B, M, D), pre-activation
        logits = self.classifier(F.relu(feats)).squeeze(-1)  # (B, M)
        return RegionOutput(logits, feats)


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
