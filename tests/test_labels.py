from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from textsieve.errors import AnnotationError
from textsieve.labels import read_labels, write_labels


def test_write_labels_jsonl(textdis_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "l.jsonl"
    stats = write_labels(textdis_root, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == stats.images == 8 and stats.text_images == 4 and stats.with_gt == 3
    first = rows[0]
    assert set(first) == {"path", "width", "height", "is_text", "regions", "boxes"}
    assert first["width"] == 96 and first["is_text"] and len(first["regions"]) == 34
    # syn_0 box x 10..70, y 20..40 on a 96x96 image: 3x3 edges 0,32,64,96 -> cells 0, 1, 2 (row 0:
    # y 20..32 -> 12 rows) and 3, 4, 5 (row 1: y 32..40).
    assert [i for i in range(9) if first["regions"][i]] == [0, 1, 2, 3, 4, 5]
    assert rows[3]["regions"] is None  # text image without GT: image label only
    assert rows[4]["regions"] == [0] * 34 and rows[4]["is_text"] is False
    assert [r.path for r in read_labels(out)] == [r["path"] for r in rows]


def test_malformed_gt_stops_and_leaves_no_output(textdis_root: Path, tmp_path: Path) -> None:
    (textdis_root / "text_gt" / "syn_1_gt.txt").write_text("1 2 3 4 5 6 7 8\n1 2 3 oops\n")
    out = tmp_path / "l.jsonl"
    with pytest.raises(AnnotationError, match=r"syn_1_gt\.txt:2"):
        write_labels(textdis_root, out)
    assert not out.exists() and not list(tmp_path.glob(".l.jsonl*"))


def test_exif_rotated_image_labels_follow_upright_image(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "text").mkdir(parents=True)
    (root / "text_gt").mkdir()
    img = Image.new("RGB", (300, 150), "white")
    exif = img.getexif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: upright size 150x300
    img.save(root / "text" / "a.jpg", exif=exif.tobytes())
    # Stored top-left 30x30 box -> upright top-right corner.
    (root / "text_gt" / "a_gt.txt").write_text("0 0 30 0 30 30 0 30\n")
    write_labels(root, tmp_path / "l.jsonl")
    row = json.loads((tmp_path / "l.jsonl").read_text())
    assert (row["width"], row["height"]) == (150, 300)
    assert [i for i in range(9) if row["regions"][i]] == [2]
