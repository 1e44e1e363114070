"""``textsieve eval``: accuracy, thresholds and speed of a scorer on a labelled TextDis root.

Data flow: ``scan_root`` -> ``label_sample`` (image and region labels, header only) -> per
image ``decode_image`` -> ``Scorer.score`` -> metrics (:mod:`textsieve.metrics`). Images that
cannot be decoded are counted and listed, never fatal; a malformed GT file stops the run.
Per-image scoring is pluggable (:class:`Scorer`), so other scorers (e.g. a text-detector
baseline) reuse every metric, the per-source tables and the timing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from textsieve.annotations import Sample, scan_root
from textsieve.checkpoint import default_weights, load_model, threshold_of
from textsieve.config import LabelConfig, to_dict
from textsieve.decision import image_probs, region_probs
from textsieve.decode import decode_image
from textsieve.errors import DecodeError, TextsieveError
from textsieve.labels import label_sample
from textsieve.metrics import (
    PRF,
    PRCurve,
    ThresholdPoint,
    average_precision,
    best_f_threshold,
    jsonable,
    pr_curve,
    prf_at,
    region_prf,
    roc_auc,
    sample_curve,
    threshold_for_recall,
)
from textsieve.models import count_params
from textsieve.preprocess import SHORT_SIDE, prepare
from textsieve.regions import REGION_SLICES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how.

    Attributes:
        data: TextDis-layout root (``text/``, ``text_gt/``, ``nontext/``).
        weights: checkpoint; None means the shipped default weights.
        device: ``cpu`` or ``cuda``.
        threads: torch intra-op threads; None keeps torch's current setting.
        threshold: decision threshold; None means the one stored with the weights.
        limit: evaluate only the first N images of each class (for quick looks).
        warmup: untimed forward passes before timing starts.
        recall_targets: recalls for which the highest reaching threshold is reported.
        labels: region-label rule for the region metrics (the paper's by default).
    """

    data: Path
    weights: Path | None = None
    device: str = "cpu"
    threads: int | None = None
    threshold: float | None = None
    limit: int | None = None
    warmup: int = 5
    recall_targets: tuple[float, ...] = (0.95, 0.99)
    labels: LabelConfig = field(default_factory=LabelConfig)


class Scorer(Protocol):
    """What :func:`evaluate` needs from a per-image scorer.

    Attributes:
        name: short display name (``"student"``, ``"teacher/vgg16"``, ``"detector"``).
        params: parameter count, or None when it has no meaning.
        default_threshold: used when the caller gives no threshold.
        info: plain-typed metadata copied into the results (weights path, stage, ...);
            ``info["threads"]``, when present, is the thread count reported in the speed table
            (e.g. onnxruntime's), instead of torch's.
        last_model_s: seconds the model-only part of the last ``score`` call took (on CUDA,
            synchronised). :func:`evaluate` times decode + ``score`` itself (end to end).

    ``score(rgb)`` takes a decoded (H, W, 3) uint8 RGB image, as
    ``decode_image(path, min_short=256)`` gives it, and returns the image text probability and
    the (34,) region probabilities (3x3 row-major, then 5x5), or None instead of the regions
    when the scorer has none (region metrics then skip the image). Resizing is its own business.
    """

    name: str
    params: int | None
    default_threshold: float
    info: dict[str, Any]
    last_model_s: float

    def score(self, rgb: np.ndarray) -> tuple[float, np.ndarray | None]: ...


