"""Region BCE: golden values computed by hand, masking, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from textsieve.losses.region import RegionBCELoss, region_bce


def test_golden_mixed_batch() -> None:
    # Picture A: all 34 region labels known, region 0 positive, every logit 0.
    #   BCE(0, y) = ln 2 for either label; the positive term is weighted by pos_weight = 2:
    #   (2 ln2 + 33 ln2) / 34 = 35 ln2 / 34.
    # Picture B: text without region labels; max logit 2 -> BCE(2, 1) = ln(1 + e^-2),
    #   weighted by image_weight = 0.5.
    logits = torch.zeros(2, 34)
    logits[1] = -1.0
    logits[1, 5] = 2.0
    labels = torch.zeros(2, 34)
    labels[0, 0] = 1.0
    mask = torch.zeros(2, 34, dtype=torch.bool)
    mask[0] = True
    is_text = torch.tensor([1.0, 1.0])
    loss = region_bce(logits, labels, mask, is_text, pos_weight=2.0, image_weight=0.5)
    expected = (35 * math.log(2) / 34 + 0.5 * math.log(1 + math.exp(-2))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_golden_nontext_and_partial_mask() -> None:
    # Picture A: non-text, all known, logits 1 -> BCE(1, 0) = ln(1 + e) per region.
    # Picture B: only regions 0..3 known, labels 1, 1, 0, 0 with logits 0, 3, 0, -3:
    #   (ln2 + ln(1 + e^-3) + ln2 + ln(1 + e^-3)) / 4. Unknown regions (logit 50) are ignored.
    logits = torch.ones(2, 34)
    logits[1] = 50.0
    logits[1, :4] = torch.tensor([0.0, 3.0, 0.0, -3.0])
    labels = torch.zeros(2, 34)
    labels[1, :2] = 1.0
    labels[1, 10] = 1.0  # masked: must not count
    mask = torch.ones(2, 34, dtype=torch.bool)
    mask[1, 4:] = False
    loss = region_bce(logits, labels, mask, torch.tensor([0.0, 1.0]))
    a = math.log(1 + math.e)
    b = (2 * math.log(2) + 2 * math.log(1 + math.exp(-3))) / 4
    assert loss.item() == pytest.approx((a + b) / 2, rel=1e-6)


def test_module_matches_function_and_gradients_flow() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 34, requires_grad=True)
    labels = (torch.rand(3, 34) > 0.7).float()
    mask = torch.ones(3, 34, dtype=torch.bool)
    mask[2] = False
    is_text = torch.tensor([1.0, 0.0, 1.0])
    loss = RegionBCELoss(pos_weight=3.0, image_weight=2.0)(logits, labels, mask, is_text)
    assert loss.item() == pytest.approx(region_bce(logits, labels, mask, is_text, 3.0, 2.0).item())
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # Picture 2 has no region labels: only its max logit receives a gradient.
    assert (logits.grad[2] != 0).sum() == 1


def test_perfect_predictions_give_near_zero_loss() -> None:
    labels = torch.zeros(1, 34)
    labels[0, 3] = 1.0
    logits = (labels * 2 - 1) * 30
    loss = region_bce(logits, labels, torch.ones(1, 34, dtype=torch.bool), torch.ones(1))
    assert loss.item() < 1e-9


def test_golden_all_image_term() -> None:
    # One non-text picture, all regions known, logits 0 except region 7 = 1:
    #   region term = (33 ln2 + ln(1 + e)) / 34; image term = BCE(max = 1, 0) = ln(1 + e),
    #   added with all_image_weight = 0.5 for every picture.
    logits = torch.zeros(1, 34)
    logits[0, 7] = 1.0
    loss = region_bce(logits, torch.zeros(1, 34), torch.ones(1, 34, dtype=torch.bool),
                      torch.zeros(1), all_image_weight=0.5)
    region = (33 * math.log(2) + math.log(1 + math.e)) / 34
    assert loss.item() == pytest.approx(region + 0.5 * math.log(1 + math.e), rel=1e-6)
    plain = region_bce(logits, torch.zeros(1, 34), torch.ones(1, 34, dtype=torch.bool),
                       torch.zeros(1))
    assert plain.item() == pytest.approx(region, rel=1e-6)
