"""Region labels against values computed by hand on a 300x300 image.

3x3 cells are 100x100 px (area 10000); 5x5 cells are 60x60 px (area 3600). Region index of 5x5
cell (row r, col c) is 9 + 5r + c.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from textsieve.annotations import Polygon, parse_gt_line
from textsieve.config import LabelConfig
from textsieve.regions import (
    NUM_REGIONS,
    REGION_SLICES,
    cell_edges,
    exif_transform_points,
    image_label,
    labels_from_polygons,
    rasterize,
    region_boxes,
    region_coverage,
)

W = H = 300


def box(x0: float, y0: float, x1: float, y1: float, text: str = "") -> Polygon:
    return Polygon(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), illegible=text == "###", text=text)


def positives(labels: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(labels)]


def test_grid_constants() -> None:
    assert NUM_REGIONS == 34
    assert REGION_SLICES[3] == slice(0, 9) and REGION_SLICES[5] == slice(9, 34)
    assert cell_edges(100, 3).tolist() == [0, 33, 67, 100]
    boxes = region_boxes(300, 300)
    assert boxes[0] == (0, 0, 100, 100) and boxes[8] == (200, 200, 300, 300)
    assert (
        boxes[9] == (0, 0, 60, 60)
        and boxes[10] == (60, 0, 120, 60)
        and boxes[33] == (240, 240, 300, 300)
    )


def test_axis_aligned_box_covers_exactly_its_area() -> None:
    assert rasterize(box(10, 20, 30, 25).points, 100, 100).sum() == 20 * 5
    # Fractional corners: pixel centres decide (x 10.4..12.6 holds centres 10.5, 11.5, 12.5).
    assert rasterize(box(10.4, 0, 12.6, 1).points, 100, 100).sum() == 3


def test_box_straddling_two_cells() -> None:
    # x 90..110 spans 3x3 cells 0 and 1 (200 px = 2% each); 5x5 cell (0,1) gets all 400 px.
    labels = labels_from_polygons([box(90, 10, 110, 30)], W, H)
    assert positives(labels) == [0, 1, 10]
    cover = region_coverage([box(90, 10, 110, 30)], W, H)
    assert cover[0] == pytest.approx(0.02) and cover[1] == pytest.approx(0.02)
    assert cover[10] == pytest.approx(400 / 3600)


def test_box_exactly_one_percent() -> None:
    # 6x6 = 36 px = exactly 1% of a 5x5 cell -> positive; 0.36% of the 3x3 cell -> negative.
    assert positives(labels_from_polygons([box(0, 0, 6, 6)], W, H)) == [9]
    # 5x7 = 35 px < 36 -> negative everywhere.
    assert positives(labels_from_polygons([box(0, 0, 5, 7)], W, H)) == []
    # 10x10 = 1% of a 3x3 cell -> positive there (and 2.8% of the 5x5 cell).
    assert positives(labels_from_polygons([box(0, 0, 10, 10)], W, H)) == [0, 9]


def test_rotated_quad_diamond() -> None:
    # Diamond |x-150| + |y-150| <= 50: area 5000, entirely inside the centre 3x3 cell.
    diamond = Polygon(((150, 100), (200, 150), (150, 200), (100, 150)))
    cover = region_coverage([diamond], W, H)
    assert cover[4] == pytest.approx(0.5, abs=0.002)
    # 5x5: the four tips (triangles of 400 px = 11%) and the centre cell; corner cells stay empty.
    assert cover[9 + 5 * 1 + 2] == pytest.approx(400 / 3600, abs=0.003)
    assert cover[9 + 5 * 1 + 1] == 0.0
    assert positives(labels_from_polygons([diamond], W, H)) == [4, 16, 20, 21, 22, 26]


def test_boxes_outside_image_are_clipped() -> None:
    assert positives(labels_from_polygons([box(-50, -50, -10, -10)], W, H)) == []
    assert positives(labels_from_polygons([box(400, 0, 500, 300)], W, H)) == []
    # Partly outside: only the 20x20 inside counts (4% of cell 0, 11% of 5x5 cell 0).
    cover = region_coverage([box(-10, -10, 20, 20)], W, H)
    assert cover[0] == pytest.approx(0.04) and cover[9] == pytest.approx(400 / 3600)


def test_union_not_sum_of_overlapping_boxes() -> None:
    # Two identical 5x5 boxes: the union is 25 px (< 36), a sum of areas would give 50 px.
    two = [box(0, 0, 5, 5), box(0, 0, 5, 5)]
    assert region_coverage(two, W, H)[9] == pytest.approx(25 / 3600)
    assert positives(labels_from_polygons(two, W, H)) == []


def test_illegible_box_counts_as_text() -> None:
    poly = parse_gt_line("90,10,110,10,110,30,90,30,###", "gt:1")
    assert poly is not None and poly.illegible
    assert positives(labels_from_polygons([poly], W, H)) == [0, 1, 10]


def test_msp_rule_needs_tall_boxes() -> None:
    msp = LabelConfig(rule="msp")
    # Wide, short box: 40% coverage of cell 0 but 40 px < half of 100 px -> negative under msp.
    wide = [box(0, 0, 100, 40)]
    assert 0 in positives(labels_from_polygons(wide, W, H))
    assert 0 not in positives(labels_from_polygons(wide, W, H, msp))
    # Tall box x 10..30, y 10..70: 5x5 cell (0,0) has 1000 px (27.8%), 50 px tall > 30 -> positive;
    # cell (1,0) has 200 px (5.6% > 5%) but only 10 px tall -> negative under msp only.
    tall = [box(10, 10, 30, 70)]
    assert positives(labels_from_polygons(tall, W, H)) == [0, 9, 14]
    assert positives(labels_from_polygons(tall, W, H, msp)) == [0, 9]


def test_image_label_is_or_of_regions() -> None:
    assert image_label(np.zeros(34)) is False
    one = np.zeros(34)
    one[20] = 1
    assert image_label(one) is True


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_transform_matches_pillow(orientation: int) -> None:
    w, h = 40, 30
    pts = ((5.0, 3.0), (15.0, 3.0), (15.0, 10.0), (5.0, 10.0))
    img = Image.new("L", (w, h), 0)
    img.paste(255, (5, 3, 15, 10))
    exif = img.getexif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    upright = np.asarray(ImageOps.exif_transpose(img)) > 0
    moved = exif_transform_points(pts, orientation, w, h)
    mask = rasterize(moved, upright.shape[1], upright.shape[0])
    assert (mask == upright).all()
