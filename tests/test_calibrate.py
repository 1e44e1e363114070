from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from textsieve.calibrate import choose_thresholds
from textsieve.checkpoint import load_model, threshold_of
from textsieve.cli import app
from textsieve.errors import CheckpointError, TextsieveError

# Sorted by score: .9 T, .8 T, .7 T, .6 N, .3 N, .2 N, .1 T, .05 N.
# t=.7: P 3/3, R 3/4, F .857 (best overall); t=.1: P 4/7, R 1, F .727 (best with recall >= .95).
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0])
SCORES = np.array([0.9, 0.8, 0.7, 0.1, 0.6, 0.3, 0.2, 0.05])


def test_choose_thresholds_by_hand() -> None:
    th = choose_thresholds(LABELS, SCORES, min_recall=0.95, presets=(0.5, 0.95, 0.99))
    assert th == {"default": 0.1, "recall_0.5": 0.8, "recall_0.95": 0.1, "recall_0.99": 0.1}
    assert choose_thresholds(LABELS, SCORES, min_recall=0.5, presets=())["default"] == 0.7
    with pytest.raises(TextsieveError, match="no text image"):
        choose_thresholds(np.zeros(4), SCORES[:4], 0.95, ())


def test_threshold_presets_lookup() -> None:
    meta = {"thresholds": {"default": 0.3, "recall_0.99": 0.05}}
    assert threshold_of(meta) == 0.3 and threshold_of(meta, 0.99) == 0.05
    with pytest.raises(CheckpointError, match="available: 0.99"):
        threshold_of(meta, 0.9)


def test_calibrate_command_writes_thresholds(
    textdis_root: Path, student_weights: Path, tmp_path: Path
) -> None:
    raw = torch.load(student_weights, weights_only=True)
    raw["optimizer"] = {"state": {}, "param_groups": []}
    torch.save(raw, student_weights)
    out = tmp_path / "calibrated.pt"
    r = CliRunner().invoke(
        app, ["calibrate", "-w", str(student_weights), "--data", str(textdis_root), "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    ckpt = torch.load(out, weights_only=True)
    assert "optimizer" not in ckpt
    assert set(ckpt["thresholds"]) == {"default", "recall_0.95", "recall_0.99"}
    assert ckpt["calibration"]["images"] == 8
    # The default keeps recall >= 0.95 on the calibration data (4 text images: all of them).
    assert ckpt["calibration"]["at_threshold"]["default"]["recall"] == 1.0
    model, meta = load_model(out)
    assert threshold_of(meta) == ckpt["thresholds"]["default"]


def test_filter_recall_preset(tmp_path: Path, student_weights: Path) -> None:
    from tests.conftest import draw_scene

    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for i in range(3):
        draw_scene((96, 96), i).save(crawl / f"{i}.jpg")
    raw = torch.load(student_weights, weights_only=True)
    # Everything passes at the recall-0.99 preset (0.0), nothing at the default (1.0).
    raw["thresholds"] = {"default": 1.0, "recall_0.99": 0.0}
    torch.save(raw, student_weights)
    runner = CliRunner()

    def run(*extra: str) -> tuple[int, str, str]:
        out = tmp_path / "t.txt"
        r = runner.invoke(app, ["filter", str(crawl), "-o", str(out), "-w", str(student_weights),
                                "--workers", "0", "-q", "--overwrite", *extra])
        return r.exit_code, out.read_text() if out.exists() else "", r.output

    code, text, _ = run("--recall", "0.99")
    assert code == 0 and len(text.splitlines()) == 3
    code, text, _ = run()
    assert code == 0 and text == ""
    code, _, output = run("--recall", "0.9")
    assert code == 2 and "no threshold for recall 0.9" in output
    code, _, output = run("--recall", "0.99", "--threshold", "0.5")
    assert code == 2 and "not both" in output
