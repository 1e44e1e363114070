"""``textsieve calibrate``: choose decision thresholds on labelled data, store them in the weights.

The default threshold is the one with the best image F among those that keep recall >= a floor
(0.95: a filter that drops text images loses them for good, a false positive only costs one OCR
run). Presets for fixed recalls (0.95, 0.99) are stored too, so ``filter --recall 0.99`` works
without knowing any number. The output is a copy of the input checkpoint without training state
(optimizer), with ``thresholds`` and the calibration metrics added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from textsieve.checkpoint import read_checkpoint, recall_key, write_checkpoint
from textsieve.errors import TextsieveError
from textsieve.evaluate import EvalConfig, EvalResult, evaluate
from textsieve.metrics import best_f_threshold, prf_at, threshold_for_recall

log = logging.getLogger(__name__)

# Entries of a training checkpoint that a shipped weights file does not need.
TRAINING_STATE = ("optimizer", "disc_optimizer", "discriminator", "scheduler", "rng")


@dataclass(frozen=True)
class CalibrateConfig:
    """Calibration settings.

    Attributes:
        weights: checkpoint to calibrate.
        data: labelled TextDis-layout root (held out from training: the dev split).
        out: where the calibrated copy is written (may equal ``weights``).
        min_recall: recall floor of the default threshold.
        presets: recalls for which a named threshold preset is stored.
        threads: torch threads for scoring.
    """

    weights: Path
    data: Path
    out: Path
    min_recall: float = 0.95
    presets: tuple[float, ...] = (0.95, 0.99)
    threads: int | None = None


@dataclass(frozen=True)
class Calibration:
    """What calibration chose and measured."""

    thresholds: dict[str, Any]
    metrics: dict[str, Any]
    result: EvalResult


def choose_thresholds(
    labels: np.ndarray, scores: np.ndarray, min_recall: float, presets: tuple[float, ...]
) -> dict[str, float]:
    """Default threshold (best F with recall >= ``min_recall``) and one preset per recall.

    Args:
        labels: (N,) image labels {0, 1}.
        scores: (N,) image probabilities.
        min_recall: recall floor of the default.
        presets: recalls to store presets for.

    Raises:
        TextsieveError: when the data hold no text image.
    """
    best = best_f_threshold(labels, scores, min_recall=min_recall)
    if best is None:
        raise TextsieveError("cannot calibrate: the data hold no text image")
    out = {"default": best.threshold}
    for r in presets:
        point = threshold_for_recall(labels, scores, r)
        if point is not None:
            out[recall_key(r)] = point.threshold
    return out


def calibrate(
    cfg: CalibrateConfig, on_progress: Callable[[int], None] | None = None
) -> Calibration:
    """Score ``cfg.data`` with ``cfg.weights``, choose thresholds, write the calibrated copy."""
    ckpt = read_checkpoint(cfg.weights)
    result = evaluate(
        EvalConfig(data=cfg.data, weights=cfg.weights, threads=cfg.threads), on_progress
    )
    labels = np.array([it.is_text for it in result.items], dtype=np.int64)
    scores = np.array([it.prob for it in result.items], dtype=np.float64)
    chosen = choose_thresholds(labels, scores, cfg.min_recall, cfg.presets)
    at = {name: prf_at(labels, scores, th).to_dict() for name, th in chosen.items()}
    thresholds: dict[str, Any] = dict(chosen)
    metrics = {
        "calibration_data": str(cfg.data),
        "rule": f"default = best image F with recall >= {cfg.min_recall:g}",
        "images": int(labels.size),
        "roc_auc": result.auc,
        "average_precision": result.ap,
        "at_threshold": at,
        "per_source": result.per_source,
        "regions": {f"{g}x{g}": prf.to_dict() for g, prf in result.regions.items()},
    }
    out = {k: v for k, v in ckpt.items() if k not in TRAINING_STATE}
    out["thresholds"] = thresholds
    out["calibration"] = _plain(metrics)
    write_checkpoint(cfg.out, out)
    log.info("calibrated thresholds %s written to %s", chosen, cfg.out)
    return Calibration(thresholds, metrics, result)


def _plain(obj: Any) -> Any:
    """Only plain types in checkpoints (``weights_only=True`` loading); NaN stays a float."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj
