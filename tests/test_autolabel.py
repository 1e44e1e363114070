"""textsieve.autolabel and ``textsieve autolabel``: layout, boxes, JSONL, resume, missing extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import draw_scene
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

import textsieve.autolabel as al
from textsieve.annotations import read_gt, scan_root
from textsieve.autolabel import (
    AutolabelConfig,
    assign_names,
    decide,
    gt_lines,
    list_sources,
    read_records,
    run_autolabel,
)
from textsieve.cli import app
from textsieve.errors import ConfigError, TextsieveError
from textsieve.ocr import Detection, Ocr, OcrConfig, Reading
from textsieve.regions import exif_transform_points

runner = CliRunner()
WORDS = ("OPEN DAILY", "Station 42", "EXIT 7", "Coffee Tea", "SALE 50")


def _fonts() -> list[ImageFont.ImageFont | ImageFont.FreeTypeFont]:
    """Pillow's scalable default font in two sizes plus whatever TTFs the system has."""
    fonts: list = [ImageFont.load_default(size=40), ImageFont.load_default(size=28)]
    for name in ("DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf"):
        fonts += [ImageFont.truetype(str(p), 34)
                  for p in sorted(Path("/usr/share/fonts").rglob(name))[:1]]
    return fonts


def _text_image(word: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, seed: int
                ) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A word on a light sign over a photo-like scene; returns the image and the text's bbox."""
    img = draw_scene((320, 128), seed)
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = d.textbbox((24, 40), word, font=font)
    d.rectangle((x0 - 8, y0 - 8, x1 + 8, y1 + 8), fill=(238, 236, 228))
    d.text((24, 40), word, font=font, fill=(20, 20, 30))
    return img, (x0, y0, x1, y1)


# The drawn images are small (320x128) and meant to be read at their own scale: the default
# setting would enlarge them 3-5x, where the per-pixel noise of the scenes turns into blobs that
# DB takes for text (as it takes cat faces in enlarged small photos: those go to uncertain/).
NATIVE = OcrConfig(limit_side=960, limit_type="max")


@pytest.fixture(scope="module")
def ocr() -> Ocr:
    pytest.importorskip("rapidocr_onnxruntime")
    from textsieve.ocr import load_ocr

    return load_ocr(NATIVE)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, ocr: Ocr) -> Ocr:
    """Reuse one loaded detector (loading costs about a second) in in-process runs."""
    monkeypatch.setattr(al, "load_ocr", lambda cfg=None: ocr)
    return ocr


@pytest.fixture
def photos(tmp_path: Path) -> tuple[list[Path], dict[str, tuple[int, int, int, int] | None]]:
    """Two source folders: drawn words in several fonts, plain scenes, a broken file, and a
    name that occurs in both folders. Returns the folders and, per source file name, the drawn
    text's bbox (None for scenes)."""
    a, b = tmp_path / "src" / "a", tmp_path / "src" / "b"
    (a / "sub").mkdir(parents=True)
    b.mkdir()
    truth: dict[str, tuple[int, int, int, int] | None] = {}
    for i, font in enumerate(_fonts()):
        img, box = _text_image(WORDS[i % len(WORDS)], font, seed=i)
        name = "sign.jpg" if i == 0 else f"word{i}.jpg"
        img.save(a / name, quality=92)
        truth[f"a/{name}"] = box
    for i in range(2):
        draw_scene((200, 150), 100 + i).save(a / "sub" / f"scene{i}.png")
        truth[f"a/sub/scene{i}.png"] = None
    draw_scene((200, 150), 200).save(b / "sign.jpg", quality=92)  # same name as a/sign.jpg
    truth["b/sign.jpg"] = None
    (b / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (b / ".hidden.jpg").write_bytes(b"")  # hidden files are not listed
    return [a, b], truth


def _run(srcs: list[Path], out: Path, **kw: object) -> al.AutolabelStats:
    cfg = AutolabelConfig(sources=tuple(srcs), out=out, ocr=NATIVE, **kw)  # type: ignore[arg-type]
    return run_autolabel(cfg)


# ---------------------------------------------------------------------------- pure functions
def test_decide_rule() -> None:
    cfg = AutolabelConfig(sources=(), out=Path("x"), min_score=0.6, min_chars=2, min_conf=0.8)
    box = ((0, 0), (10, 0), (10, 5), (0, 5))
    assert decide([], [], cfg) == ("nontext", [])
    good = (Detection(box, 0.7), Reading("A1", 0.9))
    assert decide(*zip(good, strict=True), cfg) == ("text", [True])  # type: ignore[arg-type]
    for det, read in [(Detection(box, 0.59), Reading("AB", 0.99)),  # weak box
                      (Detection(box, 0.9), Reading("A-", 0.99)),  # one letter only
                      (Detection(box, 0.9), Reading("AB", 0.79))]:  # unsure reading
        assert decide([det], [read], cfg) == ("uncertain", [False])
    dec, ok = decide([Detection(box, 0.3), good[0]], [Reading("", 0.0), good[1]], cfg)
    assert dec == "text" and ok == [False, True]


def test_bad_thresholds_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        AutolabelConfig(sources=(), out=Path("x"), min_score=1.5)
    with pytest.raises(ConfigError):
        AutolabelConfig(sources=(), out=Path("x"), min_chars=0)


def test_names_never_collide_and_resume_keeps_them(tmp_path: Path) -> None:
    paths = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "b" / "X.png",
             tmp_path / "c" / "x-2.jpg"]
    names = assign_names(paths, {})
    assert [names[str(p)] for p in paths] == ["x.jpg", "x-2.jpg", "X-3.png", "x-2-2.jpg"]
    again = assign_names([tmp_path / "d" / "x.jpg", *paths], names)
    assert {k: again[k] for k in names} == names
    assert again[str(tmp_path / "d" / "x.jpg")] == "x-4.jpg"


