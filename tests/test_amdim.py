"""The AMDIM-style encoder and the multi-location critic."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pdrl.heads import MultiLocationCritic
from pdrl.nets.amdim import AMDIMEncoder, GlobalBatchNorm2d


def test_encoder_gives_1x1_5x5_7x7_embeddings() -> None:
    torch.manual_seed(0)
    encoder = AMDIMEncoder(ndf=4, n_rkhs=16, depth=2)
    features = encoder(torch.randn(3, 3, 32, 32))
    assert features.global_vector.shape == (3, 16)
    assert features.map5.shape == (3, 16, 5, 5)
    assert features.map7.shape == (3, 16, 7, 7)
    assert all(torch.isfinite(t).all() for t in features)


def test_encoder_depth_adds_pointwise_blocks_and_batch_norm_is_optional() -> None:
    shallow, deep = AMDIMEncoder(ndf=4, n_rkhs=16, depth=1), AMDIMEncoder(ndf=4, n_rkhs=16, depth=3)
    assert sum(p.numel() for p in deep.parameters()) > sum(p.numel() for p in shallow.parameters())
    without = AMDIMEncoder(ndf=4, n_rkhs=16, depth=1, batch_norm=False)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in without.modules())
    assert sum(isinstance(module, nn.BatchNorm2d) for module in shallow.modules()) == 3  # global + 2 RKHS heads


def test_global_batch_norm_is_batch_norm_on_one_process() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4, 4) * 2 + 1
    ours, reference = GlobalBatchNorm2d(3), nn.BatchNorm2d(3)
    torch.testing.assert_close(ours(x), reference(x))
    torch.testing.assert_close(ours.running_var, reference.running_var)


def test_encoder_rejects_wrong_image_size_and_widths() -> None:
    encoder = AMDIMEncoder(ndf=4, n_rkhs=16, depth=1)
    with pytest.raises(ValueError, match="32x32"):
        encoder(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="ndf"):
        AMDIMEncoder(ndf=0)


def test_multi_location_critic_is_the_scaled_inner_product_per_location() -> None:
    torch.manual_seed(0)
    vectors, maps = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 8, 5, 5, dtype=torch.float64)
    scores = MultiLocationCritic(clip=None)(vectors, maps)
    assert scores.shape == (4, 4, 25)
    location = 7
    expected = vectors @ maps.flatten(2)[:, :, location].T / math.sqrt(8)
    torch.testing.assert_close(scores[:, :, location], expected)


def test_multi_location_critic_soft_clip() -> None:
    torch.manual_seed(0)
    vectors, maps = 10 * torch.randn(4, 8), 10 * torch.randn(4, 8, 7, 7)
    raw = MultiLocationCritic(clip=None)(vectors, maps)
    clipped = MultiLocationCritic(clip=20.0)(vectors, maps)
    assert raw.abs().max() > 20 and clipped.abs().max() <= 20
    torch.testing.assert_close(clipped, 20 * torch.tanh(raw / 20))


def test_multi_location_critic_passes_gradients_to_both_sides() -> None:
    vectors = torch.randn(3, 4, requires_grad=True)
    maps = torch.randn(3, 4, 5, 5, requires_grad=True)
    MultiLocationCritic()(vectors, maps).square().sum().backward()
    assert vectors.grad.abs().sum() > 0 and maps.grad.abs().sum() > 0


def test_multi_location_critic_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="clip"):
        MultiLocationCritic(clip=0.0)
    with pytest.raises(ValueError, match="same n and d"):
        MultiLocationCritic()(torch.randn(3, 4), torch.randn(3, 5, 5, 5))