class ModelScorer:
    """Scores images with a textsieve network (student or teacher) at batch size 1.

    Args:
        model: a network whose forward takes (B, 3, H, W) RGB in [0, 1] and returns
            :class:`~textsieve.models.RegionOutput`.
        meta: the checkpoint dict without weights (as :func:`load_model` returns it).
        device: where the model lives.
    """

    def __init__(self, model: nn.Module, meta: dict[str, Any], device: str = "cpu") -> None:
        self.model = model.eval()
        self.device = torch.device(device)
        arch = str(meta.get("arch", "model"))
        backbone = (meta.get("model_config") or {}).get("backbone")
        self.name = f"{arch}/{backbone}" if backbone else arch
        self.params: int | None = count_params(model)
        self.default_threshold = threshold_of(meta)
        self.info: dict[str, Any] = {
            k: meta.get(k) for k in ("arch", "stage", "epoch", "version", "model_config")
        }
        self.last_model_s = 0.0

    @classmethod
    def from_weights(
        cls, path: Path, device: str = "cpu", threads: int | None = None
    ) -> ModelScorer:
        """Load a checkpoint with :func:`load_model` and wrap it.

        Args:
            path: checkpoint file (student or teacher).
            device: where to run the network.
            threads: for a ``ppocr`` teacher, the onnxruntime threads of its trunk (which
                ``load_model`` attaches with one thread); torch threads are set by the caller.
        """
        model, meta = load_model(path, device)
        scorer = cls(model, meta, device)
        scorer.info["weights"] = str(path)
        if (meta.get("model_config") or {}).get("backbone") == "ppocr" and threads:
            from textsieve.models.ppocr import attach_trunk

            attach_trunk(model, threads=threads)
            scorer.info["onnx_threads"] = threads
        if (meta.get("model_config") or {}).get("backbone") == "ppocr":
            scorer.info["params_note"] = "head only: the frozen onnx trunk is not counted"
        return scorer

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def score(self, rgb: np.ndarray) -> tuple[float, np.ndarray | None]:
        """Image probability and (34,) region probabilities of one decoded RGB image."""
        x = prepare(rgb).unsqueeze(0).to(self.device)  # (1, 3, H, W)
        self._sync()  # the copy to the device is not model time
        t0 = time.perf_counter()
        logits = self.model(x).logits  # (1, 34)
        probs = region_probs(logits)
        img = image_probs(logits)
        self._sync()
        self.last_model_s = time.perf_counter() - t0
        return float(img[0]), probs[0].float().cpu().numpy()


@dataclass(frozen=True)
class ItemResult:
    """The score of one image and its labels."""

    path: str
    source: str
    is_text: bool
    prob: float
    region_probs: np.ndarray | None  # (34,)
    region_labels: np.ndarray | None  # (34,), None for text images without GT


@dataclass(frozen=True)
class SpeedStats:
    """Timing after warm-up, batch size 1, on ``device`` with ``threads`` torch threads."""

    device: str
    threads: int
    images: int
    model_ms: float  # model only, mean per image
    decode_ms: float  # decode_image, mean per image
    end_to_end_ips: float  # images/s: decode + preprocess + model + post-processing

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class EvalResult:
    """Everything ``evaluate`` measured; :meth:`to_dict` is the ``metrics.json`` content."""

    config: dict[str, Any]
    scorer: dict[str, Any]
    threshold: float
    threshold_from: str
    overall: PRF
    auc: float
    ap: float
    best_f: ThresholdPoint | None
    at_recall: dict[str, ThresholdPoint | None]
    regions: dict[int, PRF]
    region_images: int
    per_source: dict[str, dict[str, Any]]
    speed: SpeedStats
    curve: PRCurve
    items: list[ItemResult]
    skipped: list[dict[str, str]]

    @property
    def counts(self) -> dict[str, int]:
        n_text = sum(it.is_text for it in self.items)
        return {"images": len(self.items), "text": n_text, "nontext": len(self.items) - n_text,
                "skipped": len(self.skipped), "region_images": self.region_images}

    def to_dict(self, items: bool = False, curve_points: int = 200) -> dict[str, Any]:
        """Plain JSON-ready dict (nan -> None); per-image results only when ``items``."""
        out: dict[str, Any] = {
            "config": self.config,
            "scorer": self.scorer,
            "threshold": self.threshold,
            "threshold_from": self.threshold_from,
            "counts": self.counts,
            "image": {**self.overall.to_dict(), "roc_auc": self.auc, "average_precision": self.ap},
            "best_f": self.best_f.to_dict() if self.best_f else None,
            "at_recall": {k: v.to_dict() if v else None for k, v in self.at_recall.items()},
            "regions": {f"{g}x{g}": prf.to_dict() for g, prf in self.regions.items()},
            "per_source": self.per_source,
            "speed": self.speed.to_dict(),
            "pr_curve": sample_curve(self.curve, curve_points),
            "skipped": self.skipped,
        }
        if items:
            out["items"] = [_item_dict(it) for it in self.items]
        return jsonable(out)


