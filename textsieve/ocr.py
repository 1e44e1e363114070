"""PP-OCRv4 text detector and recogniser from the ``rapidocr-onnxruntime`` wheel (``ocr`` extra).

A thin wrapper: the ONNX models shipped inside the installed ``rapidocr_onnxruntime`` package are
run through rapidocr's own classes (``OrtInferSession``, ``DetPreProcess``, ``DBPostProcess``,
``TextRecognizer``), so the boxes and strings are those of RapidOCR itself. What this module adds:

* the detection **scores** (rapidocr's ``TextDetector`` computes and drops them);
* the detector resize as a setting. The wheel's default enlarges the *short* side to 736 px
  (``limit_type="min"``): slow, and unbounded on large photos, which it reads at full size.
  Capping the long side at 960 without enlarging (``max``) is 4-8x faster on small photos and
  flags far fewer cat faces, but misses small text there: 8 of 60 known text photos got no box
  at all. The default, ``long``, scales the long side to exactly 960 px: bounded cost on
  any photo, and on small ones the recall of the wheel's setting (figures in
  ``docs/autolabel.md``);
* RGB input (the PaddleOCR models were trained on BGR, as OpenCV reads images).

Nothing heavy is imported until :func:`load_ocr` runs; without the extra it raises
:class:`MissingExtraError` naming the ``pip install`` line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textsieve.errors import ConfigError, MissingExtraError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'textsieve[ocr]'"
LIMIT_TYPES = ("max", "min", "long")


@dataclass(frozen=True)
class OcrConfig:
    """Detector and recogniser settings.

    Attributes:
        limit_side: detector input size in pixels (rounded to a multiple of 32).
        limit_type: ``long``: long side scaled to ``limit_side``, up or down (default);
            ``max``: long side capped at ``limit_side``, never enlarged;
            ``min``: short side enlarged to ``limit_side`` (the wheel's default, with 736).
        det_thresh: DB binarisation threshold of the probability map.
        box_thresh: minimum mean probability inside a box for the box to be kept.
        unclip_ratio: how much DB grows the shrunk text kernels back into boxes.
        max_candidates: most contours examined per image.
        rec_batch: crops per recogniser batch.
        threads: onnxruntime intra-op threads per session (1 in each worker of a pool).
    """

    limit_side: int = 960
    limit_type: str = "long"
    det_thresh: float = 0.3
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    max_candidates: int = 1000
    rec_batch: int = 6
    threads: int = 1

    def __post_init__(self) -> None:
        if self.limit_type not in LIMIT_TYPES:
            raise ConfigError(f"limit_type must be 'max', 'min' or 'long', got {self.limit_type!r}")
        if self.limit_side < 32:
            raise ConfigError(f"limit_side must be >= 32, got {self.limit_side}")
        if not 0.0 <= self.box_thresh <= 1.0 or not 0.0 <= self.det_thresh <= 1.0:
            raise ConfigError("det_thresh and box_thresh must be in [0, 1]")
        if self.threads < 1 or self.rec_batch < 1:
            raise ConfigError("threads and rec_batch must be >= 1")


@dataclass(frozen=True)
class Detection:
    """One detected text box.

    Attributes:
        points: four (x, y) corners, clockwise from top-left, integer pixels of the input image.
        score: DB box score (mean text probability inside the box), in [0, 1].
    """

    points: tuple[tuple[int, int], ...]
    score: float


@dataclass(frozen=True)
class Reading:
    """Recogniser output for one box: the string and its mean character confidence."""

    text: str
    conf: float


def model_dir() -> Path:
    """Folder of the ONNX models inside the installed ``rapidocr_onnxruntime`` package."""
    try:
        import rapidocr_onnxruntime
    except ImportError as e:
        raise MissingExtraError(f"the PP-OCR detector needs the 'ocr' extra ({e}): "
                                f"{INSTALL_HINT}") from None
    return Path(rapidocr_onnxruntime.__file__).resolve().parent / "models"


def find_models() -> tuple[Path, Path]:
    """Paths of the PP-OCR detection and recognition models shipped in the wheel.

    Returns:
        (detector, recogniser) ONNX paths; PP-OCRv4 when present, else the newest found.
    """
    folder = model_dir()
    found = []
    for kind in ("det", "rec"):
        cands = sorted(folder.glob(f"*_{kind}_infer.onnx"))
        v4 = [p for p in cands if "PP-OCRv4" in p.name]
        if not cands:
            raise MissingExtraError(f"no *_{kind}_infer.onnx in {folder}: {INSTALL_HINT}")
        found.append((v4 or cands)[-1])
    return found[0], found[1]


def _order_clockwise(pts: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left (as rapidocr's ``TextDetector`` does)."""
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def input_size(cfg: OcrConfig, width: int, height: int) -> tuple[int, int]:
    """Detector input (width, height) for an image of ``width`` x ``height`` under ``cfg``.

    ``max`` shrinks the long side to ``limit_side`` if larger; ``min`` enlarges the short side to
    ``limit_side`` if smaller (the wheel's default); ``long`` scales the long side to exactly
    ``limit_side``, enlarging small images and shrinking large ones. Both sides are then rounded
    to a multiple of 32, as rapidocr does (truncate, then round half to even).
    """
    kind, side = cfg.limit_type, cfg.limit_side
    ratio = 1.0
    if kind == "long" or (kind == "max" and max(width, height) > side):
        ratio = side / max(width, height)
    elif kind == "min" and min(width, height) < side:
        ratio = side / min(width, height)
    # A floor of 32 keeps thumbnails processable (rapidocr itself returns nothing for them).
    tw = max(32, int(round(int(width * ratio) / 32) * 32))
    th = max(32, int(round(int(height * ratio) / 32) * 32))
    return tw, th


class Ocr:
    """PP-OCRv4 detector + recogniser. Build with :func:`load_ocr`; one per process."""

    def __init__(self, cfg: OcrConfig, modules: dict[str, Any]) -> None:
        self.cfg = cfg
        self._cv2 = modules["cv2"]
        det_path, rec_path = find_models()
        session_cfg = {"intra_op_num_threads": cfg.threads, "inter_op_num_threads": 1}
        self._det = modules["OrtInferSession"]({"model_path": str(det_path), **session_cfg})
        self._post = modules["DBPostProcess"](
            thresh=cfg.det_thresh, box_thresh=cfg.box_thresh, max_candidates=cfg.max_candidates,
            unclip_ratio=cfg.unclip_ratio, use_dilation=True, score_mode="fast",
        )
        self._pre = modules["DetPreProcess"](cfg.limit_side, cfg.limit_type)
        self._rec = modules["TextRecognizer"]({
            "model_path": str(rec_path), "rec_img_shape": [3, 48, 320],
            "rec_batch_num": cfg.rec_batch, **session_cfg,
        })
        self.model_paths = (det_path, rec_path)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Text boxes of an (H, W, 3) uint8 RGB image, in reading order (top to bottom)."""
        h, w = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        x = self._cv2.resize(bgr, input_size(self.cfg, w, h))
        x = self._pre.permute(self._pre.normalize(x))[None].astype(np.float32)  # (1, 3, H', W')
        pred = self._det(x)[0]
        boxes, scores = self._post(pred, (h, w))
        out = []
        for box, score in zip(boxes, scores, strict=True):
            pts = _order_clockwise(np.asarray(box, dtype=np.float32))
            pts[:, 0] = np.clip(pts[:, 0], 0, w - 1).astype(int)
            pts[:, 1] = np.clip(pts[:, 1], 0, h - 1).astype(int)
            # Same sliver filter as rapidocr: boxes 3 px or thinner are noise.
            bw, bh = np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[0] - pts[3])
            if int(bw) <= 3 or int(bh) <= 3:
                continue
            out.append(Detection(tuple((int(px), int(py)) for px, py in pts), float(score)))
        out.sort(key=lambda d: (d.points[0][1], d.points[0][0]))
        return out

    def crop(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        """Perspective-rectified BGR crop of one box (tall crops turned, as rapidocr does)."""
        pts = np.asarray(det.points, dtype=np.float32)
        cw = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
        ch = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
        cw, ch = max(cw, 1), max(ch, 1)
        dst = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], dtype=np.float32)
        m = self._cv2.getPerspectiveTransform(pts, dst)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        out = self._cv2.warpPerspective(bgr, m, (cw, ch), borderMode=self._cv2.BORDER_REPLICATE,
                                        flags=self._cv2.INTER_CUBIC)
        if out.shape[0] / out.shape[1] >= 1.5:
            out = np.rot90(out)
        return np.ascontiguousarray(out)

    def recognise(self, rgb: np.ndarray, dets: list[Detection]) -> list[Reading]:
        """Read every box: one :class:`Reading` per detection, in the same order."""
        if not dets:
            return []
        res, _ = self._rec([self.crop(rgb, d) for d in dets])
        return [Reading(str(r[0]), float(r[1])) for r in res]

    def __call__(self, rgb: np.ndarray) -> tuple[list[Detection], list[Reading], float]:
        """Detect and read: (detections, readings, seconds spent in the models)."""
        t0 = time.perf_counter()
        dets = self.detect(rgb)
        reads = self.recognise(rgb, dets)
        return dets, reads, time.perf_counter() - t0


def _import_extra() -> dict[str, Any]:
    """The modules of the ``ocr`` extra, or :class:`MissingExtraError` with the install line."""
    try:
        import cv2
        import onnxruntime  # noqa: F401  (imported first for a clear message when it is absent)
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess, DetPreProcess
        from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
        from rapidocr_onnxruntime.utils import OrtInferSession
    except ImportError as e:
        raise MissingExtraError(
            f"the PP-OCR detector needs the 'ocr' extra ({e}): {INSTALL_HINT}"
        ) from None
    return {
        "cv2": cv2, "DBPostProcess": DBPostProcess, "DetPreProcess": DetPreProcess,
        "TextRecognizer": TextRecognizer, "OrtInferSession": OrtInferSession,
    }


def ensure_extra() -> None:
    """Raise :class:`MissingExtraError` unless the extra imports and its model files exist."""
    _import_extra()
    find_models()


def load_ocr(cfg: OcrConfig | None = None) -> Ocr:
    """Import the ``ocr`` extra and build the detector and recogniser sessions.

    Args:
        cfg: settings; by default the long side is scaled to 960 px.

    Returns:
        A ready :class:`Ocr`.

    Raises:
        MissingExtraError: when onnxruntime, OpenCV or rapidocr-onnxruntime cannot be imported.
    """
    ocr = Ocr(cfg or OcrConfig(), _import_extra())
    logger.debug("PP-OCR models: %s", ", ".join(str(p) for p in ocr.model_paths))
    return ocr


def alnum_count(text: str) -> int:
    """Letters and digits in ``text`` (any script): the length that confirms a reading."""
    return sum(ch.isalnum() for ch in text)
