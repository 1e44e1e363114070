"""textsieve.ocr: the PP-OCRv4 wrapper (settings, missing extra, boxes on drawn text)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from textsieve.errors import ConfigError, MissingExtraError
from textsieve.ocr import (
    INSTALL_HINT,
    Ocr,
    OcrConfig,
    alnum_count,
    ensure_extra,
    input_size,
    load_ocr,
)


def _hide_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``rapidocr_onnxruntime`` import fail, as if the extra were not installed."""
    for name in [m for m in sys.modules if m.split(".")[0] == "rapidocr_onnxruntime"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)


@pytest.fixture(scope="module")
def ocr() -> Ocr:
    """Reads the small drawn images at their own scale (the default would enlarge them 3x)."""
    pytest.importorskip("rapidocr_onnxruntime")
    return load_ocr(OcrConfig(limit_side=960, limit_type="max"))


def _words(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
           size: tuple[int, int] = (320, 128)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    img = Image.new("RGB", size, (232, 226, 212))
    d = ImageDraw.Draw(img)
    d.text((24, 40), text, font=font, fill=(20, 20, 30))
    return np.asarray(img), d.textbbox((24, 40), text, font=font)


def test_missing_extra_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_extra(monkeypatch)
    with pytest.raises(MissingExtraError, match=r"pip install 'textsieve\[ocr\]'"):
        load_ocr()
    with pytest.raises(MissingExtraError) as e:
        ensure_extra()
    assert INSTALL_HINT in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kw", [{"limit_type": "mid"}, {"limit_side": 16}, {"box_thresh": 1.5},
                                {"threads": 0}])
def test_bad_settings_are_config_errors(kw: dict) -> None:
    with pytest.raises(ConfigError):
        OcrConfig(**kw)


def test_alnum_count() -> None:
    assert alnum_count("") == 0
    assert alnum_count("a-1 !") == 2
    assert alnum_count("东京 7") == 3  # letters of any script count


def test_input_size_hand_computed() -> None:
    size = input_size
    cap = OcrConfig(limit_side=960, limit_type="max")
    assert size(cap, 1280, 720) == (960, 544)  # 720 * 0.75 = 540 -> 17 * 32
    assert size(cap, 448, 336) == (448, 320)  # not enlarged; round(10.5) = 10 (banker's)
    assert size(cap, 10, 5) == (32, 32)  # floor of one 32-px cell
    wheel = OcrConfig(limit_side=736, limit_type="min")
    assert size(wheel, 448, 336) == (992, 736)  # int(981.3) = 981 -> 31 * 32
    long = OcrConfig(limit_side=960, limit_type="long")
    assert size(long, 448, 336) == (960, 704)  # 720 / 32 = 22.5 -> 22 (banker's)
    assert size(long, 4000, 3000) == (960, 704)


def test_boxes_match_rapidocr_itself(ocr: Ocr) -> None:
    """Same boxes as the wheel's own TextDetector when run with the wheel's settings."""
    from rapidocr_onnxruntime.ch_ppocr_det import TextDetector

    from textsieve.ocr import find_models

    # The wheel enlarges the short side (to 736 by default; 224 keeps the test fast).
    rgb, _ = _words("EXIT 7", ImageFont.load_default(size=36), size=(200, 112))
    ours = load_ocr(OcrConfig(limit_side=224, limit_type="min"))
    ref = TextDetector({"model_path": str(find_models()[0]), "limit_side_len": 224,
                        "limit_type": "min", "box_thresh": 0.5, "unclip_ratio": 1.6,
                        "use_dilation": True, "score_mode": "fast"})
    boxes, _ = ref(np.ascontiguousarray(rgb[:, :, ::-1]))  # the wheel works on BGR
    want = sorted(tuple(map(tuple, b.astype(int).tolist())) for b in boxes)
    got = sorted(d.points for d in ours.detect(rgb))
    assert got == want and len(got) >= 1


def test_drawn_words_are_found_and_read(ocr: Ocr) -> None:
    fonts = [ImageFont.load_default(size=40)]
    fonts += [ImageFont.truetype(str(p), 34)
              for p in sorted(Path("/usr/share/fonts").rglob("DejaVuSerif-Bold.ttf"))[:1]]
    for font in fonts:
        rgb, (x0, y0, x1, y1) = _words("EXIT 7", font)
        dets, reads, secs = ocr(rgb)
        assert len(dets) == len(reads) >= 1 and secs > 0
        best = max(range(len(dets)), key=lambda i: dets[i].score)
        xs = [p[0] for p in dets[best].points]
        ys = [p[1] for p in dets[best].points]
        # The box covers the drawn text, with DB's usual margin of a few pixels.
        assert min(xs) <= x0 + 2 and max(xs) >= x1 - 2 and min(ys) <= y0 + 2 and max(ys) >= y1 - 2
        assert max(xs) - min(xs) < (x1 - x0) + 30 and max(ys) - min(ys) < (y1 - y0) + 30
        assert reads[best].text.replace(" ", "") == "EXIT7" and reads[best].conf > 0.8


def test_blank_and_tiny_images_give_no_boxes(ocr: Ocr) -> None:
    assert ocr.detect(np.full((90, 120, 3), 128, np.uint8)) == []
    dets, reads, _ = ocr(np.zeros((1, 1, 3), np.uint8))
    assert dets == [] and reads == []


def test_light_text_on_colour_is_read(ocr: Ocr) -> None:
    img = Image.new("RGB", (300, 110), (30, 60, 200))
    ImageDraw.Draw(img).text((20, 30), "HELLO", font=ImageFont.load_default(size=44),
                             fill=(250, 240, 230))
    dets, reads, _ = ocr(np.asarray(img))
    assert [r.text for r in reads] == ["HELLO"]


def test_default_setting_reads_a_photo_sized_image() -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    img = Image.new("RGB", (448, 336), (90, 120, 80))
    d = ImageDraw.Draw(img)
    d.rectangle((290, 300, 440, 328), fill=(245, 245, 240))  # a small watermark-like label
    d.text((296, 304), "2dehands.nl", font=ImageFont.load_default(size=18), fill=(10, 10, 10))
    dets, reads, _ = load_ocr()(np.asarray(img))
    assert [r.text for r in reads] == ["2dehands.nl"]
    xs = [x for x, _ in dets[0].points]
    assert min(xs) >= 285 and max(xs) <= 445
