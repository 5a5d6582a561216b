"""D-RFC by hand: the relative-ratio objective, eps, log_pd and its inverse, both readouts, messages, ranks."""

from __future__ import annotations

import math

import pytest
import torch

from pdrl.errors import ConfigError
from pdrl.losses import DRFCLoss
from pdrl.losses.base import ScoreMatrix
from tests.messages import exactly
from tests.simulated_ranks import as_rank_one_of_two_mirrored

# (n, n) positive scores, positives on the diagonal; off-diagonal ratios average well away from 1
SCORES = [[1.8, 0.3, 0.05], [0.6, 2.5, 0.0], [0.2, 0.9, 1.2]]


def ratio_by_hand(f: float, alpha: float, eps: float = 1e-4) -> float:
    """r = (1 - alpha) f / (1 - alpha f), f clamped to [eps, (1 - eps) / alpha] (to >= eps when alpha = 0)."""
    if alpha == 0.0:
        return max(f, eps)
    f = min(max(f, eps), (1.0 - eps) / alpha)
    return (1.0 - alpha) * f / (1.0 - alpha * f)


def by_hand(scores: list[list[float]], alpha: float, eps: float = 1e-4) -> tuple[float, float, float]:
    """(J, plug-in readout, self-normalised readout) of a paired matrix, from the class docstring."""
    n = len(scores)
    joint = [scores[i][i] for i in range(n)]
    marginal = [scores[i][j] for i in range(n) for j in range(n) if j != i]
    joint_term = sum(f - alpha / 2 * f * f for f in joint) / n
    value = joint_term - (1 - alpha) / 2 * sum(f * f for f in marginal) / len(marginal)
    plugin = sum(math.log(ratio_by_hand(f, alpha, eps)) for f in joint) / n
    normaliser = sum(ratio_by_hand(f, alpha, eps) for f in marginal) / len(marginal)
    return value, plugin, plugin - math.log(normaliser)


def scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


@pytest.mark.parametrize("eps", [0.0, -1e-3, 1.0, 1.5])
def test_eps_outside_the_open_unit_interval_is_refused_exactly(eps: float) -> None:
    message = f"DRFCLoss(eps={eps}) is out of range: eps must be in (0, 1), e.g. 1e-4."
    with pytest.raises(ConfigError, match=exactly(message)):
        DRFCLoss(eps=eps)


@pytest.mark.parametrize("alpha", [-0.1, 1.0])
def test_alpha_outside_zero_one_is_refused_exactly(alpha: float) -> None:
    message = f"DRFCLoss(alpha={alpha}) is out of range: alpha must be in [0, 1), e.g. 0.01."
    with pytest.raises(ConfigError, match=exactly(message)):
        DRFCLoss(alpha=alpha)


def test_an_unknown_readout_is_refused_exactly() -> None:
    message = "DRFCLoss(readout='PLUGIN') is unknown: choose one of ('plugin', 'self_normalized')."
    with pytest.raises(ConfigError, match=exactly(message)):
        DRFCLoss(readout="PLUGIN")


def test_eps_just_inside_the_interval_is_accepted_and_used() -> None:
    for eps in (1e-12, 0.999):
        objective = DRFCLoss(eps=eps)
        assert objective.eps == eps
        torch.testing.assert_close(objective.log_pd(torch.zeros(1, dtype=torch.float64)), scalar(math.log(eps))[None])


@pytest.mark.parametrize("alpha", [0.0, 0.25])
def test_training_value_is_the_relative_least_squares_objective(alpha: float) -> None:
    scores = torch.tensor(SCORES, dtype=torch.float64)
    value, _, _ = by_hand(SCORES, alpha)
    objective = DRFCLoss(alpha=alpha)
    torch.testing.assert_close(objective.training_value(ScoreMatrix(scores)), scalar(value))
    torch.testing.assert_close(objective(scores), scalar(-value))


def test_defaults_are_alpha_zero_eps_1e4_and_the_plugin_readout() -> None:
    objective, scores = DRFCLoss(), torch.tensor(SCORES, dtype=torch.float64)
    assert (objective.alpha, objective.eps, objective.readout) == (0.0, 1e-4, "plugin")
    value, plugin, _ = by_hand(SCORES, 0.0)
    torch.testing.assert_close(objective(scores), scalar(-value))
    torch.testing.assert_close(objective.mi(scores), scalar(plugin))
    torch.testing.assert_close(objective.log_pd(torch.tensor([0.0, 3.0])), torch.tensor([math.log(1e-4), math.log(3)]))


