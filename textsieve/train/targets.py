"""Cached outputs of a frozen teacher, one row per (training picture, augmentation variant).

Distillation asks the teacher the same question over and over: its region logits (34,) and its
mapped region features (34, D), before the ReLU, for picture ``i`` in variant ``v``. The teacher
never changes during distillation, so the answers are computed once, stored in one file under
``<cache_dir>/distill/`` and reused by every epoch and by every run that uses the same teacher,
pictures and preprocessing (the four Table II modes, a resumed run). Row ``i * K + v`` holds
picture ``i`` in variant ``v``, matching :func:`textsieve.data.epoch_variants`.

How the rows are computed:

- ``ppocr`` teacher: its trunk is frozen too, so the pooled trunk features come from the shared
  trunk feature cache (:mod:`textsieve.features`, the one ``train-teacher`` fills); only the
  small head runs here. A warm trunk cache makes the table a matter of seconds.
- any other network (``vgg16`` teacher, or a student used as teacher): the full forward pass on
  each picture from :func:`textsieve.data.load_variant`.

The file name hashes the teacher checkpoint's bytes, every picture's path/size/mtime/crop, the
variants and the preprocessing, so a changed teacher or data set never reuses stale targets.
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

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from textsieve.config import to_dict
from textsieve.data import DataConfig, Item, TrainSample, Variant, load_variant
from textsieve.errors import AnnotationError, CheckpointError, DecodeError
from textsieve.output import file_digest
from textsieve.regions import NUM_REGIONS

log = logging.getLogger(__name__)

TABLE_VERSION = 1


@dataclass
class TeacherTable:
    """Teacher outputs per (picture, variant); row ``i * variants + v``.

    Attributes:
        logits: (R, 34) float32 region logits.
        feats: (R, 34, D) float16 mapped region features before the ReLU.
        valid: (R,) bool, False where the picture could not be decoded.
        variants: K, the number of variants per picture.
    """

    logits: torch.Tensor
    feats: torch.Tensor
    valid: torch.Tensor
    variants: int

    def rows(self, index: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """Row numbers of pictures ``index`` in variants ``choice``."""
        return index * self.variants + choice


def table_key(teacher_id: str, samples: Sequence[TrainSample], variants: Sequence[Variant],
              data: DataConfig) -> str:
    """Hash of everything the table depends on."""
    h = hashlib.sha256()
    h.update(json.dumps([TABLE_VERSION, teacher_id, to_dict(data),
                         [[v.flip, v.angle] for v in variants]]).encode())
    for s in samples:
        st = s.path.stat()
        h.update(json.dumps([str(s.path.resolve()), st.st_size, st.st_mtime_ns, s.crop,
                             s.is_text]).encode())
    return h.hexdigest()


def _save(path: Path, table: TeacherTable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"logits": table.logits, "feats": table.feats, "valid": table.valid,
                    "variants": table.variants}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path, rows: int) -> TeacherTable | None:
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        table = TeacherTable(d["logits"], d["feats"], d["valid"], int(d["variants"]))
    except (OSError, RuntimeError, ValueError, EOFError, KeyError, TypeError) as e:
        log.warning("teacher table %s unreadable (%s); recomputing", path, e)
        return None
    if len(table.valid) != rows:
        log.warning("teacher table %s has %d rows, expected %d; recomputing", path,
                    len(table.valid), rows)
        return None
    return table


class _Pairs(Dataset):
    """(picture, variant) pairs -> (row, Item or the error), decoded in a DataLoader worker."""

    def __init__(self, pairs: list[tuple[TrainSample, Variant]], cfg: DataConfig) -> None:
        self.pairs, self.cfg = pairs, cfg

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, r: int) -> tuple[int, Item | DecodeError | AnnotationError]:
        sample, variant = self.pairs[r]
        try:
            return r, load_variant(sample, variant, self.cfg)
        except DecodeError as e:
            return r, DecodeError(f"{sample.path}: {e}", e.kind)
        except AnnotationError as e:  # raised again in the main process
            return r, e


def _single_thread(_: int) -> None:
    torch.set_num_threads(1)


@torch.no_grad()
def _from_pictures(teacher: nn.Module, pairs: list[tuple[TrainSample, Variant]], dim: int,
                   cfg: DataConfig, workers: int, device: str,
                   on_progress: Callable[[int, int], None] | None) -> tuple[torch.Tensor, ...]:
    n = len(pairs)
    logits = torch.zeros(n, NUM_REGIONS)
    feats = torch.zeros(n, NUM_REGIONS, dim, dtype=torch.float16)
    valid = torch.zeros(n, dtype=torch.bool)
    loader = DataLoader(_Pairs(pairs, cfg), batch_size=None, num_workers=workers,
                        worker_init_fn=_single_thread if workers else None)
    for done, (r, item) in enumerate(loader, 1):
        if isinstance(item, AnnotationError):
            raise item
        if isinstance(item, DecodeError):
            log.warning("skipped: %s", item)
        else:
            out = teacher(item.image.unsqueeze(0).to(device))
            logits[r], feats[r], valid[r] = out.logits[0].cpu(), out.feats[0].cpu().half(), True
        if on_progress:
            on_progress(done, n)
    return logits, feats, valid


@torch.no_grad()
def _from_trunk_cache(teacher: nn.Module, pairs: list[tuple[TrainSample, Variant]],
                      cfg: DataConfig, cache_dir: Path, workers: int, device: str,
                      on_progress: Callable[[int, int], None] | None) -> tuple[torch.Tensor, ...]:
    from textsieve.features import FeatureCache, cache_features, prep_identity

    trunk = teacher.trunk
    cache = FeatureCache(cache_dir, trunk.identity, prep_identity(cfg, teacher.cfg.pool))

    def pooled(x: torch.Tensor) -> list[torch.Tensor]:
        return teacher.pool(trunk(x))

    def report(done: int, computed: int) -> None:
        if on_progress:
            on_progress(done, len(pairs))

    ft = cache_features(pairs, pooled, cache, teacher.channels, cfg, workers=workers,
                        on_progress=report)
    logits, feats = [], []
    for i in range(0, len(ft), 1024):  # the head only: cheap, in chunks to bound memory
        out = teacher.forward_head([f[i:i + 1024].float().to(device) for f in ft.feats])
        logits.append(out.logits.cpu())
        feats.append(out.feats.cpu().half())
    return torch.cat(logits), torch.cat(feats), ft.valid.clone()


def teacher_table(
    teacher: nn.Module,
    teacher_path: Path,
    samples: Sequence[TrainSample],
    variants: Sequence[Variant],
    cfg: DataConfig,
    cache_dir: Path,
    workers: int = 1,
    device: str = "cpu",
    on_progress: Callable[[int, int], None] | None = None,
) -> TeacherTable:
    """Teacher outputs of every (picture, variant), from ``cache_dir`` or computed and stored.

    Args:
        teacher: the frozen teacher in eval mode (a ppocr teacher with its trunk attached).
        teacher_path: its checkpoint file (hashed into the cache key).
        samples: training pictures; row ``i * len(variants) + v``.
        variants: the augmentation variants (``make_variants(K, degrees)``).
        cfg: data config used by :func:`load_variant`.
        cache_dir: cache root; tables go to ``cache_dir/distill``, trunk features (ppocr) to
            ``cache_dir`` itself, shared with ``train-teacher``.
        workers: decoding processes (0: decode in this process).
        device: where the teacher runs.
        on_progress: called with (rows done, rows total) while computing.

    Returns:
        The :class:`TeacherTable`.

    Raises:
        CheckpointError: the teacher file cannot be read.
        AnnotationError: a GT file is malformed.
    """
    try:
        teacher_id = file_digest(Path(teacher_path))
    except OSError as e:
        raise CheckpointError(f"cannot read teacher {teacher_path}: {e.strerror or e}") from None
    key = table_key(teacher_id, samples, variants, cfg)
    path = Path(cache_dir) / "distill" / f"teacher-{key[:32]}.pt"
    rows = len(samples) * len(variants)
    if path.is_file():
        table = _load(path, rows)
        if table is not None:
            log.info("teacher outputs: %d rows from %s", rows, path)
            return table
    pairs = [(s, v) for s in samples for v in variants]  # row = i * K + v
    log.info("teacher outputs: computing %d rows (%d pictures x %d variants) -> %s", rows,
             len(samples), len(variants), path)
    if getattr(getattr(teacher, "cfg", None), "backbone", None) == "ppocr":
        logits, feats, valid = _from_trunk_cache(teacher, pairs, cfg, Path(cache_dir), workers,
                                                 device, on_progress)
    else:
        dim = int(teacher.cfg.dim)
        logits, feats, valid = _from_pictures(teacher, pairs, dim, cfg, workers, device,
                                              on_progress)
    table = TeacherTable(logits, feats, valid, len(variants))
    _save(path, table)
    return table
