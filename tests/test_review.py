"""textsieve.review: contact sheets of autolabel decisions (no detector needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import draw_scene
from PIL import Image

from textsieve.errors import TextsieveError
from textsieve.review import _CONFIRMED, COLOURS, page_paths, write_review


def _records(tmp_path: Path) -> list[dict]:
    recs = []
    for i, decision in enumerate(["nontext", "text", "uncertain", "text", "nontext", "text",
                                  "uncertain"]):
        p = tmp_path / "src" / f"img{i}.png"
        p.parent.mkdir(exist_ok=True)
        draw_scene((200, 100), i).save(p)
        boxes = [] if decision == "nontext" else [
            {"points": [[20, 20], [180, 20], [180, 80], [20, 80]], "score": 0.9,
             "text": "HELLO", "conf": 0.95, "confirmed": decision == "text"}]
        recs.append({"src": str(p), "name": p.name, "decision": decision, "width": 200,
                     "height": 100, "best_score": 0.9 if boxes else 0.0, "boxes": boxes})
    recs.append({"src": str(tmp_path / "bad.jpg"), "decision": "error", "error": "corrupt"})
    return recs


def test_pages_order_frames_and_boxes(tmp_path: Path) -> None:
    out = tmp_path / "sheets" / "review.png"
    stale = page_paths(out, 3)[-1]
    stale.parent.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(stale)  # left over from a longer earlier review
    pages = write_review(_records(tmp_path), tmp_path / "root", out, cols=2, rows=2, tile=128)
    assert pages == [out, out.with_name("review-2.png")]  # 7 tiles (the error is left out)
    assert not stale.exists()
    first = Image.open(pages[0]).convert("RGB")
    assert first.size == (2 * 128, 30 + 2 * (128 + 34))
    # Grouped by decision: text tiles first (3 of them), then uncertain, then nontext.
    frame = [first.getpixel((1 + c * 128, 30 + 1 + r * 162)) for r in range(2) for c in range(2)]
    assert frame == [COLOURS["text"]] * 3 + [COLOURS["uncertain"]]
    # The confirmed box of the first tile: the 200x100 image is scaled to 120x60 and centred in
    # the 120x120 inside of the frame, so its left edge x=20 lands at 4 + 12, y=50 at 4+30+30.
    s = 120 / 200
    x, y = round(4 + 20 * s), round(30 + 4 + 30 + 50 * s)
    assert any(first.getpixel((x + dx, y)) == _CONFIRMED for dx in (-1, 0, 1))
    second = Image.open(pages[1]).convert("RGB")
    assert second.size == (256, 30 + 2 * 162)
    assert second.getpixel((1, 31)) == COLOURS["uncertain"]
    assert second.getpixel((1 + 128, 31)) == COLOURS["nontext"]


def test_unreadable_image_is_a_placeholder_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "gone.jpg"
    bad.write_bytes(b"\xff\xd8\xff nothing")
    rec = {"src": str(bad), "name": "gone.jpg", "decision": "nontext", "boxes": []}
    (page,) = write_review([rec], tmp_path, tmp_path / "r.png")
    assert Image.open(page).size == (6 * 256, 30 + 256 + 34)


def test_bad_layout_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TextsieveError):
        write_review([], tmp_path, tmp_path / "r.png", cols=0)