@pytest.mark.parametrize("alpha", [0.0, 0.25])
def test_both_readouts_by_hand(alpha: float) -> None:
    scores = torch.tensor(SCORES, dtype=torch.float64)
    _, plugin, self_normalized = by_hand(SCORES, alpha)
    assert abs(plugin - self_normalized) > 0.1  # the normaliser log E_Q[r] matters here
    torch.testing.assert_close(DRFCLoss(alpha=alpha).mi(scores), scalar(plugin))
    torch.testing.assert_close(DRFCLoss(alpha=alpha, readout="plugin").mi(scores), scalar(plugin))
    torch.testing.assert_close(DRFCLoss(alpha=alpha, readout="self_normalized").mi(scores), scalar(self_normalized))


@pytest.mark.parametrize(("alpha", "eps"), [(0.0, 1e-4), (0.0, 0.01), (0.25, 1e-4), (0.5, 0.01)])
def test_log_pd_is_the_clamped_relative_log_ratio(alpha: float, eps: float) -> None:
    values = [-1.0, 0.0, 1e-6, 0.3, 1.0, 1.7, 3.9, 100.0]
    expected = torch.tensor([math.log(ratio_by_hand(f, alpha, eps)) for f in values], dtype=torch.float64)
    log_pd = DRFCLoss(alpha=alpha, eps=eps).log_pd(torch.tensor(values, dtype=torch.float64))
    assert log_pd.dtype == torch.float64
    torch.testing.assert_close(log_pd, expected)


def test_log_pd_at_the_upper_clamp() -> None:
    alpha, eps = 0.5, 1e-4
    bound = math.log(1 - alpha) + math.log((1 - eps) / alpha) - math.log(eps)  # f = (1 - eps) / alpha
    log_pd = DRFCLoss(alpha=alpha, eps=eps).log_pd(torch.tensor([2.0, 1e6], dtype=torch.float64))
    torch.testing.assert_close(log_pd, torch.tensor([bound, bound], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_log_pd_of_half_precision_scores_is_float32_and_finite(dtype: torch.dtype, alpha: float) -> None:
    """At the upper clamp (1 - eps) / alpha, which rounds to 1 / alpha in half precision, the log stays finite."""
    scores = torch.tensor([0.0, 0.5, 1.0, 100.0], dtype=dtype)
    log_pd = DRFCLoss(alpha=alpha).log_pd(scores)
    assert log_pd.dtype == torch.float32 and torch.isfinite(log_pd).all()
    expected = [math.log(ratio_by_hand(f, alpha)) for f in scores.tolist()]
    torch.testing.assert_close(log_pd, torch.tensor(expected), rtol=1e-4, atol=1e-3)  # float32 at 1 - alpha f


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.25, 0.5])
def test_scores_from_log_pd_inverts_log_pd(alpha: float) -> None:
    """Inside the clamp range, f -> log r -> f; and the optimal critic of a true log-PD reads it back."""
    upper = 50.0 if alpha == 0.0 else 0.99 / alpha
    scores = torch.linspace(0.01, upper, 9, dtype=torch.float64)
    objective = DRFCLoss(alpha=alpha)
    torch.testing.assert_close(objective.scores_from_log_pd(objective.log_pd(scores)), scores)
    log_pd = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
    optimal = objective.scores_from_log_pd(log_pd)
    ratio = log_pd.exp()
    torch.testing.assert_close(optimal, ratio / (alpha * ratio + 1 - alpha))  # r_a, bounded by 1 / alpha
    torch.testing.assert_close(objective.log_pd(optimal), log_pd)


@pytest.mark.parametrize("readout", ["plugin", "self_normalized"])
def test_rank_one_of_two_equals_one_process_on_the_whole_batch(monkeypatch, readout: str) -> None:  # noqa: ANN001
    """Rank 1's (n, 2n) gathered block; rank 0 holds its mirror image, so a sum over ranks doubles."""
    n, alpha = 3, 0.25
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, n, generator=generator, dtype=torch.float64)
    y = torch.rand(n, n, generator=generator, dtype=torch.float64) + 2.0 * torch.eye(n, dtype=torch.float64)
    whole = torch.cat([torch.cat([y, x], dim=1), torch.cat([x, y], dim=1)], dim=0)  # (2n, 2n), diagonal positives
    value, plugin, self_normalized = by_hand(whole.tolist(), alpha)
    as_rank_one_of_two_mirrored(monkeypatch)
    objective, local = DRFCLoss(alpha=alpha, readout=readout), whole[n:]
    torch.testing.assert_close(objective(local), scalar(-value))
    torch.testing.assert_close(objective.mi(local), scalar(plugin if readout == "plugin" else self_normalized))
