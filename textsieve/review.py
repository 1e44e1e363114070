"""Contact sheets of autolabel decisions, so that a person can check hundreds in a minute.

Each tile is one image with its detected boxes drawn (confirmed boxes green, unconfirmed ones
orange), a frame in the colour of the decision and, underneath, the file name, the decision, the
best box score and the first confirmed string. Tiles are grouped by decision (text, uncertain,
nontext), then sorted by name. Sheets hold ``cols x rows`` tiles; more images give more pages:
``review.png``, ``review-2.png``, ``review-3.png`` ...
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from textsieve.decode import decode_image
from textsieve.errors import DecodeError, TextsieveError

logger = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "text": (40, 180, 70),
    "uncertain": (240, 150, 20),
    "nontext": (70, 120, 220),
}
_CONFIRMED = (0, 255, 60)
_UNCONFIRMED = (255, 140, 0)
_ORDER = {"text": 0, "uncertain": 1, "nontext": 2}
_BG = (24, 24, 24)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable font, Pillow >= 10.1
    except TypeError:  # older Pillow: fixed bitmap font
        return ImageFont.load_default()


def page_paths(out: Path, pages: int) -> list[Path]:
    """``out`` for page 1, then ``<stem>-2<suffix>``, ``<stem>-3<suffix>`` ..."""
    out = Path(out)
    return [out if i == 1 else out.with_name(f"{out.stem}-{i}{out.suffix}")
            for i in range(1, pages + 1)]


def _caption(rec: dict[str, Any]) -> tuple[str, str]:
    name = rec.get("name") or Path(rec["src"]).name
    line2 = f"{rec['decision']}  best {rec.get('best_score', 0.0):.2f}  {len(rec['boxes'])} box"
    read = next((b["text"] for b in rec["boxes"] if b.get("confirmed")), None)
    if read:
        line2 += f"  '{read[:18]}'"
    return name, line2


def _tile(rec: dict[str, Any], root: Path, tile: int, font: Any) -> Image.Image:
    """One framed thumbnail with its boxes; unreadable files give a grey placeholder."""
    cap = 34
    canvas = Image.new("RGB", (tile, tile + cap), _BG)
    draw = ImageDraw.Draw(canvas)
    colour = COLOURS.get(rec["decision"], (160, 160, 160))
    copied = root / rec["decision"] / rec.get("name", "")
    path = copied if rec.get("name") and copied.is_file() else Path(rec["src"])
    inner = tile - 8
    try:
        rgb = decode_image(path, min_short=inner)
    except DecodeError as e:
        draw.text((8, tile // 2), f"unreadable: {e.kind}", fill=(200, 200, 200), font=font)
    else:
        img = Image.fromarray(rgb)
        # Boxes are in the coordinates of the full upright image; JPEG draft may have shrunk it.
        full_w = rec.get("width") or img.width
        scale = min(inner / img.width, inner / img.height)
        thumb = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        ox, oy = 4 + (inner - thumb.width) // 2, 4 + (inner - thumb.height) // 2
        canvas.paste(thumb, (ox, oy))
        s = scale * img.width / full_w
        for b in rec["boxes"]:
            pts = [(ox + x * s, oy + y * s) for x, y in b["points"]]
            draw.polygon(pts, outline=_CONFIRMED if b.get("confirmed") else _UNCONFIRMED,
                         width=2)
    draw.rectangle((0, 0, tile - 1, tile - 1), outline=colour, width=4)
    line1, line2 = _caption(rec)
    draw.rectangle((0, tile, tile - 1, tile + cap - 1), fill=colour)
    draw.text((4, tile + 2), line1[:40], fill=(0, 0, 0), font=font)
    draw.text((4, tile + 17), line2[:48], fill=(0, 0, 0), font=font)
    return canvas


def write_review(
    records: Sequence[dict[str, Any]],
    root: Path,
    out: Path,
    *,
    cols: int = 6,
    rows: int = 6,
    tile: int = 256,
) -> list[Path]:
    """Draw contact sheets of autolabel records.

    Args:
        records: ``autolabel.jsonl`` records; ``error`` records are left out.
        root: the autolabel root (images are read from their copies there, else from ``src``).
        out: path of the first PNG page.
        cols: tiles per row.
        rows: rows per page.
        tile: tile size in pixels (thumbnail plus frame; the caption adds 34 px).

    Returns:
        The PNG pages written.
    """
    if cols < 1 or rows < 1 or tile < 64:
        raise TextsieveError("review sheets need cols, rows >= 1 and tile >= 64")
    recs = sorted((r for r in records if r["decision"] in _ORDER),
                  key=lambda r: (_ORDER[r["decision"]], r.get("name") or r["src"]))
    per_page = cols * rows
    pages = max(1, -(-len(recs) // per_page))
    paths = page_paths(out, pages)
    font, head_font = _font(12), _font(16)
    counts = {d: sum(r["decision"] == d for r in recs) for d in _ORDER}
    header = 30
    for i, path in enumerate(paths):
        chunk = recs[i * per_page:(i + 1) * per_page]
        n_rows = max(1, -(-len(chunk) // cols))
        sheet = Image.new("RGB", (cols * tile, header + n_rows * (tile + 34)), _BG)
        draw = ImageDraw.Draw(sheet)
        summary = "  ".join(f"{d} {n}" for d, n in counts.items())
        draw.text((8, 6), f"autolabel review  page {i + 1}/{pages}   {summary}   "
                  "(green box: confirmed, orange: not confirmed)", fill=(230, 230, 230),
                  font=head_font)
        for j, rec in enumerate(chunk):
            r, c = divmod(j, cols)
            sheet.paste(_tile(rec, Path(root), tile, font), (c * tile, header + r * (tile + 34)))
        path.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path)
    # Pages left over from an earlier, longer review would be mistaken for this one.
    k = pages + 1
    while (stale := page_paths(out, k)[-1]).is_file():
        stale.unlink()
        k += 1
    logger.info("review: %d images on %d page(s) from %s", len(recs), pages, paths[0])
    return paths
