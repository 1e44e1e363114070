"""Files of a staged training run: ``stageS-epoch-NNN.pt``, ``stageS.pt`` and ``metrics.jsonl``.

Every checkpoint is written atomically by :func:`textsieve.checkpoint.save_checkpoint` with plain
types only (``torch.load(..., weights_only=True)`` reads it); ``metrics.jsonl`` gets one line per
epoch, flushed and synced, so that a killed run loses at most the epoch in progress.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from torch import nn

from textsieve.checkpoint import read_checkpoint, save_checkpoint
from textsieve.errors import CheckpointError
from textsieve.metrics import jsonable


class StageFiles:
    """Checkpoints and metrics log of a run with numbered stages, in one directory.

    Args:
        out: the run directory (created).
        meta: plain-typed entries written into every checkpoint (mode, config, teacher...).
    """

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.meta = meta

    def path(self, stage: int, epoch: int | None = None) -> Path:
        """``stageS-epoch-NNN.pt``, or ``stageS.pt`` (the finished stage) without ``epoch``."""
        name = f"stage{stage}.pt" if epoch is None else f"stage{stage}-epoch-{epoch:03d}.pt"
        return self.out / name

    def latest_epoch(self, stage: int) -> int:
        """The last saved epoch of ``stage`` (0 when none)."""
        pat = re.compile(rf"stage{stage}-epoch-(\d+)\.pt$")
        found = [int(m.group(1)) for p in self.out.glob(f"stage{stage}-epoch-*.pt")
                 if (m := pat.match(p.name))]
        return max(found, default=0)

    def existing(self, stages: tuple[int, ...]) -> list[str]:
        """Names of checkpoint files of ``stages`` already in the directory."""
        return sorted(p.name for s in stages for p in self.out.glob(f"stage{s}*.pt"))

    def save(self, path: Path, model: nn.Module, stage: int, epoch: int, **extra: Any) -> None:
        """Write a checkpoint of ``model`` with the run's metadata and ``extra`` entries."""
        save_checkpoint(path, model, stage=f"distill{stage}", epoch=epoch, **self.meta, **extra)

    def log(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Append one JSON line (nan -> null) to ``metrics.jsonl``; returns what was written."""
        metrics = jsonable(metrics)
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(metrics) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return metrics

    @staticmethod
    def load(path: Path, model: nn.Module, **parts: Any) -> dict[str, Any]:
        """Load a checkpoint into ``model`` and into ``parts`` (entry name -> object with
        ``load_state_dict``; None objects and missing entries are skipped).

        Raises:
            CheckpointError: unreadable file, or weights/state that do not fit.
        """
        ckpt = read_checkpoint(path)
        try:
            model.load_state_dict(ckpt["model"])
            for name, obj in parts.items():
                if obj is not None and ckpt.get(name) is not None:
                    obj.load_state_dict(ckpt[name])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path} does not fit this run: {str(e)[:300]}") from None
        return ckpt
