"""Score images in-process: path -> decode -> resize -> batched network -> :class:`Result`.

This is the per-worker engine of ``textsieve filter`` and the entry point for other engines
(e.g. Ray actors): :func:`score_paths` takes a loaded model and a list of paths and returns one
:class:`Result` per path, in order; bad files become results with an error status, never
exceptions.

Preprocessing is exactly ``prepare(decode_image(path, min_short=256))`` (the evaluation path):
JPEGs are DCT-downscaled while decoding, then resized with Pillow (bilinear) to the target
size of :mod:`textsieve.preprocess`. Images of equal target size are stacked into batches.

For speed the student runs in an inference form (:class:`FastStudent`): BatchNorm folded into
the convolutions, channels-last memory layout, and the input normalisation fused into the
uint8 -> float conversion; it computes the same function as ``StudentNet`` (tested).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from textsieve.decision import image_probs
from textsieve.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, open_image
from textsieve.errors import DecodeError
from textsieve.models import StudentNet
from textsieve.preprocess import MAX_LONG, SHORT_SIDE, resize_rgb, target_size
from textsieve.walk import Entry

log = logging.getLogger(__name__)

MAX_PENDING = 64  # decoded images held back while waiting for a full batch of their size


@dataclass(frozen=True)
class Result:
    """The outcome for one input path.

    Attributes:
        path: the input path.
        status: ``ok`` or an error kind (see :mod:`textsieve.decode`, :mod:`textsieve.walk`).
        detail: human-readable reason when status is not ``ok``.
        prob: image text probability (max region probability), None when not scored.
        is_text: ``prob >= threshold``.
        regions: the 34 region probabilities (3x3 row-major, then 5x5), or None.
    """

    path: str
    status: str
    detail: str = ""
    prob: float | None = None
    is_text: bool = False
    regions: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ScoreConfig:
    """How images are decoded and scored.

    Attributes:
        threshold: decision threshold on the image probability.
        max_pixels: decompression-bomb limit (pixels declared in the header).
        max_bytes: files larger than this are refused unread.
        allow_truncated: score what is there of truncated files instead of refusing them.
        batch_size: images of equal network size stacked per forward pass.
        short_side: network short side (the paper's 256).
        max_long: cap on the network long side.
        regions: keep the 34 region probabilities in each result.
        device: ``cpu`` or ``cuda``.
    """

    threshold: float = 0.5
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    allow_truncated: bool = False
    batch_size: int = 8
    short_side: int = SHORT_SIDE
    max_long: int = MAX_LONG
    regions: bool = True
    device: str = "cpu"


class FastStudent(nn.Module):
    """Inference form of :class:`StudentNet`: uint8 (B, H, W, 3) in, (B, 34) logits out.

    BatchNorm is folded into each convolution (eval statistics), the network runs channels-last
    (oneDNN's fast path for these narrow layers), and the input normalisation
    ``(x / 255 - mean) / std`` is folded into the first convolution. Folding it is exact only
    if the zero padding of the normalised input is replaced by padding the raw input with
    ``255 * mean``, so the first layer pads explicitly. An NHWC batch permuted to NCHW is
    already channels-last, so the input needs no transpose either.
    """

    def __init__(self, net: StudentNet) -> None:
        super().__init__()
        net = copy.deepcopy(net).eval().float()
        mean, std = net.mean.view(3), net.std.view(3)
        for k, layer in enumerate(net.convs):  # Sequential(conv, bn, relu)
            conv, bn = layer[0], layer[1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = conv.weight * scale.view(-1, 1, 1, 1)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            bias = (bias - bn.running_mean) * scale + bn.bias
            padding = conv.padding
            if k == 0:  # w * (x / (255 std) - mean / std) = (w / (255 std)) * x - w * mean / std
                bias = bias - (weight * (mean / std).view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
                weight = weight / (255.0 * std).view(1, 3, 1, 1)
                self.pad = int(conv.padding[0])
                padding = 0
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                              conv.stride, padding, bias=True)
            with torch.no_grad():
                fused.weight.copy_(weight)
                fused.bias.copy_(bias)
            layer[0], layer[1] = fused, nn.Identity()
        self.net = net.to(memory_format=torch.channels_last)
        self.register_buffer("pad_value", 255.0 * mean, persistent=False)

    def forward(self, u8: torch.Tensor) -> torch.Tensor:
        b, h, w, c = u8.shape
        p = self.pad
        x = u8.new_empty((b, h + 2 * p, w + 2 * p, c), dtype=torch.float32)
        if p:  # the border only: a full per-channel broadcast fill costs as much as the conv
            x[:, :p], x[:, -p:], x[:, :, :p], x[:, :, -p:] = (self.pad_value,) * 4
        x[:, p:p + h, p:p + w].copy_(u8)
        x = x.permute(0, 3, 1, 2)  # (B, 3, H, W), channels-last strides
        maps = []
        for i, layer in enumerate(self.net.convs):
            x = layer(x)
            if i >= 4:  # conv5 and conv6 feed the regions, as in StudentNet.forward_features
                maps.append(x)
        return self.net.forward_head(self.net.pool(maps)).logits


class _Generic(nn.Module):
    """Any textsieve network (e.g. the teacher) behind the same uint8 NHWC interface."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.eval()

    def forward(self, u8: torch.Tensor) -> torch.Tensor:
        x = u8.permute(0, 3, 1, 2).float().div_(255.0)
        return self.net(x).logits


def inference_model(model: nn.Module, device: str = "cpu") -> nn.Module:
    """Wrap a loaded network for :class:`Scorer`: fast form for the student, generic otherwise."""
    fast = FastStudent(model) if isinstance(model, StudentNet) else _Generic(model)
    return fast.to(device).eval()


def load_for_model(path: str | bytes, cfg: ScoreConfig) -> np.ndarray:
    """Decode ``path`` (or a file's bytes) and resize it to its network size: (h, w, 3) uint8.

    Raises:
        DecodeError: the file cannot be decoded (``kind`` is the status).
    """
    img = open_image(path, min_short=cfg.short_side, max_pixels=cfg.max_pixels,
                     allow_truncated=cfg.allow_truncated, max_bytes=cfg.max_bytes)
    size = target_size(img.width, img.height, cfg.short_side, cfg.max_long)
    return resize_rgb(np.asarray(img), size)


class Scorer:
    """A model prepared for scoring, plus the scoring config. Reuse it across calls.

    Args:
        model: a loaded textsieve network (``checkpoint.load_model``), in eval mode.
        cfg: decoding and decision settings.
    """

    def __init__(self, model: nn.Module, cfg: ScoreConfig) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.model = inference_model(model, cfg.device)

    def probs(self, batch: np.ndarray) -> torch.Tensor:
        """(B, h, w, 3) uint8 batch -> (B, 34) region logits on the CPU."""
        with torch.inference_mode():
            u8 = torch.from_numpy(batch).to(self.device, non_blocking=True)
            return self.model(u8).float().cpu()

    def _run(self, group: list[tuple[int, np.ndarray]], paths: list[str],
             results: list[Result | None]) -> None:
        batch = np.stack([a for _, a in group])
        try:
            logits = self.probs(batch)
        except RuntimeError as e:  # e.g. out of memory on a device: those images only
            for i, _ in group:
                results[i] = Result(paths[i], "model_error", str(e).splitlines()[0][:200])
            return
        img_p = image_probs(logits).tolist()
        reg_p = torch.sigmoid(logits).tolist() if self.cfg.regions else None
        for k, (i, _) in enumerate(group):
            p = float(img_p[k])
            regions = tuple(float(v) for v in reg_p[k]) if reg_p is not None else None
            results[i] = Result(paths[i], "ok", "", p, p >= self.cfg.threshold, regions)

    def score(self, items: Sequence[str | Entry],
              on_item: Callable[[Result], None] | None = None,
              data: Sequence[bytes] | None = None) -> list[Result]:
        """Score paths (or listed entries), one :class:`Result` per item, in input order.

        Batches are formed from consecutive images of equal network size, so the result of an
        image depends only on the sequence ``items`` (deterministic for a fixed shard).

        Args:
            items: paths, or :class:`~textsieve.walk.Entry` (entries with a listing status are
                not read).
            on_item: called once per finished result, in completion order (progress).
            data: the files' contents, one per item (e.g. Ray's ``read_binary_files``),
                decoded instead of reading the paths (entries with a status still are not).
        """
        paths = [it.path if isinstance(it, Entry) else it for it in items]
        results: list[Result | None] = [None] * len(paths)
        groups: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
        pending = 0

        def flush(key: tuple[int, int]) -> None:
            nonlocal pending
            group = groups.pop(key)
            pending -= len(group)
            self._run(group, paths, results)
            if on_item is not None:
                for i, _ in group:
                    on_item(results[i])  # type: ignore[arg-type]

        for i, it in enumerate(items):
            pre = it.status if isinstance(it, Entry) else None
            if pre is not None:
                results[i] = Result(paths[i], pre, _LISTING_DETAIL.get(pre, pre))
            else:
                try:
                    arr = load_for_model(paths[i] if data is None else data[i], self.cfg)
                except DecodeError as e:
                    results[i] = Result(paths[i], e.kind, str(e))
                else:
                    key = (arr.shape[1], arr.shape[0])
                    groups.setdefault(key, []).append((i, arr))
                    pending += 1
                    if len(groups[key]) >= self.cfg.batch_size:
                        flush(key)
                    elif pending >= MAX_PENDING:
                        for k in sorted(groups):
                            flush(k)
                    continue
            if on_item is not None:
                on_item(results[i])  # type: ignore[arg-type]
        for k in sorted(groups):
            flush(k)
        return results  # type: ignore[return-value]


_LISTING_DETAIL = {
    "symlink_escapes": "symbolic link out of the input roots (use --follow-symlinks)",
    "symlink_loop": "symbolic link loop",
    "not_a_file": "not a regular file",
    "unreadable": "cannot list this folder",
}


def score_paths(model: nn.Module | Scorer, paths: Sequence[str | Entry],
                cfg: ScoreConfig | None = None) -> list[Result]:
    """Score a batch of image paths in-process (the library entry point for other engines).

    Args:
        model: a loaded network (wrapped on each call) or a :class:`Scorer` (reused; cheaper).
        paths: image paths, in the order results are wanted.
        cfg: decoding and decision settings (ignored when ``model`` is a Scorer).

    Returns:
        One :class:`Result` per path, in order. Never raises for a bad image.
    """
    scorer = model if isinstance(model, Scorer) else Scorer(model, cfg or ScoreConfig())
    return scorer.score(paths)
