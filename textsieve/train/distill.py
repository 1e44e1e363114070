"""``textsieve distill``: the student learns from a frozen teacher (Zhao et al. 2019, III-C/D).

Stage 1 (``stage1_boundary``): activation-boundary transfer (eq. 1) on the mapped region
features; only the student's feature path (its convs and ``head.map``) trains, lr 1e-5.
Stage 2 (``stage2_adversarial``): ``L = L_K + b L_G`` (eq. 2): soft-label BCE against the
teacher's region probabilities (eq. 3) and BEGAN adversarial feature distillation with an
autoencoder discriminator (eqs. 4-6). Student and discriminator are updated alternately, the
discriminator's lr is twice the student's, and both are divided by 10 when the training loss
stops improving.

``mode`` reproduces Table II: ``hard`` (region labels only, region BCE, no teacher), ``soft``
(L_K only), ``soft-adv`` (stage 2 without stage 1), ``full`` (stage 1, then stage 2).

Files in ``out_dir``: ``stage1-epoch-NNN.pt``, ``stage1.pt``, ``stage2-epoch-NNN.pt``,
``stage2.pt``, ``best.pt`` (best validation image F of stage 2), ``config.yaml`` and
``metrics.jsonl`` (one line per epoch: L_A or L_K, L_G, L_D, k_t, lr, validation scores). Every
checkpoint loads with ``weights_only=True`` and holds what a resumed run needs (optimizers,
schedule, discriminator, k_t). The teacher's outputs are cached (:mod:`textsieve.train.targets`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from textsieve.checkpoint import load_model
from textsieve.config import StudentConfig, dump_config, to_dict
from textsieve.data import DataConfig, make_variants
from textsieve.errors import ConfigError
from textsieve.features import default_cache_dir
from textsieve.losses.boundary import boundary_loss
from textsieve.metrics import jsonable
from textsieve.models import StudentNet
from textsieve.train.adversarial import Stage2Update, make_optimizer
from textsieve.train.loop import TrainEvent, image_scores, seed_everything, set_threads
from textsieve.train.rundata import RunData, TrainBatch
from textsieve.train.stagefiles import StageFiles
from textsieve.train.targets import TeacherTable, teacher_table

log = logging.getLogger(__name__)

MODES = ("full", "hard", "soft", "soft-adv")
MODE_STAGES: dict[str, tuple[int, ...]] = {"full": (1, 2), "hard": (2,), "soft": (2,),
                                           "soft-adv": (2,)}
OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class DistillConfig:
    """Distillation run. Defaults are the paper's (III-D, IV-B); see ``configs/distill.yaml``.

    Attributes:
        teacher: teacher checkpoint (not needed by ``hard``).
        data_roots: TextDis-layout training roots.
        val_root: held-out root scored after every stage-2 epoch (``best.pt``).
        out_dir: run directory.
        cache_dir: cache root (teacher outputs, ppocr trunk features); None: the default.
        mode: ``full``, ``hard``, ``soft`` or ``soft-adv`` (Table II).
        stages: stages to run now (subset of the mode's); empty: all of them.
        device: ``cpu`` or ``cuda``.
        threads: torch intra-op threads (0: torch's default).
        workers: picture-decoding processes (0: decode in the training process).
        keep_pictures: keep decoded training pictures in memory (uint8, per variant) after
            their first use: later epochs skip decoding (memory: ~300 kB per picture-variant).
        batching: ``bucket`` (equal-size batches, exact sizes) or ``mixed`` (batches across
            sizes, resized to their mean size; see ``rundata.MixedBatchSampler``).
        seed: seed of initialisation, batch order and variant choice.
        batch_size: pictures per step (paper: 1).
        epochs_stage1: epochs of activation-boundary pre-training.
        epochs_stage2: epochs of stage 2 (and of the single stage of the other modes).
        optimizer: ``sgd`` (paper) or ``adamw``.
        momentum: SGD momentum.
        weight_decay: L2 penalty of the student.
        lr_stage1: stage-1 learning rate (paper: 1e-5).
        lr_stage2: initial stage-2 learning rate (paper: 1e-4).
        disc_lr_ratio: discriminator lr / student lr (paper: 2).
        margin: the activation-boundary margin u.
        adv_weight: b, weight of L_G (paper: 0.2).
        gamma: BEGAN's diversity ratio, the paper's n (0.75).
        lambda_k: BEGAN's k learning rate, the paper's f_k (1e-3).
        k0: initial k_t (paper: 0).
        disc_hidden: hidden width of the autoencoder discriminator.
        disc_bottleneck: code size of the autoencoder discriminator.
        alpha: share of hard region labels mixed into the soft targets (0 = paper).
        pos_weight: positive-region weight of the region BCE (``hard``).
        image_weight: weight of the image-level BCE of pictures without region labels (``hard``).
        plateau_patience: epochs without training-loss improvement before lr / 10.
        plateau_factor: the lr multiplier (paper: 0.1).
        min_lr: floor of the schedule.
        threshold: decision threshold of the validation P/R/F (and the stored default).
        monitor: validation key selecting ``best.pt`` (higher is better).
        data: pictures, augmentation variants K, label rule.
        student: the student network (its ``dim`` must equal the teacher's).
    """

    teacher: str | None = None
    data_roots: tuple[str, ...] = ()
    val_root: str | None = None
    out_dir: str = "runs/distill"
    cache_dir: str | None = None
    mode: str = "full"
    stages: tuple[int, ...] = ()
    device: str = "cpu"
    threads: int = 0
    workers: int = 1
    keep_pictures: bool = False
    batching: str = "bucket"
    seed: int = 0
    batch_size: int = 1
    epochs_stage1: int = 5
    epochs_stage2: int = 30
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_stage1: float = 1e-5
    lr_stage2: float = 1e-4
    disc_lr_ratio: float = 2.0
    margin: float = 1.0
    adv_weight: float = 0.2
    gamma: float = 0.75
    lambda_k: float = 1e-3
    k0: float = 0.0
    disc_hidden: int = 128
    disc_bottleneck: int = 32
    alpha: float = 0.0
    pos_weight: float = 1.0
    image_weight: float = 1.0
    plateau_patience: int = 2
    plateau_factor: float = 0.1
    min_lr: float = 0.0
    threshold: float = 0.5
    monitor: str = "image_f1"
    data: DataConfig = DataConfig()
    student: StudentConfig = StudentConfig()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        extra = sorted(set(self.stages) - set(MODE_STAGES[self.mode]))
        if extra:
            raise ConfigError(f"mode {self.mode!r} has stages {MODE_STAGES[self.mode]}, "
                              f"not {extra} (stage 1 belongs to mode 'full')")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if min(self.epochs_stage1, self.epochs_stage2, self.batch_size) < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if min(self.lr_stage1, self.lr_stage2, self.disc_lr_ratio, self.margin) <= 0:
            raise ConfigError("learning rates, disc_lr_ratio and margin must be > 0")
        if not (0.0 <= self.k0 <= 1.0 and 0.0 <= self.alpha <= 1.0):
            raise ConfigError("k0 and alpha must be in [0, 1]")
        if min(self.adv_weight, self.gamma, self.lambda_k) < 0:
            raise ConfigError("adv_weight, gamma and lambda_k must be >= 0")
        if self.batching not in ("bucket", "mixed"):
            raise ConfigError(f"batching must be 'bucket' or 'mixed', got {self.batching!r}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")

    @property
    def run_stages(self) -> tuple[int, ...]:
        """The stages this run executes, in order."""
        return tuple(sorted(self.stages)) if self.stages else MODE_STAGES[self.mode]

    @property
    def adversarial(self) -> bool:
        """Whether stage 2 has the BEGAN term (``full`` and ``soft-adv`` with b > 0)."""
        return self.mode in ("full", "soft-adv") and self.adv_weight > 0


@dataclass
class DistillResult:
    """What a run produced."""

    out_dir: Path
    best_path: Path | None
    best_epoch: int
    best_score: float
    monitor: str
    history: list[dict[str, Any]] = field(default_factory=list)
    target_seconds: float = 0.0
    train_seconds: float = 0.0


Progress = Callable[[TrainEvent], None] | None


@dataclass
class Context:
    """What both stages share: config, student, data, teacher outputs, output files."""

    cfg: DistillConfig
    student: StudentNet
    data: RunData
    table: TeacherTable | None
    files: StageFiles
    on_progress: Progress
    history: list[dict[str, Any]] = field(default_factory=list)

    def teacher_rows(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher logits (B, 34) and features (B, 34, D) of the batch's (picture, variant)s."""
        if self.table is None:
            raise ConfigError(f"mode {self.cfg.mode!r} needs teacher outputs")
        rows = self.table.rows(batch.index, batch.variant)
        d = self.cfg.device
        return self.table.logits[rows].to(d), self.table.feats[rows].float().to(d)

    def end_epoch(self, stage: int, epoch: int, metrics: dict[str, Any], **state: Any) -> None:
        """Save ``stageS-epoch-NNN.pt`` and append the epoch to ``metrics.jsonl``."""
        metrics = self.files.log({"stage": stage, "epoch": epoch, **metrics})
        self.files.save(self.files.path(stage, epoch), self.student, stage, epoch,
                        metrics=metrics, **state)
        self.history.append(metrics)


def _feature_params(student: StudentNet) -> list[nn.Parameter]:
    """Stage 1 trains the feature path only: the convs and the map into the shared space."""
    return [*student.convs.parameters(), *student.head.map.parameters()]


def stage1_boundary(ctx: Context, resume: bool = False) -> None:
    """Stage 1: activation-boundary pre-training (eq. 1) of the student's feature path.

    Args:
        ctx: the run context (student trained in place).
        resume: continue from the last ``stage1-epoch-NNN.pt``.
    """
    cfg, student = ctx.cfg, ctx.student
    student.head.classifier.requires_grad_(False)
    opt = make_optimizer(cfg, _feature_params(student), cfg.lr_stage1, cfg.weight_decay)
    start = 1
    if resume and (last := ctx.files.latest_epoch(1)):
        StageFiles.load(ctx.files.path(1, last), student, optimizer=opt)
        start = last + 1
        log.info("stage 1: resumed after epoch %d", last)
    for epoch in range(start, cfg.epochs_stage1 + 1):
        student.train()
        t0, total, seen = time.perf_counter(), 0.0, 0
        for batch in ctx.data.epoch(epoch):
            _, feat_t = ctx.teacher_rows(batch)
            loss = boundary_loss(student(batch.images.to(cfg.device)).feats, feat_t, cfg.margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(batch.index), seen + len(batch.index)
            _report(ctx, 1, epoch, seen, total / seen, t0)
        secs = time.perf_counter() - t0
        metrics = {"l_a": total / max(seen, 1), "lr": opt.param_groups[0]["lr"], "images": seen,
                   "epoch_seconds": secs}
        ctx.end_epoch(1, epoch, metrics, optimizer=opt.state_dict())
        log.info("stage 1 epoch %d: L_A %.4f lr %.2g (%.0f s)", epoch, metrics["l_a"],
                 metrics["lr"], secs)
    student.head.classifier.requires_grad_(True)
    ctx.files.save(ctx.files.path(1), student, 1, cfg.epochs_stage1)


def _report(ctx: Context, stage: int, epoch: int, seen: int, loss: float, t0: float) -> None:
    if ctx.on_progress:
        rate = seen / max(time.perf_counter() - t0, 1e-9)
        ctx.on_progress(TrainEvent(f"stage{stage}", epoch, seen, ctx.data.train_size, loss,
                                     rate))


def stage2_adversarial(ctx: Context, resume: bool = False) -> tuple[int, float]:
    """Stage 2 (or the single stage of ``hard``/``soft``/``soft-adv``); saves ``best.pt``.

    Args:
        ctx: the run context (student trained in place).
        resume: continue from the last ``stage2-epoch-NNN.pt``.

    Returns:
        (best epoch, best score) by ``cfg.monitor`` (by -training loss without validation).
    """
    cfg = ctx.cfg
    s2 = Stage2Update(cfg, ctx.student, ctx.teacher_rows if ctx.table is not None else None)
    start, best_epoch, best = 1, 0, -math.inf
    if resume and (last := ctx.files.latest_epoch(2)):
        ckpt = StageFiles.load(ctx.files.path(2, last), ctx.student, **s2.parts())
        start, best_epoch = last + 1, int(ckpt.get("best_epoch", 0))
        best = float(ckpt.get("best_score", -math.inf))
        s2.set_disc_lr()
        log.info("stage 2: resumed after epoch %d (k_t %.4f)", last, s2.balance.k)
    elif 1 in MODE_STAGES[cfg.mode]:
        if not ctx.files.path(1).is_file():
            raise ConfigError(f"mode full: {ctx.files.path(1)} not found; run stage 1 first")
        StageFiles.load(ctx.files.path(1), ctx.student)
    for epoch in range(start, cfg.epochs_stage2 + 1):
        ctx.student.train()
        t0, sums, seen, lr = time.perf_counter(), {}, 0, s2.sched.lr
        for batch in ctx.data.epoch(epoch):
            n = len(batch.index)
            for key, v in s2.step(batch).items():
                sums[key] = sums.get(key, 0.0) + v * n
            seen += n
            _report(ctx, 2, epoch, seen, sums["loss"] / seen, t0)
        means = {k: v / max(seen, 1) for k, v in sums.items() if k != "k"}
        metrics: dict[str, Any] = {"train_loss": means.pop("loss", math.nan), **means, "lr": lr,
                                   "images": seen, "epoch_seconds": time.perf_counter() - t0}
        if s2.disc is not None:
            metrics["k_t"] = s2.balance.k  # k at the end of the epoch (it goes on from here)
        if ctx.data.has_val:
            ctx.student.eval()
            metrics.update(image_scores(*ctx.data.predict_val(ctx.student, cfg.device),
                                        threshold=cfg.threshold))
        score = metrics.get(cfg.monitor, math.nan) if ctx.data.has_val else -metrics["train_loss"]
        is_best = not math.isnan(score) and score > best
        if is_best:
            best, best_epoch = float(score), epoch
        s2.sched.step(metrics["train_loss"])
        s2.set_disc_lr()
        thresholds = {"default": cfg.threshold,
                      "val_best_f1": metrics.get("image_best_threshold", math.nan)}
        state = dict(s2.state(), best_score=best, best_epoch=best_epoch, monitor=cfg.monitor,
                     thresholds=jsonable(thresholds))
        ctx.end_epoch(2, epoch, {**metrics, "best": is_best}, **state)
        if is_best:
            ctx.files.save(ctx.files.out / "best.pt", ctx.student, 2, epoch,
                           metrics=jsonable(metrics), **state)
        log.info("stage 2 epoch %d: %s", epoch, epoch_line(metrics))
    ctx.files.save(ctx.files.path(2), ctx.student, 2, cfg.epochs_stage2, best_epoch=best_epoch,
                   best_score=best)
    return best_epoch, best


def epoch_line(m: dict[str, Any]) -> str:
    """One-line summary of a stage-2 epoch's metrics (losses, k_t, lr, validation)."""
    parts = [f"{name} {m[key]:.4f}" for key, name in
             (("train_loss", "loss"), ("l_k", "L_K"), ("l_g", "L_G"), ("l_d", "L_D"),
              ("l_hard", "L_hard"), ("k_t", "k_t")) if key in m and m[key] is not None]
    parts.append(f"lr {m['lr']:.2g}")
    for key, name in (("image_f1", "val F"), ("image_best_f1", "best F"),
                      ("region_f1", "region F")):
        if m.get(key) is not None and not math.isnan(m[key]):
            parts.append(f"{name} {m[key]:.4f}")
    return ", ".join(parts)


def distill(cfg: DistillConfig, on_progress: Progress = None, resume: bool = False
            ) -> DistillResult:
    """Run the stages of ``cfg.mode``; checkpoints, config and metrics go to ``cfg.out_dir``.

    Args:
        cfg: the resolved config.
        on_progress: called with :class:`~textsieve.train.loop.TrainEvent` s (stage ``targets``,
            ``stage1``, ``stage2``).
        resume: continue from the checkpoints in ``out_dir``.

    Returns:
        A :class:`DistillResult`.

    Raises:
        ConfigError: missing data or teacher, D mismatch, out_dir already used without resume.
        TextsieveError: unreadable teacher, malformed GT, missing ``[ocr]`` extra.
    """
    if not cfg.data_roots:
        raise ConfigError("no training data: give at least one --data ROOT")
    if cfg.mode != "hard" and not cfg.teacher:
        raise ConfigError(f"mode {cfg.mode!r} needs a --teacher checkpoint")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but torch sees no CUDA device")
    out = Path(cfg.out_dir)
    used = [p.name for s in cfg.run_stages for p in out.glob(f"stage{s}*.pt")]
    if used and not resume:
        raise ConfigError(f"{out} already holds {sorted(used)[0]}: pass --resume to continue, "
                          "or choose another --out")
    files = StageFiles(out, {"mode": cfg.mode, "config": to_dict(cfg), "teacher": cfg.teacher})
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    dump_config(cfg, out / "config.yaml")

    # The student is built first, so that its initialisation depends on the seed alone.
    student = StudentNet(cfg.student).to(cfg.device)
    teacher = None
    if cfg.mode != "hard":
        teacher, _ = load_model(Path(cfg.teacher), cfg.device)
        teacher.requires_grad_(False)
        dim = int(teacher.cfg.dim)
        if dim != cfg.student.dim:
            raise ConfigError(f"student dim {cfg.student.dim} != teacher dim {dim}: the mapped "
                              "features must live in the same space (set student.dim)")
    data = RunData(cfg.data_roots, cfg.val_root, cfg.data, cfg.batch_size, cfg.seed,
                   cfg.workers, cfg.keep_pictures, cfg.batching)

    t0 = time.perf_counter()
    table = None
    if teacher is not None:
        def report(done: int, total: int) -> None:
            if on_progress:
                on_progress(TrainEvent("targets", 0, done, total))

        variants = make_variants(cfg.data.variants, cfg.data.degrees)
        cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
        table = teacher_table(teacher, Path(cfg.teacher), data.train, variants, cfg.data,
                              cache, cfg.workers, cfg.device, report)
        del teacher  # the table is all the student needs from it
    target_s = time.perf_counter() - t0

    ctx = Context(cfg, student, data, table, files, on_progress)
    t1 = time.perf_counter()
    best_epoch, best = 0, -math.inf
    if 1 in cfg.run_stages:
        if resume and files.path(1).is_file():
            log.info("stage 1 already finished (%s)", files.path(1))
        else:
            stage1_boundary(ctx, resume)
    if 2 in cfg.run_stages:
        best_epoch, best = stage2_adversarial(ctx, resume)
    best_path = out / "best.pt" if (out / "best.pt").is_file() else None
    return DistillResult(out, best_path, best_epoch, best, cfg.monitor, ctx.history, target_s,
                         time.perf_counter() - t1)


__all__ = ["DistillConfig", "DistillResult", "distill", "stage1_boundary",
           "stage2_adversarial", "MODES"]
