"""BEGAN pieces (eqs. 4-6): k_t update and clamp, L_D, L_G, the autoencoder discriminator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from textsieve.losses.began import (
    AutoencoderDiscriminator,
    BeganBalance,
    convergence,
    discriminator_loss,
    generator_loss,
    reconstruction_error,
)


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_k_update_by_hand() -> None:
    bal = BeganBalance(gamma=0.75, lambda_k=1e-3, k0=0.0)
    assert bal.k == 0.0
    # k1 = 0 + 1e-3 * (0.75 * 2 - 1) = 5e-4
    assert bal.step(2.0, 1.0) == pytest.approx(5e-4)
    # k2 = 5e-4 + 1e-3 * (0.75 * 4 - 2.5) = 1e-3
    assert bal.step(torch.tensor(4.0), torch.tensor(2.5)) == pytest.approx(1e-3)
    assert bal.m_global == pytest.approx(4.0 + 0.5)


def test_k_is_clamped_to_unit_interval() -> None:
    bal = BeganBalance(gamma=0.75, lambda_k=1e-3, k0=0.0)
    assert bal.step(1.0, 2.0) == 0.0  # 0 + 1e-3 * (0.75 - 2) < 0
    bal = BeganBalance(gamma=0.75, lambda_k=1.0, k0=0.9995)
    assert bal.step(2.0, 0.0) == 1.0  # 0.9995 + 1.5 > 1
    assert bal.step(0.0, 0.4) == pytest.approx(0.6)  # and it can come back down
    with pytest.raises(ValueError):
        BeganBalance(k0=1.5)


def test_state_round_trip() -> None:
    bal = BeganBalance(k0=0.25)
    other = BeganBalance()
    other.load_state_dict(bal.state_dict())
    assert other.k == 0.25
    with pytest.raises(ValueError):
        other.load_state_dict({"k": -0.1})


def test_losses_by_hand() -> None:
    feats = torch.tensor([[[1.0, -2.0], [3.0, 0.0]]])  # (1, 2, 2)
    assert reconstruction_error(nn.Identity(), feats).item() == 0.0
    assert reconstruction_error(_Zero(), feats).item() == pytest.approx(1.5)  # mean |x|
    l_d = discriminator_loss(torch.tensor(2.0), torch.tensor(1.0), k=0.5)
    assert l_d.item() == pytest.approx(1.5)  # eq. 4: 2 - 0.5 * 1
    assert generator_loss(_Zero(), feats).item() == pytest.approx(1.5)  # eq. 5
    assert convergence(2.0, 1.0, 0.75) == pytest.approx(2.5)  # 2 + |1.5 - 1|


def test_autoencoder_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    disc = AutoencoderDiscriminator(dim=64)
    feats = torch.randn(2, 34, 64, requires_grad=True)
    rec = disc(feats)
    assert rec.shape == feats.shape and torch.isfinite(rec).all()
    generator_loss(disc, feats).backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters())


def test_discriminator_learns_to_reconstruct_real_features() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only spin on a shared CPU
    torch.manual_seed(0)
    disc = AutoencoderDiscriminator(dim=8, hidden=32, bottleneck=8)
    real = torch.randn(16, 34, 8)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    before = reconstruction_error(disc, real).item()
    for _ in range(100):
        opt.zero_grad()
        discriminator_loss(reconstruction_error(disc, real), torch.tensor(0.0), 0.0).backward()
        opt.step()
    after = reconstruction_error(disc, real).item()
    torch.set_num_threads(threads)
    assert after < 0.5 * before