def _item_dict(it: ItemResult) -> dict[str, Any]:
    def r4(a: np.ndarray | None) -> list[float] | None:
        return None if a is None else [round(float(v), 4) for v in a]

    return {"path": it.path, "source": it.source, "is_text": it.is_text,
            "prob": round(it.prob, 6), "region_probs": r4(it.region_probs),
            "region_labels": None if it.region_labels is None else it.region_labels.tolist()}


def select_samples(samples: list[Sample], limit: int | None) -> list[Sample]:
    """The first ``limit`` text and the first ``limit`` non-text samples (all when None)."""
    if limit is None:
        return samples
    text = [s for s in samples if s.is_text][:limit]
    nontext = [s for s in samples if not s.is_text][:limit]
    return text + nontext


def _per_source(items: list[ItemResult], threshold: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for src in sorted({it.source for it in items}):
        sub = [it for it in items if it.source == src]
        y = np.array([it.is_text for it in sub])
        s = np.array([it.prob for it in sub])
        prf = prf_at(y, s, threshold)
        out[src] = {"images": len(sub), "text": int(y.sum()), "nontext": int((~y).sum()),
                    **prf.to_dict(), "roc_auc": roc_auc(y, s)}
    return out


def evaluate(
    cfg: EvalConfig,
    on_progress: Callable[[int], None] | None = None,
    scorer: Scorer | None = None,
) -> EvalResult:
    """Score every image of ``cfg.data`` and compute image, region, per-source and speed metrics.

    Args:
        cfg: what to evaluate.
        on_progress: called with 1 after each image (decoded or skipped).
        scorer: a custom scorer (see the module docstring); by default the network in
            ``cfg.weights`` (or the shipped weights) wrapped in a :class:`ModelScorer`.

    Returns:
        An :class:`EvalResult`.

    Raises:
        TextsieveError: bad root, no usable images, missing/bad weights, malformed GT,
            unavailable device, threshold outside [0, 1].
    """
    if cfg.device not in ("cpu", "cuda"):
        raise TextsieveError(f"unknown device {cfg.device!r} (use 'cpu' or 'cuda')")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise TextsieveError("device 'cuda' requested but torch sees no CUDA device")
    if cfg.threshold is not None and not 0.0 <= cfg.threshold <= 1.0:
        raise TextsieveError(f"threshold must be in [0, 1], got {cfg.threshold}")
    if cfg.limit is not None and cfg.limit < 1:
        raise TextsieveError(f"limit must be >= 1, got {cfg.limit}")
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise TextsieveError(f"threads must be >= 1, got {cfg.threads}")
        torch.set_num_threads(cfg.threads)

    samples = select_samples(scan_root(cfg.data), cfg.limit)
    if not samples:
        raise TextsieveError(f"{cfg.data}: no images under text/ or nontext/")
    if scorer is None:
        scorer = ModelScorer.from_weights(cfg.weights or default_weights(), cfg.device,
                                          cfg.threads)
    threshold = cfg.threshold if cfg.threshold is not None else scorer.default_threshold
    threshold_from = "option" if cfg.threshold is not None else "weights"

    # Labels first (headers only): a malformed GT file fails before the slow part.
    skipped: list[dict[str, str]] = []
    labelled: list[tuple[Sample, np.ndarray | None]] = []
    for s in samples:
        try:
            lab = label_sample(s, cfg.labels)
        except DecodeError as e:
            skipped.append({"path": str(s.path), "status": e.kind, "detail": str(e)})
            continue
        regions = None if lab.regions is None else np.asarray(lab.regions, dtype=np.uint8)
        labelled.append((s, regions))
    if len(skipped) == len(samples):
        raise TextsieveError(f"{cfg.data}: none of the {len(samples)} images could be read")
    if on_progress and skipped:
        on_progress(len(skipped))

    items, model_s, decode_s, total_s = _score_all(labelled, scorer, cfg.warmup, skipped,
                                                   on_progress)
    if not items:
        raise TextsieveError(f"{cfg.data}: none of the {len(samples)} images could be decoded")
    for sk in skipped:
        log.warning("skipped %s: %s (%s)", sk["path"], sk["status"], sk["detail"])

    y = np.array([it.is_text for it in items])
    s = np.array([it.prob for it in items])
    with_regions = [
        it for it in items if it.region_labels is not None and it.region_probs is not None
    ]
    regions: dict[int, PRF] = {}
    if with_regions:
        rl = np.stack([it.region_labels for it in with_regions])  # type: ignore[misc]
        rp = np.stack([it.region_probs for it in with_regions])  # type: ignore[misc]
        regions = {g: region_prf(rl, rp, threshold, sl) for g, sl in REGION_SLICES.items()}
    n = len(items)
    speed = SpeedStats(
        device=cfg.device, threads=int(scorer.info.get("threads") or torch.get_num_threads()),
        images=n,
        model_ms=1000.0 * model_s / n, decode_ms=1000.0 * decode_s / n,
        end_to_end_ips=n / total_s if total_s > 0 else math.nan,
    )
    config = {**to_dict(cfg), "weights": scorer.info.get("weights"), "min_short": SHORT_SIDE}
    return EvalResult(
        config=config,
        scorer={"name": scorer.name, "params": scorer.params, **scorer.info},
        threshold=float(threshold),
        threshold_from=threshold_from,
        overall=prf_at(y, s, threshold),
        auc=roc_auc(y, s),
        ap=average_precision(y, s),
        best_f=best_f_threshold(y, s),
        at_recall={f"{t:g}": threshold_for_recall(y, s, t) for t in cfg.recall_targets},
        regions=regions,
        region_images=len(with_regions),
        per_source=_per_source(items, threshold),
        speed=speed,
        curve=pr_curve(y, s),
        items=items,
        skipped=skipped,
    )


def _score_all(
    labelled: list[tuple[Sample, np.ndarray | None]],
    scorer: Scorer,
    warmup: int,
    skipped: list[dict[str, str]],
    on_progress: Callable[[int], None] | None,
) -> tuple[list[ItemResult], float, float, float]:
    """Decode and score each image; returns items and summed model, decode and total seconds."""
    items: list[ItemResult] = []
    model_s = decode_s = total_s = 0.0
    warmed = warmup <= 0
    for sample, region_labels in labelled:
        t0 = time.perf_counter()
        try:
            rgb = decode_image(sample.path, min_short=SHORT_SIDE)
        except DecodeError as e:
            skipped.append({"path": str(sample.path), "status": e.kind, "detail": str(e)})
            if on_progress:
                on_progress(1)
            continue
        if not warmed:
            # Warm-up on a real image (allocator, kernels, caches), outside the timed span.
            for _ in range(warmup):
                scorer.score(rgb)
            warmed = True
            t0 = time.perf_counter()
            rgb = decode_image(sample.path, min_short=SHORT_SIDE)
        t1 = time.perf_counter()
        prob, probs = scorer.score(rgb)
        t2 = time.perf_counter()
        decode_s += t1 - t0
        total_s += t2 - t0
        model_s += scorer.last_model_s
        items.append(ItemResult(str(sample.path), sample.source, sample.is_text, prob,
                                probs, region_labels))
        if on_progress:
            on_progress(1)
    return items, model_s, decode_s, total_s
