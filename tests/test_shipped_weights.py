"""The shipped default weights: loadable safely, self-describing, and they separate text scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from textsieve import __version__
from textsieve.checkpoint import default_weights, load_model, threshold_of
from textsieve.decision import image_probs
from textsieve.models import StudentNet, count_params
from textsieve.preprocess import prepare

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "student.pt"


def test_default_weights_resolve_to_the_shipped_file() -> None:
    assert default_weights().resolve() == WEIGHTS.resolve()


def test_metadata() -> None:
    raw = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert raw["arch"] == "student" and raw["version"] == __version__
    assert "optimizer" not in raw
    th = raw["thresholds"]
    assert set(th) >= {"default", "recall_0.95", "recall_0.99"}
    assert 0.0 < th["recall_0.99"] <= th["recall_0.95"] < 1.0
    cal = raw["calibration"]
    assert cal["images"] > 100 and 0.5 < cal["roc_auc"] <= 1.0
    # The default keeps recall >= 0.95 on the calibration (dev) split.
    assert cal["at_threshold"]["default"]["recall"] >= 0.95
    model, meta = load_model(WEIGHTS)
    assert isinstance(model, StudentNet) and count_params(model) == 86_417
    assert threshold_of(meta) == th["default"]


def _scene(seed: int, words: list[str]) -> np.ndarray:
    """Photo-like backdrop (gradient, blobs, noise), optionally with words on light plates."""
    rng = np.random.default_rng(seed)
    w, h = 480, 360
    yy = np.mgrid[0:h, 0:w][0][..., None] / h
    top, bottom = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    arr = top * (1 - yy) + bottom * yy + rng.normal(0, 8, (h, w, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 90)
        d.ellipse(
            (cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3))
        )
    for word in words:
        x, y = int(rng.integers(20, 200)), int(rng.integers(20, 280))
        d.rectangle((x - 8, y - 6, x + len(word) * 22, y + 44), fill=(245, 245, 240))
        d.text((x, y), word, font=ImageFont.load_default(size=36), fill=(10, 10, 10))
    return np.asarray(img)


@pytest.mark.parametrize("seed", range(4))
def test_separates_generated_text_and_plain_scenes(seed: int) -> None:
    model, meta = load_model(WEIGHTS)
    batch = [_scene(seed, []), _scene(seed, ["OPEN 24H"]), _scene(seed, ["EXIT", "Main St"])]
    with torch.inference_mode():
        probs = [float(image_probs(model(prepare(a).unsqueeze(0)).logits)[0]) for a in batch]
    plain, text = probs[0], probs[1:]
    assert min(text) >= threshold_of(meta)  # both text scenes are passed on
    assert min(text) > plain + 0.15  # the same backdrop without words scores clearly lower


TEACHERS = ("teacher_ppocr.pt", "teacher_ppocr_crops.pt")


@pytest.mark.parametrize("name", TEACHERS)
def test_shipped_teacher_head_metadata(name: str) -> None:
    raw = torch.load(WEIGHTS.parent / name, map_location="cpu", weights_only=True)
    assert raw["arch"] == "teacher" and raw["model_config"]["backbone"] == "ppocr"
    assert "optimizer" not in raw
    assert raw["calibration"]["at_threshold"]["default"]["recall"] >= 0.95
    assert set(raw["thresholds"]) >= {"default", "recall_0.95", "recall_0.99"}


@pytest.mark.parametrize("name", TEACHERS)
def test_shipped_teacher_loads_with_the_ocr_extra(name: str) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("rapidocr_onnxruntime")
    model, meta = load_model(WEIGHTS.parent / name)
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 96, 128))
    assert out.logits.shape == (1, 34) and torch.isfinite(out.logits).all()
    assert threshold_of(meta) == meta["thresholds"]["default"]
