"""``textsieve show``: draw the 3x3 and 5x5 region probabilities over images (paper, Fig. 5).

:func:`draw_regions` is the reusable part (the evaluation report uses it too): two panels side
by side, the 3x3 grid on the left and the 5x5 grid on the right; every cell shows its
probability, and cells at or above the threshold are tinted red (stronger for higher
probabilities) with a red outline. The title line gives the image probability (the maximum
region probability) and the decision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from textsieve.errors import DecodeError
from textsieve.regions import GRIDS, NUM_REGIONS, REGION_SLICES, region_boxes
from textsieve.score import Result, Scorer

log = logging.getLogger(__name__)

PANEL_LONG = 512  # long side of each drawn panel, in pixels
_TITLE_H = 28


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def _panel(img: Image.Image, probs: np.ndarray, grid: int, threshold: float) -> Image.Image:
    """One grid drawn over ``img`` (already at panel size)."""
    w, h = img.size
    overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(overlay)
    font = _font(max(10, min(w, h) // (grid * 4)))
    boxes = region_boxes(w, h)[REGION_SLICES[grid]]
    for (x0, y0, x1, y1), p in zip(boxes, probs, strict=True):
        if p >= threshold:
            d.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(255, 0, 0, int(60 + 120 * p)))
    for (x0, y0, x1, y1), p in zip(boxes, probs, strict=True):
        hot = p >= threshold
        d.rectangle((x0, y0, x1 - 1, y1 - 1), outline=(255, 40, 40, 255) if hot else
                    (255, 255, 255, 160), width=3 if hot else 1)
        label = f"{p:.2f}"
        tx, ty = x0 + 4, y0 + 3
        bbox = d.textbbox((tx, ty), label, font=font)
        d.rectangle(bbox, fill=(0, 0, 0, 150))
        d.text((tx, ty), label, fill=(255, 255, 255, 255), font=font)
    return Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")


def draw_regions(rgb: np.ndarray, region_probs: Sequence[float] | np.ndarray,
                 threshold: float) -> Image.Image:
    """Draw the 34 region probabilities over an upright image.

    Args:
        rgb: (H, W, 3) uint8 upright image (any size; it is scaled to the panel size).
        region_probs: 34 probabilities: 3x3 row-major, then 5x5 row-major.
        threshold: cells with a probability at or above it are marked as text.

    Returns:
        An RGB image: a title line, then the 3x3 panel and the 5x5 panel side by side.
    """
    probs = np.asarray(region_probs, dtype=np.float64).reshape(-1)
    if probs.shape[0] != NUM_REGIONS:
        raise ValueError(f"expected {NUM_REGIONS} region probabilities, got {probs.shape[0]}")
    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert("RGB")
    scale = PANEL_LONG / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(size, Image.BILINEAR)
    panels = [_panel(img, probs[REGION_SLICES[g]], g, threshold) for g in GRIDS]
    gap = 8
    canvas = Image.new("RGB", (2 * size[0] + gap, size[1] + _TITLE_H), (255, 255, 255))
    for i, p in enumerate(panels):
        canvas.paste(p, (i * (size[0] + gap), _TITLE_H))
    d = ImageDraw.Draw(canvas)
    p_img = float(probs.max())
    verdict = "TEXT" if p_img >= threshold else "no text"
    d.text((4, 6), f"3x3 | 5x5   image p = {p_img:.3f}  ->  {verdict}  (threshold "
                   f"{threshold:.3f})", fill=(0, 0, 0), font=_font(16))
    return canvas


@dataclass(frozen=True)
class ShowItem:
    """Outcome of one ``show`` input: the written file, or the reason it was not drawn."""

    path: str
    result: Result
    output: Path | None


def _out_name(path: str, out_dir: Path, taken: set[Path]) -> Path:
    stem = Path(path).name
    cand, k = out_dir / f"{stem}.regions.png", 0
    while cand in taken:  # same file name from different folders
        k += 1
        cand = out_dir / f"{stem}~{k}.regions.png"
    taken.add(cand)
    return cand


def show_images(paths: Sequence[str], out_dir: Path, scorer: Scorer,
                on_progress: Callable[[int], None] | None = None) -> list[ShowItem]:
    """Score each image and write ``OUT/<name>.regions.png`` (existing ones are replaced).

    Scores come from the same pipeline as ``filter`` (same decode, resize and model); the
    drawing uses the upright image, so regions follow the EXIF-rotated view.

    Args:
        paths: image files.
        out_dir: created if needed.
        scorer: a :class:`~textsieve.score.Scorer` (its config's threshold is used).
        on_progress: called with 1 per image.

    Returns:
        One :class:`ShowItem` per path, in order; bad images have ``output=None``.
    """
    from textsieve.decode import decode_image

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = scorer.cfg
    items, taken = [], set()
    for path, res in zip(paths, scorer.score(list(paths)), strict=True):
        out = None
        if res.status == "ok" and res.regions is not None:
            try:
                rgb = decode_image(path, min_short=PANEL_LONG, max_pixels=cfg.max_pixels,
                                   allow_truncated=cfg.allow_truncated)
            except DecodeError as e:  # changed since it was scored
                res = Result(path, e.kind, str(e))
            else:
                out = _out_name(path, out_dir, taken)
                draw_regions(rgb, res.regions, cfg.threshold).save(out)
        items.append(ShowItem(path, res, out))
        if on_progress is not None:
            on_progress(1)
    return items
