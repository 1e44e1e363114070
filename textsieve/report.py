"""Rendering of evaluation results: rich tables, and the ``--report DIR`` files.

``write_report`` writes ``metrics.json`` (everything, per-image results included), ``pr_curve.png``
and two contact sheets, ``worst_false_positives.png`` and ``worst_false_negatives.png``, with the
3x3 and 5x5 region probabilities drawn over each image. Plots are drawn with Pillow only
(matplotlib is not a dependency).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.table import Table

from textsieve.decode import decode_image
from textsieve.errors import DecodeError, TextsieveError
from textsieve.evaluate import EvalResult, ItemResult
from textsieve.show import draw_regions

THUMB = 256  # decode size (short side) for contact sheets
TILE = (640, 300)  # box each drawn image is scaled into on a contact sheet


def _f(v: float | None, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def result_tables(result: EvalResult) -> list[Table]:
    """Rich tables of ``result``: overall, thresholds, regions, per source, speed."""
    c = result.counts
    o = result.overall
    params = result.scorer.get("params")
    # Key/value rows rather than one wide row: stays readable in an 80-column terminal.
    overall = Table(title=f"eval on {result.config['data']}")
    overall.add_column("image level")
    overall.add_column("value", justify="right")
    for key, value in (
        ("scorer", str(result.scorer["name"])),
        ("parameters", f"{params:,}" if params is not None else "—"),
        ("images (text / non-text)", f"{c['images']} ({c['text']} / {c['nontext']})"),
        ("skipped (unreadable)", str(c["skipped"])),
        ("threshold", f"{result.threshold:.5f} (from {result.threshold_from})"),
        ("precision", _f(o.precision)),
        ("recall", _f(o.recall)),
        ("F", _f(o.f1)),
        ("false-positive rate", _f(o.fpr)),
        ("ROC AUC", _f(result.auc)),
        ("average precision", _f(result.ap)),
    ):
        overall.add_row(key, value)

    thresholds = Table(title="thresholds (chosen on this data)")
    for col in ("point", "threshold", "precision", "recall", "F"):
        thresholds.add_column(col, justify="right" if col != "point" else "left")
    thresholds.add_row("current", f"{result.threshold:.5f}", _f(o.precision), _f(o.recall),
                       _f(o.f1))
    rows = [("best F", result.best_f)]
    rows += [(f"recall >= {k}", v) for k, v in result.at_recall.items()]
    for name, pt in rows:
        if pt is None:
            thresholds.add_row(name, "—", "—", "—", "—")
        else:
            thresholds.add_row(name, f"{pt.threshold:.5f}", _f(pt.precision), _f(pt.recall),
                               _f(pt.f1))

    regions = Table(title=f"regions ({result.region_images} images with ground truth)")
    for col in ("grid", "cells", "positive", "precision", "recall", "F"):
        regions.add_column(col, justify="right")
    for g, prf in result.regions.items():
        regions.add_row(f"{g}x{g}", str(prf.tp + prf.fp + prf.fn + prf.tn), str(prf.tp + prf.fn),
                        _f(prf.precision), _f(prf.recall), _f(prf.f1))

    sources = Table(title="per source (file-name prefix)")
    for col in ("source", "images", "text", "non-text", "recall", "FPR", "prec.", "F", "AUC"):
        sources.add_column(col, justify="right" if col != "source" else "left")
    for src, m in result.per_source.items():
        sources.add_row(src, str(m["images"]), str(m["text"]), str(m["nontext"]), _f(m["recall"]),
                        _f(m["fpr"]), _f(m["precision"]), _f(m["f1"]), _f(m["roc_auc"]))

    sp = result.speed
    speed = Table(title="speed (batch 1, after warm-up)")
    for col in ("device", "threads", "images", "model ms/image", "decode ms/image",
                "end-to-end images/s"):
        speed.add_column(col, justify="right")
    speed.add_row(sp.device, str(sp.threads), str(sp.images), f"{sp.model_ms:.2f}",
                  f"{sp.decode_ms:.2f}", f"{sp.end_to_end_ips:.1f}")
    return [overall, thresholds, regions, sources, speed]


def write_report(result: EvalResult, out_dir: Path, worst: int = 12) -> list[Path]:
    """Write ``metrics.json``, ``pr_curve.png`` and the worst-FP/FN contact sheets.

    Args:
        result: what :func:`textsieve.evaluate.evaluate` returned.
        out_dir: created if needed; existing files of the same names are replaced.
        worst: images per contact sheet.

    Returns:
        The paths written.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TextsieveError(f"cannot create report folder {out_dir}: {e.strerror or e}") from None
    metrics = out_dir / "metrics.json"
    _write_atomic(metrics, json.dumps(result.to_dict(items=True), indent=1, allow_nan=False))
    curve = out_dir / "pr_curve.png"
    draw_pr_curve(result).save(curve)
    fp = [it for it in result.items if not it.is_text and it.prob >= result.threshold]
    fn = [it for it in result.items if it.is_text and it.prob < result.threshold]
    fp.sort(key=lambda it: -it.prob)
    fn.sort(key=lambda it: it.prob)
    sheets = []
    for name, chosen, title in (
        ("worst_false_positives.png", fp[:worst], f"worst false positives ({len(fp)} in all)"),
        ("worst_false_negatives.png", fn[:worst], f"worst false negatives ({len(fn)} in all)"),
    ):
        path = out_dir / name
        contact_sheet(chosen, title, result.threshold).save(path)
        sheets.append(path)
    return [metrics, curve, *sheets]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def draw_pr_curve(result: EvalResult, size: tuple[int, int] = (640, 520)) -> Image.Image:
    """Precision (y) against recall (x), with the current and best-F thresholds marked."""
    w, h = size
    left, right, top, bottom = 60, 20, 40, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = _font(13)

    def xy(recall: float, precision: float) -> tuple[float, float]:
        return (left + recall * (w - left - right), h - bottom - precision * (h - top - bottom))

    for k in range(6):  # grid and tick labels every 0.2
        v = k / 5
        x, _ = xy(v, 0)
        _, y = xy(0, v)
        d.line([xy(v, 0), xy(v, 1)], fill=(225, 225, 225))
        d.line([xy(0, v), xy(1, v)], fill=(225, 225, 225))
        d.text((x, h - bottom + 6), f"{v:.1f}", fill="black", font=font, anchor="mt")
        d.text((left - 6, y), f"{v:.1f}", fill="black", font=font, anchor="rm")
    d.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    d.text(((left + w - right) / 2, h - 18), "recall", fill="black", font=font, anchor="mm")
    d.text((8, top - 22), "precision", fill="black", font=font)
    d.text((left, 10), f"{result.scorer['name']}: AP {_f(result.ap)}  ROC AUC {_f(result.auc)}",
           fill="black", font=font)
    c = result.curve
    if c.recall.size and not np.isnan(c.recall).any():
        # Start at recall 0 with the first precision, as a step plot would.
        pts = [xy(0.0, float(c.precision[0]))]
        pts += [xy(float(r), float(p)) for r, p in zip(c.recall, c.precision, strict=True)]
        d.line(pts, fill=(31, 119, 180), width=2)
    marks = [(f"current t={result.threshold:.3f}", result.overall.recall,
              result.overall.precision, (214, 39, 40))]
    if result.best_f:
        marks.append((f"best F t={result.best_f.threshold:.3f}", result.best_f.recall,
                      result.best_f.precision, (44, 160, 44)))
    for i, (name, r, p, color) in enumerate(marks):
        if math.isnan(r) or math.isnan(p):
            continue
        x, y = xy(r, p)
        d.ellipse([x - 5, y - 5, x + 5, y + 5], fill=color)
        ly = top + 12 + 18 * i  # legend: a dot of the same colour, then the values
        d.ellipse([left + 10, ly - 4, left + 18, ly + 4], fill=color)
        d.text((left + 24, ly), f"{name}: P {p:.3f} R {r:.3f}", fill=color, font=font, anchor="lm")
    return img


