"""Binary-classification metrics for the text class, in plain numpy.

Conventions used everywhere here:

- ``labels`` are {0, 1} (1 = text), ``scores`` are probabilities; a sample is predicted text
  when ``score >= threshold`` (the same rule as :func:`textsieve.decision.is_text`).
- Candidate thresholds are the distinct scores themselves, so a threshold reported here
  reproduces its precision/recall exactly on the data it was chosen on.
- Undefined ratios (no predicted positives, no positives, one class only) are ``nan``; callers
  that write JSON turn them into ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PRF:
    """Confusion counts and the ratios derived from them at one threshold."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        if math.isnan(p) or math.isnan(r) or p + r == 0:
            return 0.0 if (self.tp + self.fn) > 0 else math.nan
        return 2 * p * r / (p + r)

    @property
    def fpr(self) -> float:
        """False-positive rate: share of negatives predicted text."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.tp + self.fp + self.fn + self.tn)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "threshold": self.threshold, "tp": self.tp, "fp": self.fp, "fn": self.fn,
            "tn": self.tn, "precision": self.precision, "recall": self.recall, "f1": self.f1,
            "fpr": self.fpr, "accuracy": self.accuracy,
        }


@dataclass(frozen=True)
class PRCurve:
    """Precision, recall and F at every distinct score, thresholds in descending order."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray


def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else math.nan


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y, s


def prf_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> PRF:
    """Confusion counts, precision, recall and F1 of the positive class at ``threshold``.

    Args:
        labels: (N,) {0, 1} ground truth.
        scores: (N,) scores; ``score >= threshold`` is a positive prediction.
        threshold: decision threshold.

    Returns:
        A :class:`PRF`.
    """
    y, s = _check(labels, scores)
    pred = s >= threshold
    return PRF(
        threshold=float(threshold),
        tp=int((pred & y).sum()), fp=int((pred & ~y).sum()),
        fn=int((~pred & y).sum()), tn=int((~pred & ~y).sum()),
    )


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` in ascending order; tied values share their mean rank."""
    v = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    # Start index of each run of equal values, and the run each sorted element belongs to.
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], v.size]
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    run_of = np.repeat(np.arange(starts.size), ends - starts)
    ranks = np.empty(v.size)
    ranks[order] = run_rank[run_of]
    return ranks


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half).

    Args:
        labels: (N,) {0, 1} ground truth.
        scores: (N,) scores.

    Returns:
        AUC in [0, 1], or nan when only one class is present.
    """
    y, s = _check(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = midranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> PRCurve:
    """Precision/recall/F at each distinct score used as threshold (descending).

    Tied scores form one point: they cannot be separated by any threshold.

    Args:
        labels: (N,) {0, 1} ground truth.
        scores: (N,) scores.

    Returns:
        A :class:`PRCurve`; empty arrays when there are no samples.
    """
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # Last index of each group of equal scores: cumulative counts there cover the whole tie.
    if s.size:
        last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    else:
        last = np.array([], dtype=np.int64)
    tp = np.cumsum(y_sorted)[last].astype(np.float64)
    fp = (last + 1) - tp
    n_pos = float(y.sum())
    precision = tp / (tp + fp)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / n_pos if n_pos > 0 else np.full_like(tp, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return PRCurve(s_sorted[last], precision, recall, f1)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: sum over thresholds of (R_k - R_{k-1}) * P_k (no interpolation).

    This is the step-wise area under the PR curve (the definition scikit-learn uses), with tied
    scores taken as one step.

    Args:
        labels: (N,) {0, 1} ground truth.
        scores: (N,) scores.

    Returns:
        AP in [0, 1], or nan when there is no positive.
    """
    curve = pr_curve(labels, scores)
    if curve.recall.size == 0 or np.isnan(curve.recall).any():
        return math.nan
    steps = np.diff(np.r_[0.0, curve.recall])
    return float((steps * curve.precision).sum())


@dataclass(frozen=True)
class ThresholdPoint:
    """A chosen threshold and what it gives on the data it was chosen on."""

    threshold: float
    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold, "precision": self.precision, "recall": self.recall,
                "f1": self.f1}


def _point(curve: PRCurve, i: int) -> ThresholdPoint:
    return ThresholdPoint(float(curve.thresholds[i]), float(curve.precision[i]),
                          float(curve.recall[i]), float(curve.f1[i]))


def best_f_threshold(
    labels: np.ndarray, scores: np.ndarray, min_recall: float | None = None
) -> ThresholdPoint | None:
    """The threshold with the highest F1, optionally among those with recall >= ``min_recall``.

    On equal F1 the higher threshold wins (fewer images passed on for the same quality).

    Args:
        labels: (N,) {0, 1} ground truth.
        scores: (N,) scores.
        min_recall: only thresholds reaching this recall are considered.

    Returns:
        The best point, or None when there is no positive or no threshold meets the constraint.
    """
    curve = pr_curve(labels, scores)
    ok = ~np.isnan(curve.recall)
    if min_recall is not None:
        ok &= curve.recall >= min_recall - 1e-12
    if not ok.any():
        return None
    f1 = np.where(ok, curve.f1, -1.0)
    # Equal F values computed along different paths differ in the last bits; count those as
    # ties. Thresholds descend, so the first index within tolerance is the highest threshold.
    return _point(curve, int(np.argmax(f1 >= f1.max() - 1e-12)))


def threshold_for_recall(
    labels: np.ndarray, scores: np.ndarray, target: float
) -> ThresholdPoint | None:
    """The highest threshold whose recall reaches ``target`` (the most selective one that does).

    Args:
        labels: (N,) {0, 1} ground truth.
        scores: (N,) scores.
        target: recall to reach, in (0, 1].

    Returns:
        The point, or None when there is no positive.
    """
    curve = pr_curve(labels, scores)
    if curve.recall.size == 0 or np.isnan(curve.recall).any():
        return None
    # Recall grows as the threshold falls; the first index that reaches the target is it.
    # The epsilon keeps e.g. 19/20 >= 0.95 true despite float rounding.
    i = int(np.argmax(curve.recall >= target - 1e-12))
    return _point(curve, i)


def region_prf(
    region_labels: np.ndarray, region_probs: np.ndarray, threshold: float,
    cells: slice | None = None,
) -> PRF:
    """Micro-averaged P/R/F over region cells (every cell of every image is one sample).

    Args:
        region_labels: (N, 34) {0, 1} region labels of images with ground truth.
        region_probs: (N, 34) region probabilities of the same images.
        threshold: decision threshold.
        cells: the columns to use, e.g. ``REGION_SLICES[3]`` for the 3x3 grid; all when None.

    Returns:
        A :class:`PRF` over the selected cells.
    """
    y = np.asarray(region_labels)
    p = np.asarray(region_probs, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"region labels {y.shape} and probs {p.shape} differ in shape")
    if cells is not None:
        y, p = y[:, cells], p[:, cells]
    return prf_at(y.ravel(), p.ravel(), threshold)


def sample_curve(curve: PRCurve, max_points: int = 200) -> list[dict[str, float]]:
    """At most ``max_points`` points of ``curve`` (evenly spaced, ends kept) for JSON/plots."""
    n = curve.thresholds.size
    idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int)) if n else []
    return [
        {"threshold": float(curve.thresholds[i]), "precision": float(curve.precision[i]),
         "recall": float(curve.recall[i]), "f1": float(curve.f1[i])}
        for i in idx
    ]


def jsonable(obj: Any) -> Any:
    """Recursively turn nan/inf into None and numpy scalars into Python ones."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj
