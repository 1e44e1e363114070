"""``textsieve train-teacher``: train the teacher's region classifier (Zhao et al. 2019, III-A).

Two backbones (``teacher.backbone``):

- ``vgg16``: the paper's teacher, trained end to end on pictures (optionally initialised from a
  local ImageNet VGG16 state dict, ``init``). Practical on a GPU.
- ``ppocr``: the frozen PP-OCRv4 text-detection trunk (:mod:`textsieve.models.ppocr`). Only the
  head trains. Because the trunk never changes, its pooled region features are computed once per
  (image, augmentation variant) and cached on disk (:mod:`textsieve.features`); each epoch then
  runs the small head on cached features only, which is where the speed comes from.

Both use the region BCE (:mod:`textsieve.losses.region`), deterministic augmentation variants
(:mod:`textsieve.data`), the paper's plateau schedule and per-epoch checkpoints
(:mod:`textsieve.train.loop`), and validate on a held-out root each epoch (``best.pt`` = best
validation image F).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from textsieve.config import TeacherConfig, to_dict
from textsieve.data import (
    BucketBatchSampler,
    DataConfig,
    TrainSample,
    Variant,
    VariantDataset,
    build_samples,
    collate_items,
    epoch_variants,
    make_variants,
    sample_size,
    single_thread_worker,
)
from textsieve.errors import ConfigError
from textsieve.features import (
    FeatureCache,
    FeatureTable,
    PooledFn,
    cache_features,
    default_cache_dir,
    prep_identity,
)
from textsieve.losses.region import region_bce
from textsieve.models import TeacherNet
from textsieve.train.loop import (
    PlateauLR,
    RunDir,
    TrainEvent,
    image_scores,
    seed_everything,
    set_threads,
)

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """Teacher training. Defaults are the paper's (IV-B): SGD, batch 1, lr 1e-4, short edge 256,
    flip + rotation augmentation, lr / 10 when the training loss stops improving.

    Attributes:
        data_roots: TextDis-layout training roots.
        val_root: held-out TextDis root evaluated after every epoch (None: no validation, and
            ``best.pt`` is the epoch with the lowest training loss).
        out_dir: run directory (checkpoints, ``config.yaml``, ``metrics.jsonl``).
        cache_dir: feature cache of the ppocr trunk (None: ``~/.cache/textsieve/features``).
        init: local ImageNet VGG16 state dict (vgg16 only).
        device: ``cpu`` or ``cuda``.
        threads: torch (and onnxruntime) intra-op threads; 0 keeps the default.
        workers: processes decoding pictures in the background (0: none).
        seed: seed of initialisation, order and augmentation choice.
        epochs: epochs to train (a resumed run continues up to this number).
        batch_size: pictures per step.
        optimizer: ``sgd`` (paper) or ``adamw``.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        plateau_patience: epochs without training-loss improvement before lr / 10.
        plateau_factor: the lr multiplier (paper: 0.1).
        plateau_threshold: relative loss improvement that counts as improving.
        min_lr: floor of the schedule.
        pos_weight: weight of positive regions in the BCE.
        image_weight: weight of the image-level BCE of text pictures without region labels.
        all_image_weight: weight of the image-level BCE (max region logit) added for every
            picture; 0 is the paper's region-only loss.
        threshold: decision threshold of the validation P/R/F.
        keep_epochs: keep ``epoch-NNN.pt`` for every epoch (``last.pt``, ``best.pt`` always).
        data: pictures, augmentation variants, label rule.
        teacher: the network.
    """

    data_roots: tuple[str, ...] = ()
    val_root: str | None = None
    out_dir: str = "runs/teacher"
    cache_dir: str | None = None
    init: str | None = None
    device: str = "cpu"
    threads: int = 0
    workers: int = 1
    seed: int = 0
    epochs: int = 30
    batch_size: int = 1
    optimizer: str = "sgd"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    plateau_patience: int = 2
    plateau_factor: float = 0.1
    plateau_threshold: float = 1e-3
    min_lr: float = 0.0
    pos_weight: float = 1.0
    image_weight: float = 1.0
    all_image_weight: float = 0.0
    threshold: float = 0.5
    keep_epochs: bool = True
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()

    @property
    def backbone(self) -> str:
        return self.teacher.backbone

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.teacher.backbone not in ("vgg16", "ppocr"):
            raise ConfigError(f"teacher.backbone must be vgg16 or ppocr, got {self.backbone!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs and batch_size must be >= 1 and lr > 0")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        if self.init is not None and self.teacher.backbone != "vgg16":
            raise ConfigError("init (ImageNet weights) applies to the vgg16 backbone only")


@dataclass
class TeacherResult:
    """What a training run produced."""

    out_dir: Path
    best_path: Path
    last_path: Path
    best_epoch: int
    best_score: float
    monitor: str
    history: list[dict[str, Any]] = field(default_factory=list)
    feature_seconds: float = 0.0
    train_seconds: float = 0.0


Progress = Callable[[TrainEvent], None] | None
# One optimisation step: (logits, labels, mask, is_text) -> loss value.
StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], float]


def _optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class _CachedEngine:
    """ppocr: the frozen trunk's pooled features are cached; epochs train the head on them."""

    def __init__(self, cfg: TrainConfig, model: TeacherNet, train: list[TrainSample],
                 val: list[TrainSample], on_progress: Progress) -> None:
        from textsieve.models.ppocr import attach_trunk

        self.cfg, self.model, self.notify = cfg, model, on_progress
        trunk = attach_trunk(model, threads=cfg.threads)
        cache = FeatureCache(Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir(),
                             trunk.identity, prep_identity(cfg.data, cfg.teacher.pool))
        self.k = cfg.data.variants
        variants = make_variants(self.k, cfg.data.degrees)

        def pooled(x: torch.Tensor) -> list[torch.Tensor]:
            return model.pool(trunk(x))

        t0 = time.perf_counter()
        # Validation first, then variant-major (row = variant * N + sample): an interrupted
        # caching run has already stored whole passes over the data, not a few pictures' variants.
        self.val = self._cache([(s, variants[0]) for s in val], pooled, cache) if val else None
        self.train = self._cache([(s, v) for v in variants for s in train], pooled, cache)
        self.feature_seconds = time.perf_counter() - t0
        self.n = len(train)

    def _cache(self, pairs: list[tuple[TrainSample, Variant]], pooled: PooledFn,
               cache: FeatureCache) -> FeatureTable:
        def report(done: int, computed: int) -> None:
            if self.notify:
                self.notify(TrainEvent("features", 0, done, len(pairs)))

        return cache_features(pairs, pooled, cache, self.model.channels, self.cfg.data,
                              workers=self.cfg.workers, on_progress=report)

    def train_epoch(self, epoch: int, step: StepFn) -> Iterator[tuple[float, int, int]]:
        cfg, t = self.cfg, self.train
        rows = epoch_variants(cfg.seed, epoch, self.n, self.k) * self.n + np.arange(self.n)
        rows = rows[t.valid.numpy()[rows]]
        rows = rows[np.random.default_rng([cfg.seed, epoch, 0x0DE2]).permutation(len(rows))]
        batches = [rows[i:i + cfg.batch_size] for i in range(0, len(rows), cfg.batch_size)]
        total, seen = 0.0, 0
        for b in batches:
            idx = torch.from_numpy(b)
            feats = [f[idx].float().to(cfg.device) for f in t.feats]
            loss = step(self.model.forward_head(feats).logits, t.labels[idx], t.mask[idx],
                        t.is_text[idx])
            total += loss * len(b)
            seen += len(b)
            yield total / seen, seen, len(rows)

    @torch.no_grad()
    def predict_val(self) -> tuple[np.ndarray, ...]:
        v = self.val
        keep = torch.nonzero(v.valid).flatten()
        probs = []
        for i in range(0, len(keep), 512):
            idx = keep[i:i + 512]
            feats = [f[idx].float().to(self.cfg.device) for f in v.feats]
            probs.append(torch.sigmoid(self.model.forward_head(feats).logits).cpu())
        return (v.is_text[keep].numpy(), torch.cat(probs).numpy(), v.labels[keep].numpy(),
                v.mask[keep].numpy())


