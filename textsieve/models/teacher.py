"""Teacher network (Zhao et al. 2019, III-A, Fig. 2): a trunk, two stage maps, region head.

The paper's trunk is VGG16's convolutional part, defined here from the standard layer list (no
torchvision). The outputs of its last two stages (conv4_3 and conv5_3, after ReLU) are each pooled
to 3x3 and 5x5; maps of equal grid size are added (after a 1x1 projection when channel counts
differ) and each of the 34 region features is linearly mapped into the shared space, then
classified. With per-region maps and D = 64 this is 15.83M parameters (paper: 16.03M).

The ``ppocr`` backbone replaces the trunk with the frozen PP-OCRv4 text detector run with
onnxruntime (``textsieve.models.ppocr``); only the head below trains.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from textsieve.config import TeacherConfig
from textsieve.errors import CheckpointError
from textsieve.models.head import RegionHead, RegionOutput, pool_regions

# VGG16 configuration "D": channels, "M" = 2x2 max pool. Same module indices as torchvision's
# ``vgg16().features`` so that its state-dict keys ("features.0.weight", ...) load unchanged.
VGG16_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_vgg16_features() -> nn.Sequential:
    """VGG16 ``features`` (13 conv + ReLU, 5 max pools), indices as in torchvision."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            c_in = int(v)
    return nn.Sequential(*layers)


class VGG16Trunk(nn.Module):
    """VGG16 features returning the conv4_3 and conv5_3 maps (after ReLU, before pooling)."""

    channels: tuple[int, int] = (512, 512)
    # Index of the ReLU after conv4_3 and after conv5_3 in ``features``.
    taps: tuple[int, int] = (22, 29)

    def __init__(self) -> None:
        super().__init__()
        self.features = make_vgg16_features()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) RGB in [0, 1] -> [(B, 512, H/8, W/8), (B, 512, H/16, W/16)]."""
        x = (x - self.mean) / self.std
        outs = []
        for i, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
        return outs

    def load_imagenet(self, path: Path) -> None:
        """Load a local ImageNet VGG16 state dict (torchvision key names, with or without the
        ``features.`` prefix; classifier keys are ignored)."""
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
            raise CheckpointError(f"cannot load VGG16 weights from {path}: {e}") from None
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        if not isinstance(sd, dict):
            raise CheckpointError(f"{path}: not a state dict")
        feats = {}
        for k, v in sd.items():
            if k.startswith("features."):
                feats[k[len("features.") :]] = v
            elif k[:1].isdigit():
                feats[k] = v
        own = self.features.state_dict()
        missing = sorted(set(own) - set(feats))
        if missing:
            raise CheckpointError(f"{path}: missing VGG16 feature keys {missing[:4]}...")
        for k, v in feats.items():
            if k in own and own[k].shape != v.shape:
                raise CheckpointError(
                    f"{path}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
                )
        self.features.load_state_dict({k: feats[k] for k in own})


class TeacherNet(nn.Module):
    """Teacher: trunk -> two stage maps -> pooled, fused regions -> region head.

    Args:
        cfg: teacher config. For ``ppocr`` the trunk is attached later (it is not a torch module
            and not part of the state dict); see :func:`textsieve.models.ppocr.attach_trunk`.
    """

    def __init__(self, cfg: TeacherConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or TeacherConfig()
        if cfg.backbone == "vgg16":
            self.trunk: nn.Module | None = VGG16Trunk()
            channels: tuple[int, ...] = VGG16Trunk.channels
        elif cfg.backbone == "ppocr":
            from textsieve.models.ppocr import PPOCR_CHANNELS

            self.trunk = None  # frozen onnx trunk, attached at run time
            channels = PPOCR_CHANNELS
        else:
            raise ValueError(f"unknown teacher backbone {cfg.backbone!r}")
        self.channels = channels
        if len(set(channels)) > 1:
            # 1x1 projections (linear, applied to the pooled region features) to a common width.
            self.proj = nn.ModuleList(nn.Linear(c, cfg.fuse_channels) for c in channels)
            fused = cfg.fuse_channels
        else:
            self.proj = None
            fused = channels[0]
        self.head = RegionHead(fused, cfg.dim, per_region=cfg.per_region_map)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage maps of the trunk for a (B, 3, H, W) RGB batch in [0, 1]."""
        if self.trunk is None:
            raise RuntimeError(
                "ppocr teacher has no trunk attached (see models.ppocr.attach_trunk)"
            )
        return self.trunk(x)

    def pool(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each stage map (B, C, H, W) -> (B, 34, C). These are what a frozen trunk caches."""
        return [pool_regions(m, mode=self.cfg.pool) for m in maps]

    def forward_head(self, pooled: list[torch.Tensor]) -> RegionOutput:
        """Fuse pooled stage features by addition and run the region head."""
        if self.proj is not None:
            pooled = [p(r) for p, r in zip(self.proj, pooled, strict=True)]
        fused = torch.stack(pooled, 0).sum(0)  # (B, 34, C)
        return self.head(fused)

    def forward(self, x: torch.Tensor) -> RegionOutput:
        return self.forward_head(self.pool(self.forward_features(x)))