def test_list_sources_skips_hidden_and_the_output_root(tmp_path: Path) -> None:
    (tmp_path / "out" / "text").mkdir(parents=True)
    (tmp_path / ".cache").mkdir()
    for p in ("a.jpg", "out/text/a.jpg", ".cache/c.jpg", ".d.jpg", "notes.txt", "B.PNG"):
        (tmp_path / p).write_bytes(b"x")
    got = list_sources([tmp_path, tmp_path / "a.jpg"], exclude=tmp_path / "out")
    assert [p.name for p in got] == ["B.PNG", "a.jpg"]
    with pytest.raises(TextsieveError, match="no such"):
        list_sources([tmp_path / "missing"])


def test_gt_lines_map_upright_boxes_back_to_stored_pixels() -> None:
    # Orientation 6: stored 50x100, upright 100x50. Upright (10, 20) is stored (20, 90).
    pts = [[10, 20], [40, 20], [40, 30], [10, 30]]
    rec = {"orientation": 6, "width": 100, "height": 50,
           "boxes": [{"points": pts, "confirmed": True}, {"points": pts, "confirmed": False}]}
    lines = gt_lines(rec)
    assert len(lines) == 1 and lines[0].split()[:2] == ["20", "90"]
    stored = [tuple(map(float, lines[0].split()[i:i + 2])) for i in range(0, 8, 2)]
    assert [list(p) for p in exif_transform_points(stored, 6, 50, 100)] == pts


def test_torn_last_line_is_dropped_but_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "autolabel.jsonl"
    good = json.dumps({"src": "/a.jpg", "decision": "nontext", "boxes": []})
    p.write_text(good + "\n" + good[:20])
    assert len(read_records(p)) == 1
    p.write_text(good[:20] + "\n" + good + "\n")
    with pytest.raises(TextsieveError, match=":1:"):
        read_records(p)


# ------------------------------------------------------------------------ with the detector
def test_layout_boxes_and_jsonl(photos: tuple, fast: Ocr, tmp_path: Path) -> None:
    srcs, truth = photos
    before = {p: p.stat().st_mtime_ns for s in srcs for p in s.rglob("*")}
    out = tmp_path / "root"
    stats = _run(srcs, out)
    n_text = sum(v is not None for v in truth.values())
    assert stats.counts == {"text": n_text, "nontext": 3, "uncertain": 0, "error": 1}
    assert sum(stats.errors.values()) == 1 and stats.processed == stats.images == len(truth) + 1
    # Copies, never moves: the sources are untouched.
    assert {p: p.stat().st_mtime_ns for s in srcs for p in s.rglob("*")} == before
    recs = {Path(r["src"]).relative_to(srcs[0].parent).as_posix(): r
            for r in read_records(out / "autolabel.jsonl")}
    assert set(recs) == {*truth, "b/broken.jpg"}  # one record per image, errors included
    assert recs["a/sign.jpg"]["name"] == "sign.jpg" and recs["b/sign.jpg"]["name"] == "sign-2.jpg"
    samples = {s.path.name: s for s in scan_root(out)}  # a valid TextDis root
    for key, box in truth.items():
        rec = recs[key]
        if box is None:
            assert rec["decision"] == "nontext" and rec["boxes"] == []
            assert not samples[rec["name"]].is_text
            continue
        assert rec["decision"] == "text", rec
        s = samples[rec["name"]]
        assert s.is_text and s.gt_path is not None
        assert (out / "text" / rec["name"]).read_bytes() == (srcs[0].parent / key).read_bytes()
        polys = read_gt(s.gt_path)
        assert polys and all(b["score"] > 0 and "text" in b and "conf" in b for b in rec["boxes"])
        x0, y0, x1, y1 = box
        xs = [x for p in polys for x, _ in p.points]
        ys = [y for p in polys for _, y in p.points]
        # The GT boxes cover the drawn text (DB adds a margin of a few pixels) and no more.
        assert min(xs) <= x0 + 2 and max(xs) >= x1 - 2 and min(ys) <= y0 + 2 and max(ys) >= y1 - 2
        assert max(xs) - min(xs) < x1 - x0 + 40 and max(ys) - min(ys) < y1 - y0 + 40
    assert not (out / "nontext" / "broken.jpg").exists()
    assert not list(out.rglob(".*.tmp"))


