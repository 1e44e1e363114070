"""The stage-2 update of distillation (Zhao et al. 2019, eqs. 2-6), one batch at a time.

:class:`Stage2Update` owns what stage 2 changes besides the student: the student's optimizer and
plateau schedule, the autoencoder discriminator and its optimizer (lr ``disc_lr_ratio`` times the
student's) and BEGAN's k_t. Per batch, for the adversarial modes: the discriminator is updated
on L_D (eq. 4) with the student's features detached, then the student on L_K + b L_G (eqs. 2, 3,
5) against the updated discriminator, then k_t (eq. 6) from the step's reconstruction errors.
The ``soft`` mode is L_K alone; ``hard`` is the region BCE on the rule-made labels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from textsieve.losses.began import (
    AutoencoderDiscriminator,
    BeganBalance,
    discriminator_loss,
    generator_loss,
    reconstruction_error,
)
from textsieve.losses.region import region_bce
from textsieve.losses.soft import mix_targets, soft_label_loss
from textsieve.train.loop import PlateauLR
from textsieve.train.rundata import TrainBatch

if TYPE_CHECKING:
    from textsieve.train.distill import DistillConfig

TeacherRows = Callable[[TrainBatch], tuple[torch.Tensor, torch.Tensor]]


def make_optimizer(cfg: DistillConfig, params: list[nn.Parameter], lr: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """SGD with momentum (paper) or AdamW, as ``cfg.optimizer`` says."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


class Stage2Update:
    """Optimizers, schedule, discriminator and k_t of stage 2, and its per-batch update.

    Args:
        cfg: the distillation config.
        student: the student (trained in place).
        teacher_rows: batch -> teacher (logits (B, 34), features (B, 34, D)); None for ``hard``.
    """

    def __init__(self, cfg: DistillConfig, student: nn.Module,
                 teacher_rows: TeacherRows | None) -> None:
        self.cfg, self.student, self.teacher_rows = cfg, student, teacher_rows
        self.opt = make_optimizer(cfg, list(student.parameters()), cfg.lr_stage2,
                                  cfg.weight_decay)
        self.sched = PlateauLR(self.opt, cfg.plateau_factor, cfg.plateau_patience,
                               min_lr=cfg.min_lr)
        self.disc: AutoencoderDiscriminator | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        self.balance = BeganBalance(cfg.gamma, cfg.lambda_k, cfg.k0)
        if cfg.adversarial:
            with torch.random.fork_rng():  # the discriminator's init leaves the global RNG alone
                torch.manual_seed(cfg.seed + 1)
                self.disc = AutoencoderDiscriminator(cfg.student.dim, cfg.disc_hidden,
                                                     cfg.disc_bottleneck).to(cfg.device)
            self.opt_d = make_optimizer(cfg, list(self.disc.parameters()),
                                        cfg.lr_stage2 * cfg.disc_lr_ratio, 0.0)

    def parts(self) -> dict[str, Any]:
        """Checkpoint entry name -> object with ``state_dict``/``load_state_dict``."""
        return {"optimizer": self.opt, "scheduler": self.sched, "disc": self.disc,
                "disc_optimizer": self.opt_d, "balance": self.balance}

    def state(self) -> dict[str, Any]:
        """Plain-typed checkpoint entries (k_t included, so a resumed run restores it)."""
        return {name: obj.state_dict() if obj is not None else None
                for name, obj in self.parts().items()}

    def step(self, batch: TrainBatch) -> dict[str, float]:
        """One update on ``batch``; returns the step's losses (and k_t, m_global)."""
        cfg = self.cfg
        d = cfg.device
        out = self.student(batch.images.to(d))
        if self.teacher_rows is None:  # hard: the rule-made region labels only
            loss = region_bce(out.logits, batch.labels.to(d), batch.mask.to(d),
                              batch.is_text.to(d), cfg.pos_weight, cfg.image_weight)
            self._student_update(loss)
            return {"loss": loss.item(), "l_hard": loss.item()}
        logits_t, feat_t = self.teacher_rows(batch)
        target = mix_targets(torch.sigmoid(logits_t), batch.labels.to(d), cfg.alpha,
                             batch.mask.to(d))
        l_k = soft_label_loss(out.logits, target)
        if self.disc is None:  # soft: L_K alone
            self._student_update(l_k)
            return {"loss": l_k.item(), "l_k": l_k.item()}
        # Discriminator (eq. 4): teacher features are real, (detached) student features fake.
        l_real = reconstruction_error(self.disc, feat_t)
        l_fake = reconstruction_error(self.disc, out.feats.detach())
        l_d = discriminator_loss(l_real, l_fake, self.balance.k)
        self.opt_d.zero_grad(set_to_none=True)
        l_d.backward()
        self.opt_d.step()
        # Student (eqs. 2, 5) against the updated discriminator, whose weights stay put.
        self.disc.requires_grad_(False)
        l_g = generator_loss(self.disc, out.feats)
        loss = l_k + cfg.adv_weight * l_g
        self._student_update(loss)
        self.disc.requires_grad_(True)
        k = self.balance.step(l_real, l_fake)  # eq. 6, from this step's reconstruction errors
        return {"loss": loss.item(), "l_k": l_k.item(), "l_g": l_g.item(), "l_d": l_d.item(),
                "l_real": l_real.item(), "l_fake": l_fake.item(), "k": k,
                "m_global": self.balance.m_global}

    def _student_update(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def set_disc_lr(self) -> None:
        """Keep the discriminator's lr at ``disc_lr_ratio`` times the student's."""
        if self.opt_d is not None:
            for g in self.opt_d.param_groups:
                g["lr"] = self.sched.lr * self.cfg.disc_lr_ratio
