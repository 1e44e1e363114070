"""Detector baseline for ``textsieve eval --baseline detector``: what running PP-OCRv4 costs.

Each image is scored by its best detection score (0 when the detector finds nothing), so the same
metrics, per-source tables and timings as for the student show, side by side, what the filter
saves compared with running the text detector on every image. Only the detector runs (no
recogniser); the model time covers the ONNX session and DB post-processing.

Region probabilities: each of the 34 regions gets the highest score among the boxes that cover
at least 1% of it (the paper's label rule applied to the detections), so region metrics compare too.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from textsieve.annotations import Polygon
from textsieve.errors import TextsieveError
from textsieve.ocr import Detection, OcrConfig, load_ocr
from textsieve.regions import NUM_REGIONS, region_coverage

# DB keeps a box when its mean probability reaches box_thresh. The scorer lowers it to the
# binarisation threshold so that scores below the detector's usual 0.5 still rank images; the
# default decision threshold, 0.5, then means exactly "the detector would report a box".
BASELINE_OCR = OcrConfig(box_thresh=0.3)
DEFAULT_THRESHOLD = 0.5


def onnx_params(path: Any) -> int | None:
    """Number of weights stored in an ONNX model (None when ``onnx`` is not installed)."""
    try:
        import onnx
    except ImportError:
        return None
    graph = onnx.load(str(path), load_external_data=False).graph
    # Paddle's exporter stores weights as Constant nodes rather than initializers; count both.
    tensors = list(graph.initializer) + [
        a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"
    ]
    return int(sum(int(np.prod(t.dims)) for t in tensors))


def detection_region_probs(
    dets: list[Detection], width: int, height: int, min_cover: float = 0.01
) -> np.ndarray:
    """(34,) region probabilities: max score of the boxes covering >= ``min_cover`` of a region.

    Args:
        dets: detections in the pixel coordinates of a ``width`` x ``height`` image.
        width: image width.
        height: image height.
        min_cover: share of a region a box must cover to count there.
    """
    probs = np.zeros(NUM_REGIONS, dtype=np.float32)
    for d in dets:
        cover = region_coverage([Polygon(tuple(map(tuple, d.points)))], width, height)
        hit = cover >= min_cover - 1e-12
        probs[hit] = np.maximum(probs[hit], d.score)
    return probs


class DetectorScorer:
    """PP-OCRv4 detector as an ``evaluate`` scorer (see :mod:`textsieve.evaluate`).

    Args:
        cfg: detector settings (default: long side scaled to 960 px, box threshold 0.3).
        threads: onnxruntime intra-op threads.
    """

    name = "detector"
    default_threshold = DEFAULT_THRESHOLD

    def __init__(self, cfg: OcrConfig = BASELINE_OCR, threads: int = 1) -> None:
        from dataclasses import replace

        self.cfg = replace(cfg, threads=threads)
        self._ocr = load_ocr(self.cfg)
        det_path = self._ocr.model_paths[0]
        self.params: int | None = onnx_params(det_path)
        self.info: dict[str, Any] = {
            "weights": str(det_path), "limit_side": self.cfg.limit_side,
            "limit_type": self.cfg.limit_type, "box_thresh": self.cfg.box_thresh,
            "threads": threads,
        }
        self.last_model_s = 0.0

    def score(self, rgb: np.ndarray) -> tuple[float, np.ndarray | None]:
        """Best detection score of an (H, W, 3) RGB image and its (34,) region probabilities."""
        t0 = time.perf_counter()
        dets = self._ocr.detect(rgb)
        self.last_model_s = time.perf_counter() - t0
        best = max((d.score for d in dets), default=0.0)
        return float(best), detection_region_probs(dets, rgb.shape[1], rgb.shape[0])


BASELINES = ("detector",)


def make_baseline(name: str, threads: int | None = None) -> DetectorScorer:
    """The baseline scorer called ``name`` (``textsieve eval --baseline NAME``).

    Args:
        name: ``detector``.
        threads: onnxruntime threads (1 when None).

    Raises:
        TextsieveError: unknown name. MissingExtraError: the ``ocr`` extra is missing.
    """
    if name != "detector":
        raise TextsieveError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    return DetectorScorer(threads=threads or 1)
