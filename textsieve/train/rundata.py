"""Pictures of a distillation run: training batches that know their (picture, variant) and a
validation set held in memory.

Training batches come from :class:`textsieve.data.VariantDataset` (deterministic variant per
picture and epoch) through :class:`textsieve.data.BucketBatchSampler` (equal sizes, order fixed
by seed and epoch), decoded in a background worker. Unlike :func:`textsieve.data.collate_items`
they keep the picture index and variant of every row, which is how a batch finds its cached
teacher outputs. Validation pictures are decoded once and kept as uint8 (exactly the values
:func:`textsieve.preprocess.to_tensor` divided by 255), so each epoch's validation is model time.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from textsieve.data import (
    BucketBatchSampler,
    DataConfig,
    Item,
    VariantDataset,
    build_samples,
    collate_items,
    sample_size,
    single_thread_worker,
)

log = logging.getLogger(__name__)


class TrainBatch(NamedTuple):
    """A training batch with the identity of each row."""

    index: torch.Tensor  # (B,) picture indices into RunData.train
    variant: torch.Tensor  # (B,) variant index of each picture in this epoch
    images: torch.Tensor  # (B, 3, H, W) RGB in [0, 1]
    labels: torch.Tensor  # (B, 34) region labels
    mask: torch.Tensor  # (B, 34) bool, known region labels
    is_text: torch.Tensor  # (B,) image labels


class _Indexed(VariantDataset):
    """``VariantDataset`` whose items carry their index and variant."""

    def __getitem__(self, i: int) -> tuple[int, int, Item | None]:  # type: ignore[override]
        return i, int(self.choice[i]), super().__getitem__(i)


class MixedBatchSampler(Sampler[list[int]]):
    """Random batches across picture sizes; order fixed by (seed, epoch).

    On TextDis-like data the picture size gives the source and hence the class away (ICDAR 2015
    text photos are all 16:9, most non-text photos 4:3 or portrait), so the equal-size batches
    of :class:`~textsieve.data.BucketBatchSampler` are nearly all-text or all-non-text. A
    network with BatchNorm then normalises each batch by class-specific statistics and learns
    slowly and badly calibrated. Here landscape (and square) pictures and portrait pictures are
    shuffled in two groups, cut into batches, and :func:`_collate` resizes the members of a
    batch to their mean size: a mild aspect-ratio augmentation in exchange for mixed batches.

    Args:
        sizes: target (width, height) of each sample.
        batch_size: pictures per batch.
        seed: base seed.
    """

    def __init__(self, sizes: Sequence[tuple[int, int]], batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.sizes, self.batch_size, self.seed, self.epoch = list(sizes), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch, 0x313D])
        wide = np.array([w >= h for w, h in self.sizes], dtype=bool)
        batches: list[list[int]] = []
        for group in (np.flatnonzero(wide), np.flatnonzero(~wide)):
            group = rng.permutation(group)
            batches += [group[j:j + self.batch_size].tolist()
                        for j in range(0, len(group), self.batch_size)]
        return iter([batches[j] for j in rng.permutation(len(batches))])

    def __len__(self) -> int:
        wide = sum(w >= h for w, h in self.sizes)
        return -(-wide // self.batch_size) + -(-(len(self.sizes) - wide) // self.batch_size)


def _common_size(items: Sequence[Item]) -> list[Item]:
    """Items resized (bilinear, antialiased) to their mean size, rounded to multiples of 32.

    Region labels are fractions of the picture, so they stay valid (up to the rounding of cell
    edges); so do the teacher's outputs for the unresized picture.
    """
    shapes = {tuple(it.image.shape[-2:]) for it in items}
    if len(shapes) <= 1:
        return list(items)
    h = max(32, int(round(np.mean([it.image.shape[-2] for it in items]) / 32)) * 32)
    w = max(32, int(round(np.mean([it.image.shape[-1] for it in items]) / 32)) * 32)
    out = []
    for it in items:
        img = it.image
        if tuple(img.shape[-2:]) != (h, w):
            img = F.interpolate(img[None], size=(h, w), mode="bilinear", align_corners=False,
                                antialias=True)[0].clamp_(0.0, 1.0)
        out.append(it._replace(image=img))
    return out


def _collate(rows: Sequence[tuple[int, int, Item | None]]) -> TrainBatch | None:
    ok = [(i, v, it) for i, v, it in rows if it is not None]  # decode errors are dropped
    batch = collate_items(_common_size([it for _, _, it in ok]))
    if batch is None:
        return None
    return TrainBatch(torch.tensor([i for i, _, _ in ok]), torch.tensor([v for _, v, _ in ok]),
                      *batch)


class RunData:
    """Training and validation pictures of a run.

    Args:
        roots: training roots.
        val_root: validation root, or None.
        cfg: data config (variants, size policy, label rule, text-free crops).
        batch_size: training batch size.
        seed: seed of variant choice and batch order.
        workers: decoding processes (0: in the training process).
        keep_pictures: keep every decoded (picture, variant) in memory as uint8 and decode in
            the training process (``workers`` then only serves validation). Later epochs cost
            model time only; memory grows to about N x distinct variants x 300 kB.
        batching: ``bucket`` (equal-size batches) or ``mixed`` (:class:`MixedBatchSampler`).
    """

    def __init__(self, roots: Sequence[str], val_root: str | None, cfg: DataConfig,
                 batch_size: int, seed: int, workers: int, keep_pictures: bool = False,
                 batching: str = "bucket") -> None:
        self.cfg, self.seed, self.workers = cfg, seed, workers
        # (picture, variant) -> Item with a uint8 image; None: decode every epoch in workers.
        self.memo: dict[tuple[int, int], Item | None] | None = {} if keep_pictures else None
        self.memo_bytes = 0
        self.train = build_samples(roots, cfg)
        self.dataset = _Indexed(self.train, cfg, seed=seed)
        sizes = [sample_size(s, cfg) for s in self.train]
        self.sampler: BucketBatchSampler | MixedBatchSampler = (
            MixedBatchSampler(sizes, batch_size, seed) if batching == "mixed"
            else BucketBatchSampler(sizes, batch_size, seed=seed))
        self.val_root = val_root
        self._val: list[tuple[torch.Tensor, ...]] | None = None
        log.info("%d training pictures (%d text)%s", len(self.train),
                 sum(s.is_text for s in self.train), f", validation {val_root}" if val_root else "")

    @property
    def train_size(self) -> int:
        return len(self.train)

    @property
    def has_val(self) -> bool:
        return self.val_root is not None

    def _loader(self, dataset: VariantDataset, sampler: BucketBatchSampler, collate) -> DataLoader:
        kw = {"worker_init_fn": single_thread_worker} if self.workers else {}
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                          num_workers=self.workers, **kw)

    def epoch(self, epoch: int) -> Iterator[TrainBatch]:
        """The batches of ``epoch`` (1-based), in their fixed order."""
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        if self.memo is not None:
            yield from self._memo_epoch()
            return
        for batch in self._loader(self.dataset, self.sampler, _collate):
            if batch is not None:
                yield batch

    def _memo_epoch(self) -> Iterator[TrainBatch]:
        """Batches from pictures kept in memory after their first decoding (in process)."""
        assert self.memo is not None
        for indices in self.sampler:
            rows = []
            for i in indices:
                key = (i, int(self.dataset.choice[i]))
                if key not in self.memo:
                    _, _, item = self.dataset[i]
                    self.memo[key] = None if item is None else item._replace(
                        image=(item.image * 255).round().to(torch.uint8))
                    if item is not None:
                        self.memo_bytes += item.image.numel()
                item = self.memo[key]
                if item is not None:  # uint8 / 255 gives back exactly what to_tensor made
                    item = item._replace(image=item.image.float().div_(255.0))
                rows.append((i, key[1], item))
            batch = _collate(rows)
            if batch is not None:
                yield batch

    def _load_val(self) -> list[tuple[torch.Tensor, ...]]:
        cfg = dataclasses.replace(self.cfg, nontext_crops=False)
        val = build_samples([Path(self.val_root)], cfg)
        ds = VariantDataset(val, cfg, seed=self.seed, augment=False)
        sampler = BucketBatchSampler([sample_size(s, cfg) for s in val], 32, shuffle=False)
        out = []
        for b in self._loader(ds, sampler, collate_items):
            if b is not None:
                out.append(((b.images * 255).round().to(torch.uint8), b.labels, b.mask,
                            b.is_text))
        log.info("validation: %d pictures in memory", sum(len(b[0]) for b in out))
        return out

    @torch.no_grad()
    def predict_val(self, model: nn.Module, device: str = "cpu") -> tuple[np.ndarray, ...]:
        """(is_text (N,), region probs (N, 34), region labels (N, 34), mask (N, 34))."""
        if self._val is None:
            self._val = self._load_val()
        cols: list[list[np.ndarray]] = [[], [], [], []]
        for images, labels, mask, is_text in self._val:
            probs = torch.sigmoid(model(images.to(device).float().div_(255.0)).logits).cpu()
            for col, v in zip(cols, (is_text, probs, labels, mask), strict=True):
                col.append(v.numpy())
        return tuple(np.concatenate(c) for c in cols)