class _ImageEngine:
    """vgg16: end to end on pictures, batches of equal size from a bucketed sampler."""

    def __init__(self, cfg: TrainConfig, model: TeacherNet, train: list[TrainSample],
                 val: list[TrainSample], on_progress: Progress) -> None:
        self.cfg, self.model = cfg, model
        self.ds = VariantDataset(train, cfg.data, seed=cfg.seed)
        self.sampler = BucketBatchSampler([sample_size(s, cfg.data) for s in train],
                                          cfg.batch_size, seed=cfg.seed)
        kw: dict[str, Any] = dict(collate_fn=collate_items, num_workers=cfg.workers)
        if cfg.workers:
            kw["worker_init_fn"] = single_thread_worker
        self.loader = DataLoader(self.ds, batch_sampler=self.sampler, **kw)
        self.val_loader = None
        if val:
            vds = VariantDataset(val, cfg.data, seed=cfg.seed, augment=False)
            vs = BucketBatchSampler([sample_size(s, cfg.data) for s in val], cfg.batch_size,
                                    shuffle=False)
            self.val_loader = DataLoader(vds, batch_sampler=vs, **kw)
        self.feature_seconds = 0.0

    def train_epoch(self, epoch: int, step: StepFn) -> Iterator[tuple[float, int, int]]:
        self.ds.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        total, seen, n = 0.0, 0, len(self.ds)
        for batch in self.loader:
            if batch is None:
                continue
            images = batch.images.to(self.cfg.device)
            loss = step(self.model(images).logits, batch.labels, batch.mask, batch.is_text)
            total += loss * len(images)
            seen += len(images)
            yield total / seen, seen, n

    @torch.no_grad()
    def predict_val(self) -> tuple[np.ndarray, ...]:
        out: list[list[np.ndarray]] = [[], [], [], []]
        for batch in self.val_loader:
            if batch is None:
                continue
            probs = torch.sigmoid(self.model(batch.images.to(self.cfg.device)).logits).cpu()
            for lst, v in zip(out, (batch.is_text, probs, batch.labels, batch.mask), strict=True):
                lst.append(v.numpy())
        return tuple(np.concatenate(x) for x in out)


