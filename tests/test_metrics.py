"""Metric functions against values worked out by hand on small prediction sets with ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from textsieve.metrics import (
    average_precision,
    best_f_threshold,
    midranks,
    pr_curve,
    prf_at,
    region_prf,
    roc_auc,
    sample_curve,
    threshold_for_recall,
)
from textsieve.regions import REGION_SLICES

# Ten predictions, sorted by score. Ties: 0.8 (pos + neg) and 0.5 (pos + neg).
#   score  0.9 0.8 0.8 0.7 0.6 0.5 0.5 0.3 0.2 0.1
#   label   1   1   0   1   0   1   0   0   0   1
# Thresholds (distinct scores) -> cumulative TP, FP -> P, R, F (5 positives):
#   0.9: 1,0 -> 1    0.2  1/3       0.5: 4,3 -> 4/7  0.8  2/3
#   0.8: 2,1 -> 2/3  0.4  1/2       0.3: 4,4 -> 1/2  0.8  8/13
#   0.7: 3,1 -> 3/4  0.6  2/3       0.2: 4,5 -> 4/9  0.8  4/7
#   0.6: 3,2 -> 3/5  0.6  3/5       0.1: 5,5 -> 1/2  1.0  2/3
SCORES = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.5, 0.3, 0.2, 0.1])
LABELS = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 1])


def test_prf_at_threshold_counts_ties_as_positive() -> None:
    m = prf_at(LABELS, SCORES, 0.5)  # score >= 0.5 is text: 0.9 .. 0.5 (both 0.5s)
    assert (m.tp, m.fp, m.fn, m.tn) == (4, 3, 1, 2)
    assert m.precision == pytest.approx(4 / 7)
    assert m.recall == pytest.approx(0.8)
    assert m.f1 == pytest.approx(2 / 3)
    assert m.fpr == pytest.approx(3 / 5)
    assert m.accuracy == pytest.approx(6 / 10)
    m = prf_at(LABELS, SCORES, 0.55)
    assert (m.tp, m.fp, m.fn, m.tn) == (3, 2, 2, 3)


def test_prf_at_nothing_predicted() -> None:
    m = prf_at(LABELS, SCORES, 0.95)
    assert (m.tp, m.fp) == (0, 0)
    assert math.isnan(m.precision)
    assert m.recall == 0.0 and m.f1 == 0.0


def test_roc_auc_counts_tied_pairs_as_half() -> None:
    # Pairs won by each positive over the 5 negatives: 0.9 -> 5, 0.8 -> 4 + 1/2 (tie),
    # 0.7 -> 4, 0.5 -> 2 + 1/2 (tie), 0.1 -> 0. Sum 16 of 25 pairs.
    assert roc_auc(LABELS, SCORES) == pytest.approx(16 / 25)


def test_roc_auc_matches_pairwise_count_with_many_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 7, 200) / 6.0  # 7 distinct values: lots of ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, s) == pytest.approx(pairs / (pos.size * neg.size))


def test_roc_auc_extremes_and_one_class() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert math.isnan(roc_auc([0, 0], [0.2, 0.3]))


def test_midranks() -> None:
    assert midranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert midranks(np.array([5.0, 5.0, 5.0])).tolist() == [2.0, 2.0, 2.0]


def test_pr_curve_groups_ties() -> None:
    c = pr_curve(LABELS, SCORES)
    assert c.thresholds.tolist() == [0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.2, 0.1]
    expected_p = [1, 2 / 3, 3 / 4, 3 / 5, 4 / 7, 1 / 2, 4 / 9, 1 / 2]
    expected_r = [0.2, 0.4, 0.6, 0.6, 0.8, 0.8, 0.8, 1.0]
    assert c.precision == pytest.approx(expected_p)
    assert c.recall == pytest.approx(expected_r)
    assert c.f1 == pytest.approx([1 / 3, 1 / 2, 2 / 3, 3 / 5, 2 / 3, 8 / 13, 4 / 7, 2 / 3])


def test_average_precision_by_hand() -> None:
    # Recall steps of 0.2 at 0.9, 0.8, 0.7, 0.5, 0.1 with precision 1, 2/3, 3/4, 4/7, 1/2.
    # (Without grouping the 0.8 tie, the second step would get precision 1 instead of 2/3.)
    expected = 0.2 * (1 + 2 / 3 + 3 / 4 + 4 / 7 + 1 / 2)
    assert average_precision(LABELS, SCORES) == pytest.approx(expected)
    assert average_precision([1, 0, 1], [0.9, 0.1, 0.8]) == pytest.approx(1.0)
    assert math.isnan(average_precision([0, 0], [0.3, 0.4]))


def test_best_f_prefers_the_higher_threshold_on_ties() -> None:
    # F = 2/3 at 0.7, 0.5 and 0.1: the highest, 0.7, wins.
    best = best_f_threshold(LABELS, SCORES)
    assert best is not None
    assert best.threshold == 0.7
    assert (best.precision, best.recall, best.f1) == pytest.approx((3 / 4, 0.6, 2 / 3))


def test_best_f_under_a_recall_constraint() -> None:
    best = best_f_threshold(LABELS, SCORES, min_recall=0.8)  # 0.5, 0.3, 0.2, 0.1 qualify
    assert best is not None and best.threshold == 0.5
    assert best.precision == pytest.approx(4 / 7)
    best = best_f_threshold(LABELS, SCORES, min_recall=0.95)  # only 0.1 reaches recall 1
    assert best is not None and best.threshold == 0.1
    assert best_f_threshold([0, 0, 0], [0.1, 0.2, 0.3]) is None


def test_threshold_for_recall_small_set() -> None:
    assert threshold_for_recall(LABELS, SCORES, 0.6).threshold == 0.7  # type: ignore[union-attr]
    assert threshold_for_recall(LABELS, SCORES, 0.8).threshold == 0.5  # type: ignore[union-attr]
    assert threshold_for_recall(LABELS, SCORES, 0.7).threshold == 0.5  # type: ignore[union-attr]
    pt = threshold_for_recall(LABELS, SCORES, 0.95)
    assert pt is not None and pt.threshold == 0.1 and pt.recall == 1.0
    assert threshold_for_recall([0, 0], [0.1, 0.2], 0.95) is None


def test_thresholds_for_recall_095_and_099_differ_with_20_positives() -> None:
    # 20 positives at 0.05, 0.10, ..., 1.00 and two negatives at 0.07 and 0.5.
    # Recall 0.95 needs 19 positives -> threshold 0.10 (19 TP, 1 FP: the 0.5 negative).
    # Recall 0.99 needs all 20 -> threshold 0.05 (20 TP, 2 FP).
    pos = np.arange(1, 21) / 20
    scores = np.r_[pos, 0.07, 0.5]
    labels = np.r_[np.ones(20), np.zeros(2)]
    p95 = threshold_for_recall(labels, scores, 0.95)
    p99 = threshold_for_recall(labels, scores, 0.99)
    assert p95 is not None and p99 is not None
    assert p95.threshold == pytest.approx(0.10) and p95.recall == pytest.approx(0.95)
    assert p95.precision == pytest.approx(19 / 20)
    assert p99.threshold == pytest.approx(0.05) and p99.recall == 1.0
    assert p99.precision == pytest.approx(20 / 22)


def test_region_prf_per_grid() -> None:
    labels = np.zeros((2, 34), dtype=np.uint8)
    probs = np.zeros((2, 34))
    labels[0, [0, 1]] = 1  # 3x3 cells of image 0
    probs[0, [1, 2]] = 0.9  # one hit, one false alarm
    labels[1, [9, 10, 11]] = 1  # 5x5 cells of image 1
    probs[1, [9, 10]] = 0.6
    probs[1, 12] = 0.4  # below the threshold
    g3 = region_prf(labels, probs, 0.5, REGION_SLICES[3])
    assert (g3.tp, g3.fp, g3.fn, g3.tn) == (1, 1, 1, 15)
    g5 = region_prf(labels, probs, 0.5, REGION_SLICES[5])
    assert (g5.tp, g5.fp, g5.fn, g5.tn) == (2, 0, 1, 47)
    assert g5.precision == 1.0 and g5.recall == pytest.approx(2 / 3)
    every = region_prf(labels, probs, 0.5)
    assert every.tp == 3 and every.tp + every.fp + every.fn + every.tn == 68


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError):
        prf_at([1, 0], [0.5], 0.5)
    with pytest.raises(ValueError):
        roc_auc([1, 0], [0.5, float("nan")])
    with pytest.raises(ValueError):
        region_prf(np.zeros((2, 34)), np.zeros((2, 33)), 0.5)


def test_empty_inputs() -> None:
    m = prf_at([], [], 0.5)
    assert (m.tp, m.fp, m.fn, m.tn) == (0, 0, 0, 0)
    assert pr_curve([], []).thresholds.size == 0
    assert math.isnan(average_precision([], []))
    assert threshold_for_recall([], [], 0.95) is None


def test_sample_curve_keeps_ends() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    s = rng.random(1000)
    c = pr_curve(y, s)
    pts = sample_curve(c, 50)
    assert len(pts) == 50
    assert pts[0]["threshold"] == c.thresholds[0]
    assert pts[-1]["threshold"] == c.thresholds[-1] and pts[-1]["recall"] == 1.0
    assert len(sample_curve(pr_curve(LABELS, SCORES), 200)) == 8
