"""Image regions: the 3x3 and 5x5 grids (M = 34 regions) and region labels from text polygons.

Order is fixed everywhere: the 9 cells of the 3x3 grid row-major, then the 25 cells of the 5x5
grid row-major (``REGION_SLICES``). Cell edges are ``round(linspace(0, size, g + 1))`` so the
cells tile the image exactly, without gaps or overlaps.

Coverage is computed on the pixel grid: a pixel belongs to a polygon when its centre lies inside
(even-odd rule), and a region's coverage is the share of its pixels inside the *union* of all
polygons. An axis-aligned box with integer corners therefore covers exactly its area in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textsieve.annotations import Polygon
from textsieve.config import LabelConfig

GRIDS: tuple[int, ...] = (3, 5)
NUM_REGIONS: int = sum(g * g for g in GRIDS)  # 34
REGION_SLICES: dict[int, slice] = {3: slice(0, 9), 5: slice(9, 34)}


def cell_edges(size: int, grid: int) -> np.ndarray:
    """Integer cell boundaries along one axis: ``grid + 1`` values from 0 to ``size``."""
    return np.linspace(0, size, grid + 1).round().astype(int)


def region_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """The 34 regions as ``(x0, y0, x1, y1)`` pixel boxes, in region order."""
    boxes = []
    for g in GRIDS:
        xs, ys = cell_edges(width, g), cell_edges(height, g)
        for r in range(g):
            for c in range(g):
                boxes.append((int(xs[c]), int(ys[r]), int(xs[c + 1]), int(ys[r + 1])))
    return boxes


def rasterize(points: Sequence[tuple[float, float]], width: int, height: int) -> np.ndarray:
    """Boolean (height, width) mask of pixels whose centre is inside the polygon (even-odd).

    Points outside the image are fine: the polygon is clipped to the image by construction.
    """
    mask = np.zeros((height, width), dtype=bool)
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3 or width <= 0 or height <= 0:
        return mask
    ymin, ymax = pts[:, 1].min(), pts[:, 1].max()
    r0 = max(int(np.floor(ymin - 0.5)), 0)
    r1 = min(int(np.ceil(ymax - 0.5)) + 1, height)
    if r0 >= r1:
        return mask
    yc = np.arange(r0, r1) + 0.5  # pixel-centre rows
    x_a, y_a = pts[:, 0], pts[:, 1]
    x_b, y_b = np.roll(x_a, -1), np.roll(y_a, -1)
    # An edge crosses the scan line when exactly one end is above it (half-open, no double count).
    above_a = y_a[None, :] > yc[:, None]
    above_b = y_b[None, :] > yc[:, None]
    crosses = above_a != above_b
    with np.errstate(divide="ignore", invalid="ignore"):  # horizontal edges never cross
        t = (yc[:, None] - y_a[None, :]) / (y_b - y_a)[None, :]
        xs = np.where(crosses, x_a[None, :] + t * (x_b - x_a)[None, :], np.nan)
    xs.sort(axis=1)  # NaNs go last
    cols = np.arange(width) + 0.5
    for k in range(0, xs.shape[1] - 1, 2):
        left, right = xs[:, k], xs[:, k + 1]
        valid = ~np.isnan(left) & ~np.isnan(right)
        inside = (cols[None, :] >= left[:, None]) & (cols[None, :] < right[:, None])
        mask[r0:r1] |= inside & valid[:, None]
    return mask


def region_coverage(polygons: Sequence[Polygon], width: int, height: int) -> np.ndarray:
    """Share of each region's pixels inside the union of ``polygons``: float array (34,)."""
    union = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        union |= rasterize(poly.points, width, height)
    return _cover(union, width, height)


def _cover(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    out = np.zeros(NUM_REGIONS)
    for i, (x0, y0, x1, y1) in enumerate(region_boxes(width, height)):
        area = (x1 - x0) * (y1 - y0)
        if area == 0:
            continue
        inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        out[i] = inside / area
    return out


def labels_from_polygons(
    polygons: Sequence[Polygon], width: int, height: int, cfg: LabelConfig | None = None
) -> np.ndarray:
    """Region labels (34,) uint8 for one image.

    ``paper`` rule (Zhao et al. 2019, III-D): positive when coverage >= ``min_cover``.
    ``msp`` rule (MSP-Net): coverage > ``msp_cover`` and some polygon spans, inside the region,
    more than ``msp_height`` of the region's height.

    Args:
        polygons: text boxes in image pixel coordinates (clipped to the image here).
        width: image width in pixels.
        height: image height in pixels.
        cfg: the label rule; defaults to the paper's.
    """
    cfg = cfg or LabelConfig()
    cover = region_coverage(polygons, width, height)
    if cfg.rule == "paper":
        # Small epsilon: a box of exactly 1% must count despite float rounding of the ratio.
        return (cover >= cfg.min_cover - 1e-12).astype(np.uint8)
    tall = np.zeros(NUM_REGIONS, dtype=bool)
    boxes = region_boxes(width, height)
    for poly in polygons:
        m = rasterize(poly.points, width, height)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            rows = m[y0:y1, x0:x1].any(axis=1).sum()
            if y1 > y0 and rows > cfg.msp_height * (y1 - y0):
                tall[i] = True
    return ((cover > cfg.msp_cover) & tall).astype(np.uint8)


def image_label(region_labels: np.ndarray) -> bool:
    """Image label: the logical OR of its region labels."""
    return bool(np.asarray(region_labels).any())


def exif_transform_points(
    points: Sequence[tuple[float, float]], orientation: int, width: int, height: int
) -> tuple[tuple[float, float], ...]:
    """Map points of the stored image to the upright image that ``ImageOps.exif_transpose`` gives.

    Args:
        points: (x, y) in stored pixel coordinates.
        orientation: EXIF orientation tag (1-8).
        width: stored width.
        height: stored height.
    """
    w, h = width, height
    maps = {
        1: lambda x, y: (x, y),
        2: lambda x, y: (w - x, y),
        3: lambda x, y: (w - x, h - y),
        4: lambda x, y: (x, h - y),
        5: lambda x, y: (y, x),
        6: lambda x, y: (h - y, x),
        7: lambda x, y: (h - y, w - x),
        8: lambda x, y: (y, w - x),
    }
    f = maps.get(orientation, maps[1])
    return tuple(f(x, y) for x, y in points)
