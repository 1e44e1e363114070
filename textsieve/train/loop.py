"""Training utilities shared by the teacher trainer and the distillation stages.

- :func:`seed_everything` and :func:`set_threads`: deterministic, bounded runs.
- :class:`PlateauLR`: the paper's schedule, "when the train loss stops improving, the learning
  rate is reduced to 1/10" (Zhao et al. 2019, IV-B), with plain-typed state for checkpoints.
- :class:`RunDir`: one output directory per run. It writes the resolved ``config.yaml`` once,
  appends one JSON line per epoch to ``metrics.jsonl``, and saves ``epoch-NNN.pt``, ``last.pt``
  and (when the validation score improves) ``best.pt`` through
  :func:`textsieve.checkpoint.save_checkpoint`. Every file loads with
  ``torch.load(path, weights_only=True)`` and holds model, optimizer, scheduler, epoch, config,
  metrics and the best score so far, so :meth:`RunDir.resume` continues a run exactly.
- :func:`image_scores`: image P/R/F at a threshold, best F, AUC and region F for validation.
- :class:`TrainEvent`: the progress report both trainers send to ``on_progress``.

Typical use (see ``textsieve.train.teacher.fit_teacher``)::

    run = RunDir(out_dir, stage="teacher", monitor="image_f1")
    run.write_config(cfg)
    start = run.resume(model, optimizer, scheduler) + 1 if resume else 1
    for epoch in range(start, cfg.epochs + 1):
        ...train..., metrics = {"train_loss": ..., **image_scores(...)}
        scheduler.step(metrics["train_loss"])
        run.end_epoch(epoch, model, optimizer, scheduler, cfg, metrics)
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textsieve.checkpoint import read_checkpoint, save_checkpoint
from textsieve.config import dump_config, to_dict
from textsieve.errors import CheckpointError
from textsieve.metrics import best_f_threshold, jsonable, prf_at, region_prf, roc_auc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainEvent:
    """Progress report of a training run.

    ``stage`` names the phase: ``features`` (trunk feature caching) or ``train`` for
    ``train-teacher``; ``targets`` (teacher outputs), ``stage1`` or ``stage2`` for ``distill``.
    ``epoch`` is 0 outside the epochs; ``loss`` and ``images_per_s`` are NaN when not known.
    """

    stage: str
    epoch: int
    done: int
    total: int
    loss: float = math.nan
    images_per_s: float = math.nan


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    # cuDNN autotuning picks kernels by timing, which makes runs differ.
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def set_threads(threads: int) -> None:
    """Set torch's intra-op threads (0 keeps torch's default).

    On a small shared CPU, more threads than free cores makes every op much slower, so training
    commands expose this setting.
    """
    if threads > 0:
        torch.set_num_threads(threads)


class PlateauLR:
    """Divide the learning rate by ``1 / factor`` when the training loss stops improving.

    The loss "improves" when it falls below ``best * (1 - threshold)``; after ``patience``
    epochs without improvement the rate of every parameter group is multiplied by ``factor``
    (not below ``min_lr``) and the count restarts.

    Args:
        optimizer: the optimizer whose learning rates are changed.
        factor: multiplier (paper: 0.1).
        patience: epochs without improvement that trigger a reduction.
        threshold: relative improvement that counts.
        min_lr: floor of the learning rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float = 0.1, patience: int = 2,
                 threshold: float = 1e-3, min_lr: float = 0.0) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.optimizer = optimizer
        self.factor, self.patience = factor, patience
        self.threshold, self.min_lr = threshold, min_lr
        self.best = math.inf
        self.bad_epochs = 0
        self.reductions = 0

    def step(self, loss: float) -> bool:
        """Record one epoch's training loss; returns True when the rate was just reduced."""
        if loss < self.best * (1.0 - self.threshold):
            self.best, self.bad_epochs = loss, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs < self.patience:
            return False
        self.bad_epochs = 0
        self.reductions += 1
        for group in self.optimizer.param_groups:
            group["lr"] = max(group["lr"] * self.factor, self.min_lr)
        log.info("training loss stopped improving: learning rate -> %.3g", self.lr)
        return True

    @property
    def lr(self) -> float:
        """Current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "reductions": self.reductions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.reductions = int(state.get("reductions", 0))


@dataclass
class EpochRecord:
    """What :meth:`RunDir.end_epoch` did."""

    epoch: int
    path: Path
    is_best: bool
    best_score: float


class RunDir:
    """Output directory of one training stage: config, metrics log and checkpoints.

    Args:
        out_dir: the directory (created).
        stage: name stored in checkpoints (``teacher``, ``distill1``, ...).
        monitor: metric key that selects ``best.pt``.
        mode: ``max`` (higher is better, e.g. image F) or ``min`` (e.g. training loss).
        keep_epochs: also keep ``epoch-NNN.pt`` for every epoch (``last.pt`` and ``best.pt``
            are always written).
    """

    def __init__(self, out_dir: Path, stage: str, monitor: str = "image_f1", mode: str = "max",
                 keep_epochs: bool = True) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stage, self.monitor, self.keep_epochs = stage, monitor, keep_epochs
        self.sign = 1.0 if mode == "max" else -1.0
        self.resumed_config: dict[str, Any] | None = None
        self.best_score = -math.inf * self.sign
        self.best_epoch = 0

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.dir / "best.pt"

    def write_config(self, cfg: Any) -> Path:
        """Write the resolved config as ``config.yaml`` (every run is reproducible from it)."""
        path = self.dir / "config.yaml"
        dump_config(cfg, path)
        return path

    def resume(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
               scheduler: PlateauLR | None = None) -> int:
        """Load ``last.pt`` into model, optimizer and scheduler; returns its epoch.

        Raises:
            CheckpointError: when there is no ``last.pt`` or it belongs to another stage.
        """
        if not self.last.is_file():
            raise CheckpointError(f"nothing to resume: {self.last} does not exist")
        ckpt = read_checkpoint(self.last)
        if ckpt.get("stage") != self.stage:
            raise CheckpointError(f"{self.last} is stage {ckpt.get('stage')!r}, not {self.stage!r}")
        try:
            model.load_state_dict(ckpt["model"])
            if optimizer is not None and "optimizer" in ckpt:
                optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{self.last} does not fit this run: {str(e)[:300]}") from None
        if scheduler is not None and "scheduler" in ckpt:
            scheduler.load_state_dict(ckpt["scheduler"])
        self.resumed_config = ckpt.get("config")
        self.best_score = float(ckpt.get("best_score", -math.inf * self.sign))
        self.best_epoch = int(ckpt.get("best_epoch", 0))
        log.info("resumed %s at epoch %d (best %s %.4f at epoch %d)", self.last, ckpt["epoch"],
                 self.monitor, self.best_score, self.best_epoch)
        return int(ckpt["epoch"])

    def end_epoch(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler: PlateauLR | None, cfg: Any, metrics: dict[str, Any],
                  **extra: Any) -> EpochRecord:
        """Log the epoch's metrics and save its checkpoints.

        Args:
            epoch: 1-based epoch just finished.
            model: the network.
            optimizer: its optimizer (state saved for resuming).
            scheduler: the plateau schedule, if any.
            cfg: the run's config dataclass.
            metrics: plain numbers; ``metrics[monitor]`` selects the best checkpoint.
            **extra: further plain-typed checkpoint entries.

        Returns:
            An :class:`EpochRecord`.
        """
        score = metrics.get(self.monitor)
        is_best = (score is not None and not math.isnan(score)
                   and self.sign * score > self.sign * self.best_score)
        if is_best:
            self.best_score, self.best_epoch = float(score), epoch
        metrics = jsonable(metrics)
        payload = dict(
            stage=self.stage, epoch=epoch, config=to_dict(cfg), metrics=metrics,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict() if scheduler is not None else None,
            best_score=self.best_score, best_epoch=self.best_epoch, monitor=self.monitor, **extra,
        )
        path = self.dir / f"epoch-{epoch:03d}.pt" if self.keep_epochs else self.last
        save_checkpoint(path, model, **payload)
        if path != self.last:
            save_checkpoint(self.last, model, **payload)
        if is_best:
            save_checkpoint(self.best, model, **payload)
        with open(self.dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"epoch": epoch, **metrics, "best": is_best}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return EpochRecord(epoch, path, is_best, self.best_score)


def image_scores(
    is_text: np.ndarray, region_probs: np.ndarray, region_labels: np.ndarray,
    region_mask: np.ndarray, threshold: float = 0.5,
) -> dict[str, float]:
    """Validation scores: image P/R/F at ``threshold``, best F, AUC, region P/R/F.

    Args:
        is_text: (N,) image labels.
        region_probs: (N, 34) region probabilities; the image score is their max.
        region_labels: (N, 34) region labels.
        region_mask: (N, 34) bool; region scores use images whose labels are all known.
        threshold: decision threshold.

    Returns:
        ``image_precision``, ``image_recall``, ``image_f1``, ``image_best_f1``,
        ``image_best_threshold``, ``image_auc``, ``region_precision``, ``region_recall``,
        ``region_f1`` (nan where undefined).
    """
    scores = region_probs.max(axis=1)
    at = prf_at(is_text, scores, threshold)
    best = best_f_threshold(is_text, scores)
    full = region_mask.all(axis=1)
    reg = region_prf(region_labels[full], region_probs[full], threshold)
    return {
        "image_precision": at.precision, "image_recall": at.recall, "image_f1": at.f1,
        "image_best_f1": best.f1 if best else math.nan,
        "image_best_threshold": best.threshold if best else math.nan,
        "image_auc": roc_auc(is_text, scores),
        "region_precision": reg.precision, "region_recall": reg.recall, "region_f1": reg.f1,
    }
