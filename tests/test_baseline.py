"""textsieve.baseline: the PP-OCRv4 detector as an ``eval`` scorer, and ``eval --baseline``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import draw_scene
from PIL import ImageDraw, ImageFont
from typer.testing import CliRunner

from textsieve.baseline import detection_region_probs, make_baseline
from textsieve.cli import app
from textsieve.errors import TextsieveError
from textsieve.ocr import Detection

runner = CliRunner()


def test_region_probs_hand_computed() -> None:
    # A 30x30 box in the top-left corner of a 90x90 image: the whole 3x3 cell 0; in the 5x5
    # grid (18-px cells) cells (0,0), (0,1), (1,0), (1,1) are covered (12/18 of a side at least).
    box = Detection(((0, 0), (30, 0), (30, 30), (0, 30)), 0.7)
    weak = Detection(((60, 60), (90, 60), (90, 90), (60, 90)), 0.4)  # bottom-right corner
    probs = detection_region_probs([box, weak], 90, 90)
    want = np.zeros(34, dtype=np.float32)
    want[[0, 9, 10, 14, 15]] = 0.7
    want[[8, 9 + 18, 9 + 19, 9 + 23, 9 + 24]] = 0.4
    np.testing.assert_allclose(probs, want)
    # Where boxes overlap the higher score wins.
    both = detection_region_probs([box, Detection(box.points, 0.9)], 90, 90)
    assert both[0] == pytest.approx(0.9)
    # A box covering less than 1% of a region does not count there: 2x2 px of a 30x30 cell.
    dot = Detection(((0, 0), (2, 0), (2, 2), (0, 2)), 0.8)
    assert detection_region_probs([dot], 90, 90)[0] == 0.0


def test_unknown_baseline_is_an_error() -> None:
    with pytest.raises(TextsieveError, match="detector"):
        make_baseline("yolo")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A hand-made TextDis root: words drawn on signs (GT = their bbox) and plain scenes."""
    root = tmp_path / "root"
    for sub in ("text", "text_gt", "nontext"):
        (root / sub).mkdir(parents=True)
    for i, word in enumerate(["OPEN DAILY", "EXIT 7", "Station 42"]):
        img = draw_scene((320, 160), i)
        d = ImageDraw.Draw(img)
        font = ImageFont.load_default(size=30 + 6 * i)
        x0, y0, x1, y1 = d.textbbox((20, 20 + 30 * i), word, font=font)
        d.rectangle((x0 - 6, y0 - 6, x1 + 6, y1 + 6), fill=(240, 238, 230))
        d.text((20, 20 + 30 * i), word, font=font, fill=(15, 15, 25))
        img.save(root / "text" / f"syn_{i}.jpg", quality=92)
        (root / "text_gt" / f"syn_{i}_gt.txt").write_text(
            f"{x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1}\n")
    for i in range(3):
        draw_scene((200, 150), 100 + i).save(root / "nontext" / f"bg_{i}.png")
    return root


def test_detector_baseline_scores_a_hand_made_root(root: Path) -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    from textsieve.baseline import DetectorScorer
    from textsieve.evaluate import EvalConfig, evaluate
    from textsieve.ocr import OcrConfig

    # The drawn images are read at their own scale (see tests/test_autolabel.py).
    scorer = DetectorScorer(OcrConfig(limit_type="max", box_thresh=0.3))
    res = evaluate(EvalConfig(data=root, warmup=1), scorer=scorer)
    assert res.scorer["name"] == "detector" and res.scorer["params"] > 1_000_000
    assert res.threshold == 0.5
    assert (res.overall.tp, res.overall.fp, res.overall.fn, res.overall.tn) == (3, 0, 0, 3)
    assert res.auc == 1.0
    by_path = {Path(it.path).name: it for it in res.items}
    assert all(by_path[f"bg_{i}.png"].prob == 0.0 for i in range(3))
    assert all(by_path[f"syn_{i}.jpg"].prob >= 0.5 for i in range(3))
    # Regions: the cells under the drawn words are found (the boxes exceed the GT slightly, so
    # recall, not precision, is the property to hold).
    assert res.region_images == 6 and res.regions[3].recall == 1.0 and res.regions[5].recall > 0.9
    assert res.speed.model_ms > 0


def test_cli_eval_baseline(root: Path) -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    r = runner.invoke(app, ["eval", "--data", str(root), "--baseline", "detector", "--json",
                            "--limit", "1"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["scorer"]["name"] == "detector" and out["counts"]["images"] == 2
    assert out["scorer"]["limit_type"] == "long" and out["speed"]["model_ms"] > 0
    r = runner.invoke(app, ["eval", "--data", str(root), "--baseline", "nope"])
    assert r.exit_code == 2 and "unknown baseline" in r.output
