"""Region overlays: cell geometry, marking at the threshold, EXIF order, and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from badinputs import exif_rotated
from conftest import draw_scene
from PIL import Image
from typer.testing import CliRunner

from textsieve.checkpoint import load_model
from textsieve.cli import app
from textsieve.score import ScoreConfig, Scorer
from textsieve.show import _TITLE_H, PANEL_LONG, draw_regions

runner = CliRunner()


def test_draw_regions_marks_cells_at_the_threshold() -> None:
    rgb = np.full((200, 300, 3), 128, dtype=np.uint8)
    probs = np.zeros(34)
    probs[0] = 0.9  # 3x3 top-left
    probs[9 + 24] = 0.7  # 5x5 bottom-right
    probs[4] = 0.3  # below threshold: only its number is drawn
    img = np.asarray(draw_regions(rgb, probs, threshold=0.5)).astype(int)
    pw, ph = PANEL_LONG, round(200 * PANEL_LONG / 300)
    assert img.shape == (ph + _TITLE_H, 2 * pw + 8, 3)

    def cell_centre(panel: int, grid: int, r: int, c: int) -> np.ndarray:
        x = panel * (pw + 8) + int((c + 0.5) * pw / grid)
        y = _TITLE_H + int((r + 0.7) * ph / grid)  # below the number label
        return img[y, x]

    red = cell_centre(0, 3, 0, 0)
    assert red[0] > 180 and red[1] < 110  # tinted red
    assert abs(cell_centre(0, 3, 1, 1) - 128).max() <= 2  # 0.3 < threshold: untouched
    assert cell_centre(1, 5, 4, 4)[0] > 170 and cell_centre(1, 5, 4, 4)[1] < 110
    assert abs(cell_centre(1, 5, 0, 0) - 128).max() <= 2
    with pytest.raises(ValueError, match="34"):
        draw_regions(rgb, probs[:9], 0.5)


def test_regions_follow_the_upright_image(tmp_path: Path, student_weights: Path) -> None:
    upright = draw_scene((160, 96), 3, [(4, 4, 70, 30)])
    upright.save(tmp_path / "upright.jpg", quality=100, subsampling=0)
    (tmp_path / "rotated.jpg").write_bytes(exif_rotated(upright))
    stored = Image.open(tmp_path / "rotated.jpg")
    stored.getexif().clear()
    stored.save(tmp_path / "no_exif.jpg", quality=100, subsampling=0)  # same pixels, sideways
    model, _ = load_model(student_weights)
    scorer = Scorer(model, ScoreConfig())
    up, rot, side = scorer.score([str(tmp_path / n) for n in ("upright.jpg", "rotated.jpg",
                                                              "no_exif.jpg")])
    assert side.status == "ok" and up.status == rot.status == "ok"
    diff_rot = np.abs(np.subtract(up.regions, rot.regions)).max()
    diff_side = np.abs(np.subtract(up.regions, side.regions)).max()
    assert diff_rot < 0.2 * diff_side  # the EXIF-rotated file scores like the upright one


def test_show_cli_writes_overlays(tmp_path: Path, student_weights: Path) -> None:
    a = tmp_path / "a.jpg"
    draw_scene((120, 80), 1, [(10, 10, 60, 30)]).save(a)
    (tmp_path / "sub").mkdir()
    b = tmp_path / "sub" / "a.jpg"  # same name from another folder: no overwrite
    draw_scene((80, 120), 2).save(b)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    r = runner.invoke(app, ["show", str(a), str(b), str(bad), "--out", str(tmp_path / "o"),
                            "--weights", str(student_weights)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.jpg.regions.png",
                                                                  "a.jpg~1.regions.png"]
    assert "empty" in r.output
    img = Image.open(tmp_path / "o" / "a.jpg~1.regions.png")
    assert img.size == (2 * round(80 * PANEL_LONG / 120) + 8, PANEL_LONG + _TITLE_H)
    r = runner.invoke(app, ["show", str(bad), "--out", str(tmp_path / "o2"), "--weights",
                            str(student_weights)])
    assert r.exit_code == 1
