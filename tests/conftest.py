"""Shared fixtures: tiny synthetic images and data roots in tmp dirs (no network, no data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from textsieve.checkpoint import save_checkpoint
from textsieve.models import StudentNet


def draw_scene(
    size: tuple[int, int], seed: int, text_boxes: list[tuple[int, int, int, int]] = ()
) -> Image.Image:
    """A photo-like background (smooth gradient + blobs + noise) with black bars as "text".

    Args:
        size: (width, height).
        seed: RNG seed: the same seed gives the same picture.
        text_boxes: (x0, y0, x1, y1) boxes filled with dark glyph-like bars.
    """
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            (xx / max(w, 1) * rng.uniform(60, 200) + rng.uniform(0, 55)),
            (yy / max(h, 1) * rng.uniform(60, 200) + rng.uniform(0, 55)),
            np.full((h, w), rng.uniform(60, 200)),
        ],
        -1,
    )
    img = Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(3):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, max(6, w / 4))
        d.ellipse(
            (cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3))
        )
    for x0, y0, x1, y1 in text_boxes:
        d.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(250, 250, 250))
        step = max(3, (y1 - y0) // 2)
        for gx in range(x0 + 1, x1 - 2, step):
            d.rectangle((gx, y0 + 1, min(gx + step // 2, x1 - 2), y1 - 2), fill=(0, 0, 0))
    return img


@pytest.fixture
def textdis_root(tmp_path: Path) -> Path:
    """A TextDis-layout root: 4 text images with GT (one without GT), 4 non-text images."""
    root = tmp_path / "root"
    (root / "text").mkdir(parents=True)
    (root / "text_gt").mkdir()
    (root / "nontext").mkdir()
    for i in range(4):
        box = (10 + 5 * i, 20, 70 + 5 * i, 40)
        draw_scene((96, 96), i, [box]).save(root / "text" / f"syn_{i}.jpg", quality=90)
        if i < 3:
            x0, y0, x1, y1 = box
            (root / "text_gt" / f"syn_{i}_gt.txt").write_text(
                f"{x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1}\n"
            )
    for i in range(4):
        draw_scene((96, 80), 100 + i).save(root / "nontext" / f"bg_{i}.png")
    return root


@pytest.fixture
def student_weights(tmp_path: Path) -> Path:
    """A randomly initialised student saved as a textsieve checkpoint."""
    torch.manual_seed(0)
    model = StudentNet()
    path = tmp_path / "student.pt"
    save_checkpoint(path, model, stage="test", epoch=0, metrics={}, thresholds={"default": 0.5})
    return path
