"""Training data: samples of TextDis roots, deterministic augmentation variants, batching.

Shared by the teacher trainer and the distillation code. The flow for one training example:

1. :func:`build_samples` lists one or more TextDis-layout roots (``scan_root``) into
   :class:`TrainSample` s, optionally adding *text-free crops* of text images as extra non-text
   examples (:func:`text_free_crop`). Text and non-text photos come from different collections
   (see the data README), so a model could learn the camera instead of the text; crops of the
   text photos that avoid every GT box are non-text pictures from the text collections.
2. Each sample has ``K`` fixed augmentation :class:`Variant` s (:func:`make_variants`): identity,
   h-flip, rotation by +-``degrees``, and rotation with flip. In epoch ``e`` sample ``i`` uses
   variant ``epoch_variants(seed, e, n, K)[i]``: deterministic, so a run can be repeated or
   resumed exactly, and a frozen trunk's output can be cached per (image, variant).
3. :func:`load_variant` decodes, crops, resizes (short side 256, both sides multiples of 32),
   applies the variant to the pixels *and to the GT polygons*, and recomputes the region labels
   with :func:`textsieve.regions.labels_from_polygons` on the final picture: a flipped image has
   mirrored labels, a rotated one the labels of its rotated boxes. Nothing is guessed.
4. :class:`BucketBatchSampler` batches images of equal target size, so batches stack without
   padding (the region grid always covers the whole picture).

Region labels come with a mask: text images without GT (and text images whose boxes are too
small to reach the region rule) have no region labels, only the image label; the loss uses the
max region logit for them (:mod:`textsieve.losses.region`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from textsieve.annotations import Polygon, read_gt, scan_root
from textsieve.config import LabelConfig
from textsieve.decode import decode_image, image_size
from textsieve.errors import ConfigError, DecodeError
from textsieve.preprocess import MAX_LONG, SHORT_SIDE, resize_rgb, target_size, to_tensor
from textsieve.regions import NUM_REGIONS, exif_transform_points, labels_from_polygons

log = logging.getLogger(__name__)

MAX_VARIANTS = 6


@dataclass(frozen=True)
class DataConfig:
    """How training pictures are made.

    Attributes:
        short_side: short side of the network input (paper: 256).
        max_long: cap of the long side (see :mod:`textsieve.preprocess`).
        variants: K, the number of fixed augmentation variants per image (1 to 6).
        degrees: rotation angle of the rotated variants (paper: "flip and rotation", no angle).
        nontext_crops: add one text-free crop of every text image with GT as a non-text sample.
        crop_min_frac: a crop's short side must be at least this share of the image's short side.
        label: the region-label rule.
    """

    short_side: int = SHORT_SIDE
    max_long: int = MAX_LONG
    variants: int = 6
    degrees: float = 10.0
    nontext_crops: bool = False
    crop_min_frac: float = 0.4
    label: LabelConfig = LabelConfig()

    def __post_init__(self) -> None:
        if not 1 <= self.variants <= MAX_VARIANTS:
            raise ConfigError(f"data.variants must be in 1..{MAX_VARIANTS}, got {self.variants}")
        if self.short_side < 32:
            raise ConfigError(f"data.short_side must be >= 32, got {self.short_side}")
        if not 0.0 < self.crop_min_frac <= 1.0:
            raise ConfigError(f"data.crop_min_frac must be in (0, 1], got {self.crop_min_frac}")


@dataclass(frozen=True)
class TrainSample:
    """One training picture.

    Attributes:
        path: the image file.
        is_text: image label (False for text-free crops of text images).
        gt_path: GT file of a text image, or None.
        crop: ``(x0, y0, x1, y1)`` in upright image pixels when the picture is a crop.
    """

    path: Path
    is_text: bool
    gt_path: Path | None
    crop: tuple[int, int, int, int] | None = None

    @property
    def source(self) -> str:
        """Data-set prefix of the file name (``ic15``, ``bsds500``...), ``+crop`` for crops."""
        name = self.path.name
        src = name.split("_", 1)[0] if "_" in name else "unknown"
        return f"{src}+crop" if self.crop is not None else src


@dataclass(frozen=True)
class Variant:
    """A geometric augmentation: optional horizontal flip, then rotation (degrees, CCW)."""

    flip: bool = False
    angle: float = 0.0


class Item(NamedTuple):
    """What :func:`load_variant` returns."""

    image: torch.Tensor  # (3, H, W) float32 RGB in [0, 1]
    labels: torch.Tensor  # (34,) float32 region labels (zeros where masked)
    mask: torch.Tensor  # (34,) bool: which region labels are known
    is_text: bool  # image label


def make_variants(k: int, degrees: float) -> tuple[Variant, ...]:
    """The first ``k`` of: identity, flip, +deg, -deg, flip +deg, flip -deg."""
    all_ = (
        Variant(False, 0.0), Variant(True, 0.0), Variant(False, degrees), Variant(False, -degrees),
        Variant(True, degrees), Variant(True, -degrees),
    )
    if not 1 <= k <= len(all_):
        raise ConfigError(f"variants must be in 1..{len(all_)}, got {k}")
    return all_[:k]


def epoch_variants(seed: int, epoch: int, n: int, k: int) -> np.ndarray:
    """Variant index of each of ``n`` samples in ``epoch``: a pure function of (seed, epoch, i)."""
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    return np.random.default_rng([seed, epoch, 0x5EED]).integers(0, k, size=n)


# --------------------------------------------------------------------------------- samples
def upright_polygons(sample: TrainSample) -> tuple[list[Polygon], int, int]:
    """GT polygons in upright (EXIF-applied) pixels, and the upright (width, height)."""
    width, height, orientation = image_size(sample.path)
    polys = read_gt(sample.gt_path) if sample.gt_path is not None else []
    if orientation in (0, 1):
        return polys, width, height
    # GT boxes are in stored pixels; decode_image returns the EXIF-upright picture.
    polys = [Polygon(exif_transform_points(p.points, orientation, width, height), p.illegible,
                     p.text) for p in polys]
    return (polys, height, width) if orientation in (5, 6, 7, 8) else (polys, width, height)


def text_free_crop(
    polygons: Sequence[Polygon], width: int, height: int, min_frac: float = 0.4, grid: int = 20,
) -> tuple[int, int, int, int] | None:
    """The largest rectangle that avoids every GT box (with a margin), or None.

    The picture is divided into ``grid`` x ``grid`` cells; a cell is taken when it touches the
    bounding box of any polygon (``###`` boxes included) grown by 2% of the short side. Among
    the all-free cell rectangles with an aspect ratio within 1:2..2:1 and a short side of at
    least ``min_frac`` of the image's short side, the largest wins (first in row-major order on
    ties), so the choice is deterministic.

    Args:
        polygons: GT boxes in upright pixels.
        width: image width.
        height: image height.
        min_frac: minimum short side of the crop, as a share of the image's short side.
        grid: cells per axis.

    Returns:
        ``(x0, y0, x1, y1)`` in pixels, or None when no rectangle qualifies (or no GT).
    """
    if not polygons:
        return None
    xs = np.linspace(0, width, grid + 1)
    ys = np.linspace(0, height, grid + 1)
    margin = 0.02 * min(width, height)
    taken = np.zeros((grid, grid), dtype=bool)
    for p in polygons:
        pts = np.asarray(p.points)
        x0, y0 = pts.min(0) - margin
        x1, y1 = pts.max(0) + margin
        cols = (xs[1:] > x0) & (xs[:-1] < x1)
        rows = (ys[1:] > y0) & (ys[:-1] < y1)
        taken |= rows[:, None] & cols[None, :]
    integral = np.pad(taken.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    cell_w, cell_h = width / grid, height / grid
    min_side = min_frac * min(width, height)
    shapes = sorted(
        (-(hh * cell_h) * (ww * cell_w), hh, ww)
        for hh in range(1, grid + 1) for ww in range(1, grid + 1)
        if min(hh * cell_h, ww * cell_w) >= min_side
        and max(hh * cell_h, ww * cell_w) <= 2 * min(hh * cell_h, ww * cell_w)
    )
    for _, hh, ww in shapes:  # largest first: the first shape with a free position wins
        sums = integral[hh:, ww:] - integral[:-hh, ww:] - integral[hh:, :-ww] + integral[:-hh, :-ww]
        free = np.flatnonzero(sums == 0)
        if len(free):
            r, c = divmod(int(free[0]), sums.shape[1])
            return (int(round(xs[c])), int(round(ys[r])), int(round(xs[c + ww])),
                    int(round(ys[r + hh])))
    return None


def build_samples(roots: Sequence[Path | str], cfg: DataConfig | None = None) -> list[TrainSample]:
    """All samples of the given TextDis roots, in order, then the text-free crops (if enabled).

    Args:
        roots: one or more TextDis-layout roots.
        cfg: data config (only ``nontext_crops`` and ``crop_min_frac`` matter here).

    Returns:
        The samples; originals in ``scan_root`` order, root by root, then crops.
    """
    cfg = cfg or DataConfig()
    samples: list[TrainSample] = []
    for root in roots:
        samples.extend(TrainSample(s.path, s.is_text, s.gt_path) for s in scan_root(Path(root)))
    if cfg.nontext_crops:
        crops = []
        for s in samples:
            if not s.is_text or s.gt_path is None:
                continue
            try:
                polys, w, h = upright_polygons(s)
            except DecodeError as e:
                log.warning("%s: skipped for crops: %s", s.path, e)
                continue
            box = text_free_crop(polys, w, h, cfg.crop_min_frac)
            if box is not None:
                crops.append(TrainSample(s.path, False, s.gt_path, box))
        log.info("%d text-free crops from %d text images", len(crops),
                 sum(s.is_text for s in samples))
        samples.extend(crops)
    return samples


def sample_size(sample: TrainSample, cfg: DataConfig) -> tuple[int, int]:
    """Network input (width, height) of a sample, from the file header (no decoding)."""
    if sample.crop is not None:
        x0, y0, x1, y1 = sample.crop
        w, h = x1 - x0, y1 - y0
    else:
        w, h, orientation = image_size(sample.path)
        if orientation in (5, 6, 7, 8):
            w, h = h, w
    return target_size(w, h, cfg.short_side, cfg.max_long)


# ----------------------------------------------------------------------------------- geometry
def _transform(points: np.ndarray, variant: Variant, width: int, height: int) -> np.ndarray:
    """Apply ``variant`` to (N, 2) points of a ``width`` x ``height`` picture."""
    pts = points.copy()
    if variant.flip:
        pts[:, 0] = width - pts[:, 0]
    if variant.angle:
        # PIL's rotate(angle) turns the picture counter-clockwise about (w/2, h/2) as displayed
        # (y down): a point right of the centre moves up.
        a = math.radians(variant.angle)
        cx, cy = width / 2.0, height / 2.0
        dx, dy = pts[:, 0] - cx, pts[:, 1] - cy
        pts[:, 0] = cx + dx * math.cos(a) + dy * math.sin(a)
        pts[:, 1] = cy - dx * math.sin(a) + dy * math.cos(a)
    return pts


def apply_variant(arr: np.ndarray, variant: Variant) -> np.ndarray:
    """Apply ``variant`` to an (H, W, 3) uint8 picture (same size out).

    Rotated corners are filled with the picture's mean colour: a constant black fill would be a
    cue shared by every rotated picture, text or not, but a visible edge nonetheless.
    """
    if variant.flip:
        arr = arr[:, ::-1]
    if variant.angle:
        fill = tuple(int(v) for v in arr[::4, ::4].reshape(-1, 3).mean(0).round())
        img = Image.fromarray(np.ascontiguousarray(arr))
        arr = np.asarray(img.rotate(variant.angle, resample=Image.BILINEAR, fillcolor=fill))
    arr = np.ascontiguousarray(arr)
    return arr if arr.flags.writeable else arr.copy()  # torch warns on read-only arrays


def load_variant(
    sample: TrainSample, variant: Variant = Variant(), cfg: DataConfig | None = None,
) -> Item:
    """Decode one sample and make augmentation ``variant`` of it, with its labels.

    Args:
        sample: the sample.
        variant: flip/rotation to apply.
        cfg: data config (size policy and label rule).

    Returns:
        ``Item(image (3, H, W) in [0, 1], labels (34,) float, mask (34,) bool, is_text)``. H, W
        are :func:`sample_size`. Masks are all True for non-text pictures and text pictures with
        GT, all False for text pictures without GT or whose boxes give no positive region.

    Raises:
        DecodeError: the image cannot be read.
        AnnotationError: its GT file is malformed.
    """
    cfg = cfg or DataConfig()
    polys, width, height = upright_polygons(sample)
    x0, y0, x1, y1 = sample.crop if sample.crop is not None else (0, 0, width, height)
    cw, ch = x1 - x0, y1 - y0
    tw, th = target_size(cw, ch, cfg.short_side, cfg.max_long)
    # Ask the JPEG decoder for enough pixels that the crop still reaches the target size.
    min_short = int(math.ceil(max(tw / cw, th / ch) * min(width, height)))
    arr = decode_image(sample.path, min_short=min_short)
    sx, sy = arr.shape[1] / width, arr.shape[0] / height
    arr = arr[int(round(y0 * sy)):int(round(y1 * sy)), int(round(x0 * sx)):int(round(x1 * sx))]
    arr = apply_variant(resize_rgb(arr, (tw, th)), variant)

    labels = np.zeros(NUM_REGIONS, dtype=np.float32)
    mask = np.ones(NUM_REGIONS, dtype=bool)
    if sample.is_text:
        if sample.gt_path is None:
            mask[:] = False
        else:
            scaled = []
            for p in polys:
                pts = (np.asarray(p.points, dtype=np.float64) - (x0, y0)) * (tw / cw, th / ch)
                pts = _transform(pts, variant, tw, th)
                scaled.append(Polygon(tuple(map(tuple, pts)), p.illegible, p.text))
            labels = labels_from_polygons(scaled, tw, th, cfg.label).astype(np.float32)
            if not labels.any():
                # Boxes too small (or turned out of the picture): the image label is all we know.
                mask[:] = False
    return Item(to_tensor(arr), torch.from_numpy(labels), torch.from_numpy(mask), sample.is_text)


# ----------------------------------------------------------------------------------- batching
class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose pictures have the same target size; order fixed by (seed, epoch).

    Args:
        sizes: target (width, height) of each sample (:func:`sample_size`).
        batch_size: maximum batch size (a bucket's last batch may be smaller).
        seed: base seed.
        shuffle: shuffle within buckets and the order of batches (training); else sorted.
    """

    def __init__(
        self, sizes: Sequence[tuple[int, int]], batch_size: int, seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.sizes = list(sizes)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__iter__` yields."""
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch, 0xBA7C])
        buckets: dict[tuple[int, int], list[int]] = {}
        for i, s in enumerate(self.sizes):
            buckets.setdefault(s, []).append(i)
        batches = []
        for key in sorted(buckets):
            idx = np.asarray(buckets[key])
            if self.shuffle:
                idx = rng.permutation(idx)
            batches.extend(idx[j:j + self.batch_size].tolist()
                           for j in range(0, len(idx), self.batch_size))
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        counts: dict[tuple[int, int], int] = {}
        for s in self.sizes:
            counts[s] = counts.get(s, 0) + 1
        return sum(-(-c // self.batch_size) for c in counts.values())


class VariantDataset(Dataset):
    """Map-style dataset: index ``i`` -> :func:`load_variant` of sample ``i`` in its epoch variant.

    Call :meth:`set_epoch` before iterating (DataLoader workers copy the dataset when an epoch's
    iterator starts, so they see the epoch). Undecodable images give ``None`` (counted by the
    caller via :func:`collate_items`), so one bad file never stops a run.
    """

    def __init__(self, samples: Sequence[TrainSample], cfg: DataConfig, seed: int = 0,
                 augment: bool = True) -> None:
        self.samples = list(samples)
        self.cfg = cfg
        self.seed = seed
        self.variants = make_variants(cfg.variants if augment else 1, cfg.degrees)
        self.choice = np.zeros(len(self.samples), dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Fix the variant of every sample for ``epoch``."""
        self.choice = epoch_variants(self.seed, epoch, len(self.samples), len(self.variants))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Item | None:
        try:
            return load_variant(self.samples[i], self.variants[int(self.choice[i])], self.cfg)
        except DecodeError as e:
            log.warning("%s: %s", self.samples[i].path, e)
            return None


def single_thread_worker(_: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread per decoding worker.

    Workers must not compete with the main process for the cores: on a small CPU, torch ops run
    many times slower when several processes each spin a full thread pool.
    """
    torch.set_num_threads(1)


class Batch(NamedTuple):
    """A stacked batch of :class:`Item` s."""

    images: torch.Tensor  # (B, 3, H, W)
    labels: torch.Tensor  # (B, 34)
    mask: torch.Tensor  # (B, 34) bool
    is_text: torch.Tensor  # (B,) float


def collate_items(items: Sequence[Item | None]) -> Batch | None:
    """Stack items of one size bucket; ``None`` items (decode errors) are dropped."""
    ok = [it for it in items if it is not None]
    if not ok:
        return None
    return Batch(
        torch.stack([it.image for it in ok]),
        torch.stack([it.labels for it in ok]),
        torch.stack([it.mask for it in ok]),
        torch.tensor([float(it.is_text) for it in ok]),
    )
