"""Resize policy and the uint8 resampler shared by training, evaluation and the filter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from textsieve.preprocess import prepare, resize_rgb, target_size


def _photo_like(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Blurred noise: smooth gradients and edges, like a photo, not a worst case."""
    rng = np.random.default_rng(seed)
    noise = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2)))


@pytest.mark.parametrize(("src", "dst"), [((612, 408), (384, 256)), ((1224, 816), (384, 256)),
                                           ((300, 200), (384, 256)), ((97, 513), (32, 160))])
def test_resize_matches_pillow_bilinear_within_one_grey_level(src, dst):
    arr = _photo_like(*src)
    ours = resize_rgb(arr, dst).astype(int)
    pil = np.asarray(Image.fromarray(arr).resize(dst, Image.BILINEAR)).astype(int)
    assert ours.shape == (dst[1], dst[0], 3)
    assert np.abs(ours - pil).max() <= 1


def test_resize_antialiases_when_shrinking():
    # 1-pixel black/white stripes: a point-sampling resize keeps full contrast (aliasing);
    # an antialiased one averages them to mid grey.
    arr = np.zeros((64, 512, 3), np.uint8)
    arr[:, ::2] = 255
    out = resize_rgb(arr, (64, 64)).astype(int)[:, 1:-1]  # edge columns see a truncated kernel
    assert abs(out.mean() - 127.5) < 2
    assert out.max() - out.min() <= 2


def test_resize_keeps_exact_size_and_accepts_read_only_arrays():
    arr = _photo_like(64, 32)
    assert resize_rgb(arr, (64, 32)) is arr
    ro = np.asarray(Image.fromarray(arr))
    assert not ro.flags.writeable
    out = resize_rgb(ro, (32, 16))
    assert out.flags.c_contiguous and out.flags.writeable and out.dtype == np.uint8
    # Non-contiguous input (a crop view) gives the same result as its copy.
    view = _photo_like(100, 80)[10:70, 5:95]
    assert np.array_equal(resize_rgb(view, (45, 30)), resize_rgb(view.copy(), (45, 30)))


def test_resize_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match="uint8"):
        resize_rgb(np.zeros((8, 8, 3), np.float32), (4, 4))
    with pytest.raises(ValueError, match="uint8"):
        resize_rgb(np.zeros((8, 8), np.uint8), (4, 4))


def test_target_size_policy():
    assert target_size(1224, 816) == (384, 256)      # short side 256, long side rounded to 32
    assert target_size(816, 1224) == (256, 384)
    assert target_size(8000, 200) == (1024, 32)      # panorama: long side capped at 1024
    assert target_size(1, 1) == (256, 256)
    w, h = target_size(2, 10000)
    assert (w, h) == (32, 1024)


def test_prepare_gives_unit_range_chw_float():
    x = prepare(_photo_like(300, 200))
    assert x.shape == (3, 256, 384) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
