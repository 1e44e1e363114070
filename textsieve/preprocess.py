"""Resize policy and tensor conversion shared by training, evaluation and the filter.

Policy: the short side is resized to ``short_side`` (256, as in the paper) keeping the aspect
ratio; the long side is capped at ``max_long`` (extreme panoramas get a shorter short side rather
than an unbounded tensor). Both sides are rounded to a multiple of ``multiple`` so that images of
similar shape fall into the same batch. Networks normalise internally: the input is RGB in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

SHORT_SIDE = 256
MAX_LONG = 1024
MULTIPLE = 32


def target_size(
    width: int,
    height: int,
    short_side: int = SHORT_SIDE,
    max_long: int = MAX_LONG,
    multiple: int = MULTIPLE,
) -> tuple[int, int]:
    """Network input size (width, height) for an image of ``width`` x ``height``."""
    scale = short_side / min(width, height)
    if max(width, height) * scale > max_long:
        scale = max_long / max(width, height)
    tw = max(multiple, int(round(width * scale / multiple)) * multiple)
    th = max(multiple, int(round(height * scale / multiple)) * multiple)
    return tw, th


def resize_rgb(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 array to ``size`` = (width, height) with bilinear filtering."""
    if (arr.shape[1], arr.shape[0]) == size:
        return arr
    return np.asarray(Image.fromarray(arr).resize(size, Image.BILINEAR, reducing_gap=2.0))


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr)  # arrays from PIL are read-only; torch wants to own writable memory
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def prepare(
    arr: np.ndarray, short_side: int = SHORT_SIDE, max_long: int = MAX_LONG
) -> torch.Tensor:
    """Resize by the policy above and convert: the one call inference code needs."""
    size = target_size(arr.shape[1], arr.shape[0], short_side, max_long)
    return to_tensor(resize_rgb(arr, size))