def fit_teacher(cfg: TrainConfig, on_progress: Progress = None, resume: bool = False
                ) -> TeacherResult:
    """Train the teacher; checkpoints, ``config.yaml`` and ``metrics.jsonl`` go to ``out_dir``.

    Args:
        cfg: the resolved training config.
        on_progress: called with :class:`TrainEvent` s (feature caching, training steps).
        resume: continue from ``out_dir/last.pt`` (model, optimizer, schedule, epoch, best).

    Returns:
        A :class:`TeacherResult` (best/last checkpoint paths, per-epoch history, timings).

    Raises:
        ConfigError: inconsistent settings (no training root, init for ppocr...).
        TextsieveError: unreadable roots, malformed GT, missing ``[ocr]`` extra, bad resume.
    """
    if not cfg.data_roots:
        raise ConfigError("no training data: give at least one --data ROOT")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but torch sees no CUDA device")
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    train = build_samples(cfg.data_roots, cfg.data)
    val_cfg = dataclasses.replace(cfg.data, nontext_crops=False)
    val = build_samples([cfg.val_root], val_cfg) if cfg.val_root else []
    log.info("%d training pictures (%d text), %d validation", len(train),
             sum(s.is_text for s in train), len(val))

    model = TeacherNet(cfg.teacher)
    if cfg.init is not None:
        model.trunk.load_imagenet(Path(cfg.init))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(cfg, params)
    scheduler = PlateauLR(optimizer, cfg.plateau_factor, cfg.plateau_patience,
                          cfg.plateau_threshold, cfg.min_lr)
    monitor, mode = ("image_f1", "max") if val else ("train_loss", "min")
    run = RunDir(Path(cfg.out_dir), "teacher", monitor=monitor, mode=mode,
                 keep_epochs=cfg.keep_epochs)
    start = 1
    if resume:
        start = run.resume(model, optimizer, scheduler) + 1
        _warn_changes(run.resumed_config, to_dict(cfg))
    model.to(cfg.device)
    _optimizer_to(optimizer, cfg.device)
    run.write_config(cfg)

    engine_cls = _CachedEngine if cfg.backbone == "ppocr" else _ImageEngine
    engine = engine_cls(cfg, model, train, val, on_progress)
    history: list[dict[str, Any]] = []
    t_train = time.perf_counter()

    def step(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
             is_text: torch.Tensor) -> float:
        d = cfg.device
        loss = region_bce(logits, labels.to(d), mask.to(d), is_text.to(d), cfg.pos_weight,
                          cfg.image_weight, cfg.all_image_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    for epoch in range(start, cfg.epochs + 1):
        model.train()
        t0, loss, seen, lr = time.perf_counter(), math.nan, 0, scheduler.lr
        for loss, seen, total in engine.train_epoch(epoch, step):
            if on_progress:
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                on_progress(TrainEvent("train", epoch, seen, total, loss, rate))
        seconds = time.perf_counter() - t0
        metrics: dict[str, Any] = {"train_loss": loss, "lr": lr, "images": seen,
                                   "images_per_s": seen / max(seconds, 1e-9),
                                   "epoch_seconds": seconds}
        if val:
            model.eval()
            metrics.update(image_scores(*engine.predict_val(), threshold=cfg.threshold))
        scheduler.step(loss)
        rec = run.end_epoch(epoch, model, optimizer, scheduler, cfg, metrics)
        history.append({"epoch": epoch, **metrics, "best": rec.is_best})
        log.info("epoch %d: loss %.4f%s", epoch, loss,
                 f", dev image F {metrics['image_f1']:.4f}" if val else "")
    return TeacherResult(run.dir, run.best, run.last, run.best_epoch, run.best_score, monitor,
                         history, engine.feature_seconds,
                         time.perf_counter() - t_train)


def _optimizer_to(optimizer: torch.optim.Optimizer, device: str) -> None:
    """Move a resumed optimizer's state tensors to ``device``."""
    for state in optimizer.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                state[k] = v.to(device)


# Settings a resumed run may change without changing what it trains.
_RUN_ONLY = {"epochs", "out_dir", "cache_dir", "device", "threads", "workers", "keep_epochs"}


def _warn_changes(saved: dict[str, Any] | None, now: dict[str, Any]) -> None:
    """Log the settings that differ from the checkpoint being resumed (they apply from now)."""
    if not saved:
        return
    changed = sorted(k for k in now if k not in _RUN_ONLY and saved.get(k) != now[k])
    if changed:
        log.warning("resuming with changed settings: %s", ", ".join(changed))
