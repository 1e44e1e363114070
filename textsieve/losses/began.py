"""BEGAN adversarial feature distillation (Berthelot et al. 2017; Zhao et al. 2019, eqs. 4-6).

An autoencoder discriminator D reconstructs D-dim region features. The teacher's mapped region
features T_i are "real", the student's S_i "fake". With the reconstruction error
L(x) = 1/M sum_i |D(x_i) - x_i| (here the mean absolute error over regions and feature
dimensions, as BEGAN takes the pixel-wise mean):

    L_D = L(T) - k_t L(S)                                   (eq. 4, the discriminator's loss)
    L_G = L(S)                                              (eq. 5, the student's adversarial loss)
    k_{t+1} = clamp(k_t + f_k (n L(T) - L(S)), 0, 1)        (eq. 6; k_0 = 0, f_k = 1e-3, n = 0.75)

The paper's n and f_k are BEGAN's gamma and lambda_k; the names below follow BEGAN. BEGAN's
convergence measure ``m_global = L(T) + |gamma L(T) - L(S)|`` is logged each epoch.
"""

from __future__ import annotations

import torch
from torch import nn


class AutoencoderDiscriminator(nn.Module):
    """MLP autoencoder on region features, applied to the last dimension of (..., D).

    Args:
        dim: feature size D (the shared teacher/student space).
        hidden: width of the hidden layers.
        bottleneck: size of the code; smaller than D so that reconstruction must be learned.
    """

    def __init__(self, dim: int = 64, hidden: int = 128, bottleneck: int = 32) -> None:
        super().__init__()
        self.dim = dim
        # ELU as in BEGAN: no dead units, so every input keeps a reconstruction gradient.
        self.encoder = nn.Sequential(
            nn.Linear(dim, hidden), nn.ELU(), nn.Linear(hidden, bottleneck)
        )
        self.decoder = nn.Sequential(
            nn.Linear(bottleneck, hidden), nn.ELU(), nn.Linear(hidden, dim)
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(..., D) features -> (..., D) reconstructions."""
        return self.decoder(self.encoder(feats))


def reconstruction_error(disc: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """1/M sum_i |D(x_i) - x_i|: mean absolute reconstruction error over regions, dims and batch.

    Args:
        disc: the autoencoder discriminator.
        feats: (B, M, D) region features.

    Returns:
        Scalar reconstruction error.
    """
    return (disc(feats) - feats).abs().mean()


def discriminator_loss(l_real: torch.Tensor, l_fake: torch.Tensor, k: float) -> torch.Tensor:
    """Eq. 4: L_D = L(T) - k_t L(S). ``l_fake`` must come from detached student features.

    Args:
        l_real: reconstruction error of the teacher's features.
        l_fake: reconstruction error of the student's features.
        k: current balance k_t in [0, 1].

    Returns:
        Scalar discriminator loss.
    """
    return l_real - k * l_fake


def generator_loss(disc: nn.Module, feat_s: torch.Tensor) -> torch.Tensor:
    """Eq. 5: L_G = L(S), the student's adversarial loss (gradient flows into ``feat_s``).

    Args:
        disc: the autoencoder discriminator (its parameters are not updated by this loss).
        feat_s: (B, M, D) student mapped region features.

    Returns:
        Scalar adversarial loss.
    """
    return reconstruction_error(disc, feat_s)


def convergence(l_real: float, l_fake: float, gamma: float = 0.75) -> float:
    """BEGAN's global convergence measure m_global = L(T) + |gamma L(T) - L(S)|."""
    return float(l_real) + abs(gamma * float(l_real) - float(l_fake))


def _scalar(x: float | torch.Tensor) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


class BeganBalance:
    """The equilibrium variable k_t of eq. 6, clamped to [0, 1].

    Args:
        gamma: diversity ratio (the paper's n, 0.75).
        lambda_k: learning rate of k (the paper's f_k, 1e-3).
        k0: initial k (the paper's k_0 = 0).
    """

    def __init__(self, gamma: float = 0.75, lambda_k: float = 1e-3, k0: float = 0.0) -> None:
        if not 0.0 <= k0 <= 1.0:
            raise ValueError(f"k0 must be in [0, 1], got {k0}")
        if lambda_k < 0 or gamma < 0:
            raise ValueError("gamma and lambda_k must be >= 0")
        self.gamma = gamma
        self.lambda_k = lambda_k
        self.k = float(k0)
        self.m_global = float("nan")

    def step(self, l_real: float | torch.Tensor, l_fake: float | torch.Tensor) -> float:
        """Update k from one step's reconstruction errors and return the new k.

        Args:
            l_real: L(T), the teacher features' reconstruction error.
            l_fake: L(S), the student features' reconstruction error.

        Returns:
            k_{t+1} in [0, 1].
        """
        l_real, l_fake = _scalar(l_real), _scalar(l_fake)
        self.k = min(1.0, max(0.0, self.k + self.lambda_k * (self.gamma * l_real - l_fake)))
        self.m_global = convergence(l_real, l_fake, self.gamma)
        return self.k

    def state_dict(self) -> dict[str, float]:
        """Plain-typed state for checkpoints."""
        return {"k": self.k, "gamma": self.gamma, "lambda_k": self.lambda_k}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore k (gamma and lambda_k stay those of the current config)."""
        k = float(state["k"])
        if not 0.0 <= k <= 1.0:
            raise ValueError(f"stored k must be in [0, 1], got {k}")
        self.k = k