def _tile(it: ItemResult, threshold: float) -> Image.Image:
    """One contact-sheet tile: :func:`textsieve.show.draw_regions` (3x3 and 5x5 panels) scaled
    to fit ``TILE``, then the file name and the label."""
    font = _font(12)
    try:
        rgb = decode_image(it.path, min_short=THUMB)
        if it.region_probs is None:  # a scorer without regions: the plain image
            view = Image.fromarray(rgb)
        else:
            view = draw_regions(rgb, it.region_probs, threshold)
    except DecodeError as e:  # moved or changed since it was scored: show a grey box
        view = Image.new("RGB", (THUMB, THUMB), (128, 128, 128))
        ImageDraw.Draw(view).text((8, 8), e.kind, fill="white", font=font)
    view.thumbnail(TILE)
    tile = Image.new("RGB", (TILE[0], view.height + 36), "white")
    tile.paste(view, (0, 0))
    d = ImageDraw.Draw(tile)
    name = Path(it.path).name
    d.text((0, view.height + 4), name if len(name) <= 80 else name[:77] + "...", fill="black",
           font=font)
    d.text((0, view.height + 19), f"p(text) = {it.prob:.4f}   "
           f"{'text' if it.is_text else 'non-text'} image", fill="black", font=font)
    return tile


def contact_sheet(items: list[ItemResult], title: str, threshold: float,
                  columns: int = 2) -> Image.Image:
    """A grid of tiles (3x3 and 5x5 region panels side by side, file name, probability).

    Args:
        items: images to show, in order.
        title: printed at the top.
        threshold: cells at or above it are marked (red tint and outline).
        columns: tiles per row.
    """
    font = _font(14)
    tiles = [_tile(it, threshold) for it in items]
    tw = max((t.width for t in tiles), default=TILE[0])
    th = max((t.height for t in tiles), default=0)
    rows = math.ceil(len(tiles) / columns)
    pad, head = 10, 30
    sheet = Image.new("RGB", (columns * (tw + pad) + pad, head + rows * (th + pad) + pad + 20),
                      (240, 240, 240))
    d = ImageDraw.Draw(sheet)
    d.text((pad, 8), title, fill="black", font=font)
    if not tiles:
        d.text((pad, head + 4), "none at this threshold", fill=(90, 90, 90), font=font)
    for i, t in enumerate(tiles):
        r, col = divmod(i, columns)
        sheet.paste(t, (pad + col * (tw + pad), head + r * (th + pad)))
    return sheet