def test_resume_skips_done_images_and_a_killed_run_completes(
    photos: tuple, fast: Ocr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srcs, _ = photos
    clean = tmp_path / "clean"
    _run(srcs, clean)
    calls: list[str] = []
    real_label = al.label_image

    def counting(path: Path, ocr: Ocr, cfg: AutolabelConfig) -> tuple:
        calls.append(Path(path).name)
        return real_label(path, ocr, cfg)

    monkeypatch.setattr(al, "label_image", counting)
    real_write = al._atomic_write

    def killed_at_third_copy(dest: Path, write: object) -> None:
        if dest.parent.name in al.DECISIONS and len(calls) == 3:
            raise KeyboardInterrupt  # killed after the GT file, before the image copy
        real_write(dest, write)  # type: ignore[arg-type]

    out = tmp_path / "root"
    monkeypatch.setattr(al, "_atomic_write", killed_at_third_copy)
    with pytest.raises(KeyboardInterrupt):
        _run(srcs, out)
    assert len(read_records(out / "autolabel.jsonl")) == 2
    monkeypatch.setattr(al, "_atomic_write", real_write)
    calls.clear()
    stats = _run(srcs, out)
    assert stats.resumed == 2 and len(calls) == stats.processed == stats.images - 2
    assert (out / "autolabel.jsonl").read_bytes() == (clean / "autolabel.jsonl").read_bytes()
    tree = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert tree == sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*"))

    calls.clear()
    assert _run(srcs, out).processed == 0 and calls == []  # all done: nothing runs again
    # A torn last line (killed while appending) is redone; nothing else is.
    lines = (out / "autolabel.jsonl").read_text().splitlines(keepends=True)
    (out / "autolabel.jsonl").write_text("".join(lines[:-1]) + lines[-1][:15])
    assert _run(srcs, out).processed == 1 and len(calls) == 1
    assert (out / "autolabel.jsonl").read_bytes() == (clean / "autolabel.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="min_score"):
        _run(srcs, out, min_score=0.9)


def test_exif_rotated_photo_gets_gt_in_stored_pixels(fast: Ocr, tmp_path: Path) -> None:
    upright = Image.new("RGB", (320, 128), (236, 232, 220))
    ImageDraw.Draw(upright).text((30, 40), "Station 42", font=ImageFont.load_default(size=36),
                                 fill=(20, 20, 30))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # EXIF 6 turns it back upright
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "src").mkdir()
    stored.save(tmp_path / "src" / "turned.jpg", quality=95, exif=exif)
    _run([tmp_path / "src"], tmp_path / "root")
    (poly,) = read_gt(tmp_path / "root" / "text_gt" / "turned_gt.txt")
    dark = np.argwhere(np.asarray(stored.convert("L")) < 60)  # the glyphs, in stored pixels
    (ty0, tx0), (ty1, tx1) = dark.min(0), dark.max(0)
    xs, ys = [x for x, _ in poly.points], [y for _, y in poly.points]
    assert min(xs) <= tx0 and max(xs) >= tx1 and min(ys) <= ty0 and max(ys) >= ty1
    assert max(xs) <= stored.width and max(ys) <= stored.height


def test_worker_pool_gives_the_same_root(photos: tuple, ocr: Ocr, tmp_path: Path) -> None:
    a = photos[0][0]
    few = [a / "sign.jpg", a / "sub"]  # 3 images: the cost here is starting the workers
    one, two = tmp_path / "one", tmp_path / "two"
    _run(few, one)
    _run(few, two, workers=2)
    assert (one / "autolabel.jsonl").read_bytes() == (two / "autolabel.jsonl").read_bytes()


# ------------------------------------------------------------------------------------- CLI
def test_cli_labels_and_draws_review(photos: tuple, fast: Ocr, tmp_path: Path) -> None:
    srcs, truth = photos
    out, review = tmp_path / "root", tmp_path / "sheets" / "review.png"
    r = runner.invoke(app, ["autolabel", *map(str, srcs), "-o", str(out), "--review", str(review),
                            "--limit-type", "max"])
    assert r.exit_code == 0, r.output
    assert "uncertain" in r.output and "skipped" in r.output and "ms/image" in r.output
    assert review.is_file() and Image.open(review).width > 0
    n = len(read_records(out / "autolabel.jsonl"))
    assert n == len(truth) + 1


def test_cli_missing_extra_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "rapidocr_onnxruntime"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    draw_scene((64, 64), 1).save(tmp_path / "x.png")
    r = runner.invoke(app, ["autolabel", str(tmp_path / "x.png"), "--out", str(tmp_path / "root")])
    assert r.exit_code == 2, r.output
    assert "pip install 'textsieve[ocr]'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "root").exists()  # nothing written before the check


def test_cli_bad_option_is_one_line(tmp_path: Path) -> None:
    draw_scene((64, 64), 1).save(tmp_path / "x.png")
    r = runner.invoke(app, ["autolabel", str(tmp_path), "--out", str(tmp_path / "r"),
                            "--limit-type", "huge"])
    assert r.exit_code == 2 and "limit_type" in r.output
