"""Student network (Zhao et al. 2019, III-B, Fig. 3): six conv layers and a two-layer FC head.

Every conv is 3x3 + BatchNorm + ReLU. The outputs of the last two convs (normalised by their
BatchNorm) give the regions without fusing layers, to stay fast: the finer map (conv5) is pooled
to 5x5, the coarser (conv6) to 3x3. A shared fully connected layer maps each region feature into
the space shared with the teacher (pre-activation features returned for distillation), a second
one classifies it. Default size: 86.4k parameters (paper: 0.087M).
"""

from __future__ import annotations

import torch
from torch import nn

from textsieve.config import StudentConfig
from textsieve.models.head import RegionHead, RegionOutput, pool_grid
from textsieve.models.teacher import IMAGENET_MEAN, IMAGENET_STD


class StudentNet(nn.Module):
    """Six-conv student. Input: (B, 3, H, W) RGB in [0, 1], any H, W >= 64."""

    def __init__(self, cfg: StudentConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or StudentConfig()
        if len(cfg.channels) != 6 or len(cfg.strides) != 6:
            raise ValueError("the student has exactly 6 conv layers (channels and strides)")
        if cfg.channels[4] != cfg.channels[5]:
            raise ValueError("conv5 and conv6 must have equal widths (one shared region map)")
        layers = []
        c_in = 3
        for c, s in zip(cfg.channels, cfg.strides, strict=True):
            layers.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 3, stride=s, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(inplace=True),
                )
            )
            c_in = c
        self.convs = nn.ModuleList(layers)
        self.head = RegionHead(cfg.channels[-1], cfg.dim, per_region=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[conv5 map, conv6 map] for a (B, 3, H, W) RGB batch in [0, 1]."""
        x = (x - self.mean) / self.std
        outs = []
        for i, layer in enumerate(self.convs):
            x = layer(x)
            if i >= 4:
                outs.append(x)
        return outs

    def pool(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """(B, 34, C): conv6 -> 3x3 regions first, then conv5 -> 5x5 regions."""
        fine, coarse = maps
        return torch.cat(
            [pool_grid(coarse, 3, self.cfg.pool), pool_grid(fine, 5, self.cfg.pool)], 1
        )

    def forward_head(self, regions: torch.Tensor) -> RegionOutput:
        return self.head(regions)

    def forward(self, x: torch.Tensor) -> RegionOutput:
        return self.forward_head(self.pool(self.forward_features(x)))
