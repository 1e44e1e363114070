"""On-disk cache of a frozen trunk's pooled region features, one file per (image, variant).

This is where the ``ppocr`` teacher's training speed comes from: its trunk is frozen, so
``TeacherNet.pool(trunk(x))`` for a given picture never changes. It is computed once per
(image, augmentation variant), stored as float16, and every epoch after that (and every later
run, and the dev evaluation) trains and evaluates the small head on stored features only.

A cache key hashes everything the stored value depends on: the trunk's identity (model file hash
and the maps it returns), the image's path, size and mtime (an edited file is recomputed), the
crop, the variant, and the preprocessing (size policy, pooling, label rule). Region labels, their
mask and the image label are stored alongside, so a cache hit needs no decoding at all.
Files are written atomically (temp file + ``os.replace``), so an interrupted run leaves no
half-written entry and simply continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from textsieve.config import to_dict
from textsieve.data import (
    DataConfig,
    Item,
    TrainSample,
    Variant,
    load_variant,
    single_thread_worker,
)
from textsieve.errors import AnnotationError, DecodeError
from textsieve.regions import NUM_REGIONS

log = logging.getLogger(__name__)

PooledFn = Callable[[torch.Tensor], list[torch.Tensor]]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/textsieve/features`` (``~/.cache/textsieve/features``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "textsieve" / "features"


@dataclass
class FeatureTable:
    """Cached examples stacked in memory, row ``r`` = one (sample, variant) pair.

    Attributes:
        feats: one (N, 34, C) float16 tensor per trunk map.
        labels: (N, 34) float32 region labels.
        mask: (N, 34) bool, which region labels are known.
        is_text: (N,) float32 image labels.
        valid: (N,) bool, False where the image could not be decoded (row is zeros).
    """

    feats: list[torch.Tensor]
    labels: torch.Tensor
    mask: torch.Tensor
    is_text: torch.Tensor
    valid: torch.Tensor

    def __len__(self) -> int:
        return len(self.valid)


class FeatureCache:
    """Directory of cached pooled features for one trunk and one preprocessing.

    Args:
        root: cache directory (shared by runs; entries of other trunks never collide).
        trunk_id: identity of the frozen trunk (e.g. ``PPOCRTrunk.identity``).
        prep: everything else the features depend on (size policy, pooling, label rule).
    """

    def __init__(self, root: Path, trunk_id: str, prep: dict) -> None:
        self.root = Path(root)
        self.trunk_id = trunk_id
        self.prep = json.dumps(prep, sort_keys=True)

    def key(self, sample: TrainSample, variant: Variant) -> str:
        """Hex key of one (sample, variant); changes when the image file changes."""
        st = sample.path.stat()
        gt = sample.gt_path.stat() if sample.gt_path is not None else None
        parts = [
            self.trunk_id, self.prep, str(sample.path.resolve()), st.st_size, st.st_mtime_ns,
            [gt.st_size, gt.st_mtime_ns] if gt else None, sample.crop, sample.is_text,
            [variant.flip, variant.angle],
        ]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The stored arrays of ``key``, or None when missing or unreadable."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as e:  # a damaged entry is recomputed
            log.warning("cache entry %s unreadable (%s); recomputing", path, e)
            return None

    def put(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store ``arrays`` under ``key`` atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def prep_identity(data: DataConfig, pool: str) -> dict:
    """The preprocessing part of a cache key."""
    return {"short_side": data.short_side, "max_long": data.max_long, "pool": pool,
            "label": to_dict(data.label), "v": 1}


class _Loader(Dataset):
    """(sample, variant) pairs -> (row, Item | error string), decoded in DataLoader workers."""

    def __init__(self, pairs: list[tuple[int, TrainSample, Variant]], cfg: DataConfig) -> None:
        self.pairs, self.cfg = pairs, cfg

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[int, Item | DecodeError | AnnotationError]:
        row, sample, variant = self.pairs[i]
        try:
            return row, load_variant(sample, variant, self.cfg)
        except DecodeError as e:
            return row, DecodeError(f"{sample.path}: {e}", e.kind)
        except AnnotationError as e:  # re-raised in the caller's process with its own message
            return row, e


def cache_features(
    pairs: Sequence[tuple[TrainSample, Variant]],
    pooled: PooledFn,
    cache: FeatureCache,
    channels: Sequence[int],
    cfg: DataConfig,
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> FeatureTable:
    """Pooled trunk features of every (sample, variant), from the cache or computed and stored.

    Args:
        pairs: the (sample, variant) pairs; row ``r`` of the result is ``pairs[r]``.
        pooled: picture batch (1, 3, H, W) -> list of (1, 34, C) pooled maps, i.e.
            ``lambda x: teacher.pool(trunk(x))``.
        cache: where entries live.
        channels: C of each map (to size the table).
        cfg: data config (passed to :func:`load_variant`).
        workers: DataLoader processes decoding pictures while the trunk runs (0: in process).
        on_progress: called with (rows done, rows computed rather than read from the cache).

    Returns:
        The stacked :class:`FeatureTable`. Undecodable images are logged and marked invalid.

    Raises:
        AnnotationError: a GT file is malformed (labels are never silently dropped).
    """
    n = len(pairs)
    feats = [torch.zeros(n, NUM_REGIONS, c, dtype=torch.float16) for c in channels]
    labels = torch.zeros(n, NUM_REGIONS)
    mask = torch.zeros(n, NUM_REGIONS, dtype=torch.bool)
    is_text = torch.zeros(n)
    valid = torch.zeros(n, dtype=torch.bool)
    keys = [cache.key(s, v) for s, v in pairs]

    def fill(row: int, arrays: dict[str, np.ndarray]) -> None:
        for j in range(len(channels)):
            feats[j][row] = torch.from_numpy(arrays[f"f{j}"])
        labels[row] = torch.from_numpy(arrays["labels"].astype(np.float32))
        mask[row] = torch.from_numpy(arrays["mask"])
        is_text[row] = float(arrays["is_text"])
        valid[row] = True

    missing = []
    for row, key in enumerate(keys):
        hit = cache.get(key)
        if hit is not None and all(f"f{j}" in hit for j in range(len(channels))):
            fill(row, hit)
        else:
            missing.append((row, *pairs[row]))
    done = n - len(missing)
    if on_progress:
        on_progress(done, 0)
    log.info("feature cache: %d of %d entries present, computing %d", done, n, len(missing))
    if not missing:
        return FeatureTable(feats, labels, mask, is_text, valid)
    loader = DataLoader(
        _Loader(missing, cfg), batch_size=None, shuffle=False, num_workers=workers,
        worker_init_fn=single_thread_worker if workers else None,
        prefetch_factor=8 if workers else None,
    )
    computed = 0
    for row, item in loader:
        if isinstance(item, AnnotationError):
            raise item
        if isinstance(item, DecodeError):
            log.warning("skipped: %s", item)
        else:
            with torch.no_grad():
                maps = pooled(item.image.unsqueeze(0))
            arrays = {f"f{j}": m[0].float().cpu().numpy().astype(np.float16)
                      for j, m in enumerate(maps)}
            arrays.update(labels=item.labels.numpy().astype(np.uint8), mask=item.mask.numpy(),
                          is_text=np.asarray(item.is_text))
            cache.put(keys[row], arrays)
            fill(row, arrays)
        computed += 1
        if on_progress:
            on_progress(done + computed, computed)
    return FeatureTable(feats, labels, mask, is_text, valid)
