"""``textsieve autolabel``: unlabeled photo folders -> a TextDis-layout root, by PP-OCRv4.

FTC built its training set by running text detectors over unlabeled photos; this does the same.
Every image is read by the detector and, to confirm a box, the recogniser (:mod:`textsieve.ocr`),
then *copied* (never moved) into one of::

    ROOT/text/<name>            at least one confirmed box (see :func:`decide`)
    ROOT/text_gt/<name>_gt.txt  its boxes, 8 integers per line, stored-pixel coordinates
    ROOT/nontext/<name>         no box at all
    ROOT/uncertain/<name>       boxes, none confirmed
    ROOT/autolabel.jsonl        one record per image: decision, boxes, scores, strings
    ROOT/autolabel.yaml         the settings the root was labelled with

Resumable: the JSONL line is the commit record, written after the GT file and the image copy
(each via a temporary file and ``os.replace``), so a killed run leaves no half-written pair and a
rerun skips every image the JSONL names. At the end the JSONL is rewritten sorted by source path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from textsieve.annotations import IMAGE_EXTENSIONS, format_gt_line
from textsieve.config import to_dict
from textsieve.decode import decode_image, image_size
from textsieve.errors import ConfigError, DecodeError, TextsieveError
from textsieve.ocr import Detection, Ocr, OcrConfig, Reading, alnum_count, ensure_extra, load_ocr
from textsieve.regions import exif_transform_points

logger = logging.getLogger(__name__)

DECISIONS: tuple[str, ...] = ("text", "nontext", "uncertain")
JSONL_NAME = "autolabel.jsonl"
SETTINGS_NAME = "autolabel.yaml"
# Settings that change decisions: a resume with other values would mix two labellings.
_DECISION_FIELDS = ("min_score", "min_chars", "min_conf")


@dataclass(frozen=True)
class AutolabelConfig:
    """Settings of an autolabel run.

    Attributes:
        sources: folders (searched recursively) or single image files.
        out: the TextDis-layout root to write (created; resumed when it has a JSONL).
        min_score: detector box score a confirming box needs.
        min_chars: letters/digits the recognised string of a confirming box needs.
        min_conf: mean character confidence of the recogniser a confirming box needs.
        workers: processes (1: run in this process).
        threads: onnxruntime threads per process.
        ocr: detector settings (long side scaled to 960 px by default).
        review: write contact sheets to this PNG (more pages as ``-2``, ``-3`` ...).
    """

    sources: tuple[Path, ...]
    out: Path
    min_score: float = 0.5
    min_chars: int = 2
    min_conf: float = 0.8
    workers: int = 1
    threads: int = 1
    ocr: OcrConfig = field(default_factory=OcrConfig)
    review: Path | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0 or not 0.0 <= self.min_conf <= 1.0:
            raise ConfigError("min_score and min_conf must be in [0, 1]")
        if self.min_chars < 1:
            raise ConfigError(f"min_chars must be >= 1, got {self.min_chars}")
        if self.workers < 1 or self.threads < 1:
            raise ConfigError("workers and threads must be >= 1")


@dataclass
class AutolabelStats:
    """Summary of a run. ``counts`` covers every image of the root, resumed ones included."""

    images: int = 0
    resumed: int = 0
    processed: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*DECISIONS, "error"), 0))
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    model_seconds: float = 0.0
    review_pages: list[Path] = field(default_factory=list)

    @property
    def ms_per_image(self) -> float:
        """Wall time per image processed in this run (decode, models, copies)."""
        return 1e3 * self.seconds / self.processed if self.processed else 0.0

    @property
    def model_ms_per_image(self) -> float:
        """Detector + recogniser time per image, summed over processes."""
        return 1e3 * self.model_seconds / self.processed if self.processed else 0.0


def decide(
    dets: list[Detection], reads: list[Reading], cfg: AutolabelConfig
) -> tuple[str, list[bool]]:
    """The decision rule.

    A box is *confirmed* when its detector score >= ``min_score``, its recognised string has
    >= ``min_chars`` letters or digits and the recogniser's confidence is >= ``min_conf``.

    Args:
        dets: detections of one image.
        reads: the recogniser's reading of each detection, same order.
        cfg: thresholds.

    Returns:
        (decision, confirmed flag per box): ``text`` if any box is confirmed, ``nontext`` when
        there is no box at all, ``uncertain`` otherwise.
    """
    ok = [
        d.score >= cfg.min_score and r.conf >= cfg.min_conf and alnum_count(r.text) >= cfg.min_chars
        for d, r in zip(dets, reads, strict=True)
    ]
    if any(ok):
        return "text", ok
    return ("uncertain" if dets else "nontext"), ok


def list_sources(sources: Iterable[Path], exclude: Path | None = None) -> list[Path]:
    """Image files under ``sources`` (recursive, hidden entries skipped), each source sorted.

    Args:
        sources: folders or files, in the order given.
        exclude: a folder to leave out (the output root, when it lies inside a source).
    """
    ex = Path(exclude).resolve() if exclude is not None else None
    seen: set[Path] = set()
    out: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_file():
            cands = [src]
        elif src.is_dir():
            cands = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            raise TextsieveError(f"{src}: no such file or folder")
        for p in cands:
            rel = p.relative_to(src).parts if p != src else ()
            if any(part.startswith(".") for part in rel) or not p.is_file():
                continue
            rp = p.resolve()
            if rp in seen or (ex is not None and rp.is_relative_to(ex)):
                continue
            seen.add(rp)
            out.append(p)
    return out


def assign_names(paths: list[Path], taken: dict[str, str]) -> dict[str, str]:
    """Output file names: the source name, ``-2``, ``-3`` ... appended on a stem collision.

    Stems are compared case-insensitively (``a.jpg`` and ``A.png`` would share ``a_gt.txt`` on a
    case-insensitive disk). Names already recorded in ``taken`` (absolute source path -> name)
    are kept, so a resume never renames.

    Returns:
        absolute source path -> output file name.
    """
    names = dict(taken)
    used = {Path(n).stem.lower() for n in names.values()}
    for p in paths:
        key = os.path.abspath(p)
        if key in names:
            continue
        stem, k = p.stem, 1
        while (stem if k == 1 else f"{stem}-{k}").lower() in used:
            k += 1
        stem = stem if k == 1 else f"{stem}-{k}"
        used.add(stem.lower())
        names[key] = stem + p.suffix.lower()
    return names


def label_image(path: Path, ocr: Ocr, cfg: AutolabelConfig) -> tuple[dict[str, Any], float]:
    """Read one image and decide.

    Args:
        path: the image file.
        ocr: the loaded detector and recogniser.
        cfg: decision thresholds.

    Returns:
        (the JSONL record without ``name``, seconds spent in the models). A file that cannot be
        decoded gives an ``error`` record (bad input is data).
    """
    src = os.path.abspath(path)
    try:
        rgb = decode_image(path)
        width, height, orientation = image_size(path)
    except DecodeError as e:
        return {"src": src, "decision": "error", "error": e.kind, "detail": str(e)}, 0.0
    dets, reads, secs = ocr(rgb)
    decision, ok = decide(dets, reads, cfg)
    boxes = [
        {"points": [list(p) for p in d.points], "score": round(d.score, 4), "text": r.text,
         "conf": round(r.conf, 4), "confirmed": c}
        for d, r, c in zip(dets, reads, ok, strict=True)
    ]
    # No timings in the record: the same input gives the same JSONL bytes.
    return {
        "src": src, "decision": decision, "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]), "orientation": orientation, "stored_size": [width, height],
        "best_score": round(max((d.score for d in dets), default=0.0), 4), "boxes": boxes,
    }, secs


def gt_lines(rec: dict[str, Any]) -> list[str]:
    """GT lines of a text record: its confirmed boxes, mapped back to stored pixels.

    Boxes are found on the EXIF-upright image; GT files are in stored pixels (the convention of
    :mod:`textsieve.labels`), so the inverse orientation is applied.
    """
    orientation = rec.get("orientation", 1) or 1
    inverse = {6: 8, 8: 6}.get(orientation, orientation)
    lines = []
    for b in rec["boxes"]:
        if not b["confirmed"]:
            continue
        pts = [tuple(p) for p in b["points"]]
        if orientation != 1:
            pts = list(exif_transform_points(pts, inverse, rec["width"], rec["height"]))
        lines.append(format_gt_line(pts))
    return lines


def _atomic_write(dest: Path, write: Callable[[Path], None]) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    write(tmp)
    os.replace(tmp, dest)


def _commit(rec: dict[str, Any], root: Path, fh: Any) -> None:
    """Write GT, then the image copy, then the JSONL line (the commit record)."""
    decision = rec["decision"]
    if decision != "error":
        if decision == "text":
            text = "\n".join(gt_lines(rec)) + "\n"
            _atomic_write(root / "text_gt" / f"{Path(rec['name']).stem}_gt.txt",
                          lambda t: t.write_text(text, encoding="utf-8"))
        _atomic_write(root / decision / rec["name"], lambda t: shutil.copy2(rec["src"], t))
    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    fh.flush()


def _write_records(path: Path, recs: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    _atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of an ``autolabel.jsonl``; a torn last line (killed run) is dropped."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    recs = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "src" not in rec or "decision" not in rec:
                raise ValueError("not an autolabel record")
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            if i == len(lines):
                logger.warning("%s:%d: dropping a torn last line (interrupted run)", path, i)
                continue
            raise TextsieveError(f"{path}:{i}: bad autolabel record: {e}") from None
        recs.append(rec)
    return recs


def _check_settings(root: Path, cfg: AutolabelConfig) -> None:
    """Refuse to resume a root labelled with other decision or detector settings."""
    want = {k: getattr(cfg, k) for k in _DECISION_FIELDS}
    want["ocr"] = {k: v for k, v in to_dict(cfg.ocr).items() if k != "threads"}
    path = root / SETTINGS_NAME
    if path.is_file():
        try:
            have = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        diff = sorted(k for k in want if have.get(k) != want[k])
        if diff:
            was = ", ".join(f"{k}={have.get(k)!r}" for k in diff)
            raise ConfigError(f"{root} was labelled with other settings ({was}); "
                              "use a new --out or the same options")
    else:
        path.write_text(yaml.safe_dump(want, sort_keys=False), encoding="utf-8")


_WORKER: dict[str, Any] = {}


def _init_worker(cfg: AutolabelConfig) -> None:
    _WORKER["ocr"] = load_ocr(cfg.ocr)
    _WORKER["cfg"] = cfg


def _work(path: Path) -> tuple[dict[str, Any], float]:
    return label_image(path, _WORKER["ocr"], _WORKER["cfg"])


def _results(todo: list[Path], cfg: AutolabelConfig) -> Iterator[tuple[dict[str, Any], float]]:
    if cfg.workers == 1 or len(todo) <= 1:
        ocr = load_ocr(cfg.ocr)
        for p in todo:
            yield label_image(p, ocr, cfg)
        return
    ensure_extra()  # a worker that fails in its initializer would be respawned forever
    # spawn, not fork: onnxruntime's thread pools do not survive a fork.
    with get_context("spawn").Pool(cfg.workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        yield from pool.imap_unordered(_work, todo, chunksize=1)


def run_autolabel(
    cfg: AutolabelConfig, on_progress: Callable[[int], None] | None = None
) -> AutolabelStats:
    """Label every image under ``cfg.sources`` into the TextDis-layout root ``cfg.out``.

    Args:
        cfg: the run's settings.
        on_progress: called with the number of images finished (resumed ones at the start).

    Returns:
        Counts over the whole root and timings of this run.

    Raises:
        ConfigError: the root was labelled with other settings.
        MissingExtraError: the ``ocr`` extra is not installed.
    """
    ensure_extra()  # before anything is written
    root = Path(cfg.out)
    cfg = dataclasses.replace(cfg, ocr=dataclasses.replace(cfg.ocr, threads=cfg.threads))
    paths = list_sources(cfg.sources, exclude=root)
    for sub in (*DECISIONS, "text_gt"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    _check_settings(root, cfg)
    jsonl = root / JSONL_NAME
    done = {r["src"]: r for r in read_records(jsonl)}
    names = assign_names(paths, {s: r["name"] for s, r in done.items() if "name" in r})
    todo = [p for p in paths if os.path.abspath(p) not in done]
    stats = AutolabelStats(images=len(paths), resumed=len(paths) - len(todo))
    if stats.resumed and on_progress:
        on_progress(stats.resumed)
    logger.info("%d images, %d already labelled, %d to do", len(paths), stats.resumed, len(todo))
    _write_records(jsonl, done.values())  # drops a torn last line before appending
    t0 = time.perf_counter()
    with open(jsonl, "a", encoding="utf-8") as fh:
        for rec, secs in _results(todo, cfg):
            rec["name"] = names[rec["src"]]
            _commit(rec, root, fh)
            done[rec["src"]] = rec
            stats.processed += 1
            stats.model_seconds += secs
            if on_progress:
                on_progress(1)
    stats.seconds = time.perf_counter() - t0
    ordered = sorted(done.values(), key=lambda r: r["src"])
    _write_records(jsonl, ordered)
    for r in ordered:
        stats.counts[r["decision"]] = stats.counts.get(r["decision"], 0) + 1
        if r["decision"] == "error":
            stats.errors[r["error"]] = stats.errors.get(r["error"], 0) + 1
    if cfg.review is not None:
        from textsieve.review import write_review

        stats.review_pages = write_review(ordered, root, cfg.review)
    return stats
