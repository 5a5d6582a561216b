"""Critic heads: shapes, the loop-free joint critic against a per-pair loop, spectral norm, and errors."""

from __future__ import annotations

import pytest
import torch

from pdrl.heads import BilinearCritic, ConcatCritic, SeparableCritic
from pdrl.nets import MLP


def test_separable_critic_is_a_scaled_inner_product() -> None:
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    torch.testing.assert_close(SeparableCritic(temperature=0.5)(a, b), a @ b.T / 0.5)


def test_bilinear_critic_matches_its_formula() -> None:
    critic = BilinearCritic(3, 4)
    a, b = torch.randn(5, 3), torch.randn(5, 4)
    weight = critic.linear.weight  # (dim_a, dim_b)
    torch.testing.assert_close(critic(a, b), a @ weight @ b.T)


def test_concat_critic_equals_an_mlp_applied_pair_by_pair() -> None:
    torch.manual_seed(0)
    critic = ConcatCritic(3, 4, hidden_dims=(16, 8))
    a, b = torch.randn(6, 3), torch.randn(7, 4)[:6]
    reference = torch.empty(6, 6)
    first_layer = torch.nn.Linear(7, 16)
    with torch.no_grad():
        first_layer.weight.copy_(torch.cat([critic.first_a.weight, critic.first_b.weight], dim=1))
        first_layer.bias.copy_(critic.first_a.bias)
        for i in range(6):
            for j in range(6):
                reference[i, j] = critic.rest(first_layer(torch.cat([a[i], b[j]]))).squeeze()
    torch.testing.assert_close(critic(a, b), reference)


def test_spectral_norm_bounds_the_largest_singular_value() -> None:
    torch.manual_seed(0)
    critic = BilinearCritic(8, 8, spectral_norm=True)
    with torch.no_grad():
        critic.linear.parametrizations.weight.original.mul_(50.0)
    for _ in range(20):  # power iterations converge in training mode
        critic(torch.randn(4, 8), torch.randn(4, 8))
    assert torch.linalg.matrix_norm(critic.linear.weight.detach(), ord=2).item() == pytest.approx(1.0, rel=1e-2)
    mlp = MLP(4, [16], 1, spectral_norm="last")
    assert hasattr(mlp[-1], "parametrizations") and not hasattr(mlp[0], "parametrizations")


def test_heads_reject_mismatched_batches() -> None:
    with pytest.raises(ValueError, match="same n"):
        SeparableCritic()(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least one hidden layer"):
        ConcatCritic(2, 2, hidden_dims=())
    with pytest.raises(ValueError, match="spectral_norm='first'"):
        MLP(2, [4], 1, spectral_norm="first")


@pytest.mark.parametrize(
    "critic",
    [SeparableCritic(temperature=0.5), SeparableCritic(temperature=0.3, normalize=True), BilinearCritic(3, 3)],
    ids=["separable", "cosine", "bilinear"],
)
def test_own_candidates_are_the_entries_of_each_rows_full_score_matrix(critic) -> None:
    torch.manual_seed(0)
    rows, candidates = torch.randn(4, 3), torch.randn(4, 5, 3)
    full = critic.score(rows, candidates.reshape(20, 3)).reshape(4, 4, 5)  # every row against every candidate
    assert torch.allclose(critic.own_candidates(rows, candidates), full[torch.arange(4), torch.arange(4)], atol=1e-6)
    with pytest.raises(ValueError, match="own_candidates needs"):
        critic.own_candidates(rows, candidates[:3])
