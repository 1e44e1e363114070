"""Training data: samples, augmentation variants and their labels, crops, bucketed batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import draw_scene
from PIL import Image

from textsieve.annotations import Polygon, Sample
from textsieve.config import LabelConfig
from textsieve.data import (
    BucketBatchSampler,
    DataConfig,
    TrainSample,
    Variant,
    VariantDataset,
    build_samples,
    collate_items,
    epoch_variants,
    load_variant,
    make_variants,
    sample_size,
    text_free_crop,
)
from textsieve.errors import ConfigError
from textsieve.labels import label_sample
from textsieve.regions import _cover

CFG96 = DataConfig(short_side=96)  # 96x96 pictures stay 96x96: no resampling in these tests


def _mirror(labels: np.ndarray) -> np.ndarray:
    """Region labels of the horizontally mirrored picture (columns reversed in each grid)."""
    three = labels[:9].reshape(3, 3)[:, ::-1].ravel()
    five = labels[9:].reshape(5, 5)[:, ::-1].ravel()
    return np.concatenate([three, five])


def _one_box_root(tmp_path: Path, box: tuple[int, int, int, int], size: int = 96) -> TrainSample:
    """A root with one text picture: a white box on black, and its GT."""
    root = tmp_path / "one"
    (root / "text").mkdir(parents=True)
    (root / "text_gt").mkdir()
    arr = np.zeros((size, size, 3), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = 255
    Image.fromarray(arr).save(root / "text" / "box_0.png")
    (root / "text_gt" / "box_0_gt.txt").write_text(f"{x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1}\n")
    return build_samples([root])[0]


def test_variants_order_and_bounds() -> None:
    v = make_variants(6, 7.5)
    assert v[0] == Variant() and v[1] == Variant(True, 0.0)
    assert v[2:] == (Variant(False, 7.5), Variant(False, -7.5), Variant(True, 7.5),
                     Variant(True, -7.5))
    with pytest.raises(ConfigError):
        make_variants(7, 10.0)
    with pytest.raises(ConfigError):
        DataConfig(variants=0)


def test_epoch_variants_deterministic() -> None:
    a = epoch_variants(3, 1, 200, 6)
    assert np.array_equal(a, epoch_variants(3, 1, 200, 6))
    assert not np.array_equal(a, epoch_variants(3, 2, 200, 6))
    assert not np.array_equal(a, epoch_variants(4, 1, 200, 6))
    assert a.min() >= 0 and a.max() <= 5 and len(set(a.tolist())) == 6
    assert not epoch_variants(0, 5, 10, 1).any()


def test_identity_labels_equal_label_sample(textdis_root: Path) -> None:
    samples = build_samples([textdis_root])
    text = [s for s in samples if s.is_text and s.gt_path is not None]
    assert len(text) == 3
    for s in text:
        item = load_variant(s, Variant(), CFG96)
        assert item.image.shape == (3, 96, 96) and item.image.dtype == torch.float32
        assert 0.0 <= item.image.min() and item.image.max() <= 1.0
        ref = label_sample(Sample(s.path, True, s.gt_path), LabelConfig()).regions
        assert item.labels.tolist() == [float(v) for v in ref]
        assert item.mask.all() and item.is_text


def test_flip_mirrors_labels_and_pixels(tmp_path: Path) -> None:
    s = _one_box_root(tmp_path, (5, 10, 30, 40))  # left side only: labels are not symmetric
    ident = load_variant(s, Variant(), CFG96)
    flip = load_variant(s, Variant(flip=True), CFG96)
    assert not np.array_equal(ident.labels.numpy(), flip.labels.numpy())
    assert np.array_equal(flip.labels.numpy(), _mirror(ident.labels.numpy()))
    assert torch.equal(flip.image, ident.image.flip(-1))


def test_rotation_labels_follow_the_pixels(tmp_path: Path) -> None:
    s = _one_box_root(tmp_path, (10, 40, 86, 56))  # a wide bar through the middle
    cfg = DataConfig(short_side=96, degrees=40.0)
    ident = load_variant(s, Variant(), cfg)
    rot = load_variant(s, Variant(angle=40.0), cfg)
    assert not np.array_equal(ident.labels.numpy(), rot.labels.numpy())
    # Labels from the rotated picture's bright pixels, by the same 1% rule.
    bright = rot.image.mean(0).numpy() > 0.5
    from_pixels = (_cover(bright, 96, 96) >= 0.01).astype(np.float32)
    # Bilinear edges may tip a cell at the 1% boundary, never more than a couple.
    assert (from_pixels != rot.labels.numpy()).sum() <= 2


def test_text_without_gt_and_nontext(textdis_root: Path) -> None:
    samples = build_samples([textdis_root])
    no_gt = [s for s in samples if s.is_text and s.gt_path is None][0]
    item = load_variant(no_gt, Variant(True, 10.0), DataConfig(short_side=64))
    assert item.is_text and not item.mask.any() and not item.labels.any()
    bg = [s for s in samples if not s.is_text][0]
    item = load_variant(bg, Variant(), DataConfig(short_side=64))
    assert not item.is_text and item.mask.all() and not item.labels.any()
    assert tuple(item.image.shape[1:]) == (sample_size(bg, DataConfig(short_side=64))[1], 64)


def test_text_free_crop_avoids_every_box() -> None:
    box = Polygon(((0, 0), (40, 0), (40, 30), (0, 30)))
    crop = text_free_crop([box], 200, 100, min_frac=0.4)
    assert crop is not None
    x0, y0, x1, y1 = crop
    assert min(x1 - x0, y1 - y0) >= 40 and max(x1 - x0, y1 - y0) <= 2 * min(x1 - x0, y1 - y0)
    assert x0 >= 40 or y0 >= 30  # disjoint from the box
    everywhere = Polygon(((0, 0), (200, 0), (200, 100), (0, 100)))
    assert text_free_crop([box, everywhere], 200, 100) is None
    assert text_free_crop([], 200, 100) is None


def test_build_samples_with_crops_and_several_roots(tmp_path: Path) -> None:
    roots = []
    for r in range(2):
        root = tmp_path / f"r{r}"
        (root / "text").mkdir(parents=True)
        (root / "text_gt").mkdir()
        (root / "nontext").mkdir()
        draw_scene((160, 96), r, [(8, 8, 60, 24)]).save(root / "text" / f"t_{r}.jpg")
        (root / "text_gt" / f"t_{r}_gt.txt").write_text("8 8 60 8 60 24 8 24\n")
        draw_scene((96, 96), 10 + r).save(root / "nontext" / f"n_{r}.png")
        roots.append(root)
    cfg = DataConfig(short_side=64, nontext_crops=True)
    samples = build_samples(roots, cfg)
    assert [s.path.parent.parent.name for s in samples[:4]] == ["r0", "r0", "r1", "r1"]
    crops = [s for s in samples if s.crop is not None]
    assert len(crops) == 2 and all(not s.is_text for s in crops)
    assert crops[0].source == "t+crop"
    item = load_variant(crops[0], Variant(True, 10.0), cfg)
    assert not item.is_text and item.mask.all() and not item.labels.any()
    x0, y0, x1, y1 = crops[0].crop
    assert y0 >= 24 or x0 >= 60
    assert tuple(item.image.shape[1:])[::-1] == sample_size(crops[0], cfg)


def test_bucket_sampler_groups_sizes_and_is_deterministic() -> None:
    sizes = [(96, 64)] * 7 + [(64, 96)] * 5 + [(64, 64)] * 3
    sampler = BucketBatchSampler(sizes, batch_size=2, seed=1)
    sampler.set_epoch(0)
    first = list(sampler)
    assert len(first) == len(sampler) == 4 + 3 + 2
    assert sorted(i for b in first for i in b) == list(range(15))
    assert all(len({sizes[i] for i in b}) == 1 for b in first)
    sampler.set_epoch(0)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    ordered = list(BucketBatchSampler(sizes, batch_size=4, shuffle=False))
    assert ordered[0] == [12, 13, 14]  # smallest size first, indices ascending


def test_dataset_skips_broken_files(textdis_root: Path) -> None:
    (textdis_root / "nontext" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (textdis_root / "nontext" / "empty.png").write_bytes(b"")
    samples = build_samples([textdis_root])
    ds = VariantDataset(samples, DataConfig(short_side=64, variants=2), seed=0)
    ds.set_epoch(3)
    items = [ds[i] for i in range(len(ds))]
    bad = [s.path.name for s, it in zip(samples, items, strict=True) if it is None]
    assert sorted(bad) == ["broken.jpg", "empty.png"]
    same = [i for i, s in enumerate(samples) if s.path.suffix == ".png" and s.path.stat().st_size]
    batch = collate_items([items[i] for i in same] + [None])
    assert batch is not None and batch.images.shape[0] == len(same)
    assert batch.labels.shape == (len(same), 34) and batch.mask.dtype == torch.bool
    assert collate_items([None]) is None
