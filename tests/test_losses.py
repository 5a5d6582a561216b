"""Closed-form checks of every objective: with the true log density ratio of correlated Gaussians plugged
in as the critic, each MI readout recovers the true MI, the true ratio is a stationary point of each
training objective, and CPC's readout is capped at log n."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from pdrl.data.gaussians import log_pd_matrix, rho_from_mi, sample_pairs
from pdrl.losses import (
    OBJECTIVES,
    CPCLoss,
    DRFCLoss,
    MICELoss,
    MINELoss,
    PCCLoss,
    SMILELoss,
    build_objective,
)

DIM = 20

# (name, constructor) for every estimator and the options whose optimum is the true ratio.
ESTIMATORS = [
    ("cpc", CPCLoss),
    ("pcc_balanced", lambda: PCCLoss(balanced=True)),
    ("pcc_imbalanced", lambda: PCCLoss(balanced=False)),
    ("drfc", DRFCLoss),
    ("drfc_relative", lambda: DRFCLoss(alpha=0.2)),
    ("drfc_self_normalized", lambda: DRFCLoss(readout="self_normalized")),
    ("nwj", OBJECTIVES["nwj"]),
    ("js", OBJECTIVES["js"]),
    ("dv", OBJECTIVES["dv"]),
    ("mine", MINELoss),
    ("smile_unclipped", lambda: SMILELoss(tau=math.inf)),
    ("variational", OBJECTIVES["variational"]),
    ("dm1", OBJECTIVES["dm1"]),
    ("dm2", OBJECTIVES["dm2"]),
    ("mice", MICELoss),
    ("mice_nwj", lambda: MICELoss(form="nwj")),
]


def correlated_gaussians(n: int, mi: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return sample_pairs(n, DIM, rho_from_mi(mi, DIM), generator=generator)


def true_log_ratio(x: torch.Tensor, y: torch.Tensor, mi: float) -> torch.Tensor:
    """``log r(x_i, y_j)`` for every pair, in float64: an (n, n) matrix."""
    return log_pd_matrix(x, y, rho_from_mi(mi, DIM))


@pytest.mark.parametrize("name, make", ESTIMATORS, ids=[name for name, _ in ESTIMATORS])
def test_readout_recovers_true_mi(name: str, make) -> None:
    mi, n = 1.0, 3000
    x, y = correlated_gaussians(n, mi, torch.Generator().manual_seed(0))
    objective = make()
    scores = objective.scores_from_log_pd(true_log_ratio(x, y, mi))
    estimate = objective.mi(scores).item()
    # Var[log r] under the joint is d * rho^2: the plug-in standard error on n pairs.
    standard_error = math.sqrt(DIM * rho_from_mi(mi, DIM) ** 2 / n)
    tolerance = 4 * standard_error + (0.05 if name == "cpc" else 0.0)  # InfoNCE is a lower bound at finite n
    assert abs(estimate - mi) < tolerance, f"{name}: readout {estimate:.3f} vs true MI {mi}"


@pytest.mark.parametrize("name, make", ESTIMATORS, ids=[name for name, _ in ESTIMATORS])
def test_log_pd_inverts_the_optimal_scores(name: str, make) -> None:
    objective = make()
    log_ratio = torch.linspace(-6.0, 6.0, 36, dtype=torch.float64).reshape(6, 6)
    if isinstance(objective, DRFCLoss) and objective.alpha > 0:
        log_ratio = log_ratio.clamp(max=4.0)  # the relative ratio saturates at 1/alpha
    torch.testing.assert_close(objective.log_pd(objective.scores_from_log_pd(log_ratio)), log_ratio)


def directional_derivatives(objective, scores: torch.Tensor, directions: list[torch.Tensor]) -> torch.Tensor:
    scores = scores.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(objective(scores), scores)
    return torch.stack([(gradient * direction).sum() for direction in directions])


def mean_and_error(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])


@pytest.mark.parametrize("name, make", ESTIMATORS, ids=[name for name, _ in ESTIMATORS])
def test_true_ratio_is_a_stationary_point(name: str, make) -> None:
    """Along several directions h of the critic, E[dL(f* + eps h)/d eps] = 0 at the true ratio f*, while
    a wrong critic (half the true log-ratio) gives a clearly non-zero expected derivative."""
    mi, n, batches = 2.0, 128, 60
    generator = torch.Generator().manual_seed(1)
    objective, objective_for_wrong = make(), make()  # separate state (MINE's moving average)
    at_optimum, at_wrong_critic = [], []
    for _ in range(batches):
        x, y = correlated_gaussians(n, mi, generator)
        log_ratio = true_log_ratio(x, y, mi)
        optimal = objective.scores_from_log_pd(log_ratio)
        feature = (x @ y.T) / math.sqrt(DIM)
        directions = [torch.ones_like(optimal), optimal, feature]
        at_optimum.append(directional_derivatives(objective, optimal, directions))
        wrong = objective.scores_from_log_pd(0.5 * log_ratio)
        at_wrong_critic.append(directional_derivatives(objective_for_wrong, wrong, directions))
    mean, error = mean_and_error(torch.stack(at_optimum))
    assert torch.all(mean.abs() < 4 * error + 2e-3), f"{name}: mean {mean} vs standard error {error}"
    wrong_mean, wrong_error = mean_and_error(torch.stack(at_wrong_critic))
    assert torch.any(wrong_mean.abs() > 6 * wrong_error + 2e-3), f"{name}: a wrong critic looks stationary too"


def test_cpc_readout_is_capped_by_log_batch_size() -> None:
    mi, n = 10.0, 128
    x, y = correlated_gaussians(n, mi, torch.Generator().manual_seed(2))
    readout = CPCLoss().mi(true_log_ratio(x, y, mi)).item()
    assert readout <= math.log(n) + 1e-9
    assert readout > math.log(n) - 0.5  # with 10 nats of MI the positive dominates every row
    huge_margin = torch.full((n, n), -1e4).fill_diagonal_(1e4)
    assert CPCLoss().mi(huge_margin).item() == pytest.approx(math.log(n))


def test_imbalanced_pcc_optimum_is_shifted_by_the_prior_ratio() -> None:
    log_ratio = torch.zeros(5, 5)
    scores = PCCLoss(balanced=False).scores_from_log_pd(log_ratio)
    torch.testing.assert_close(scores, torch.full((5, 5), -math.log(4)))


def test_relative_drfc_recovers_the_ratio() -> None:
    ratio = torch.tensor([[0.5, 2.0], [3.0, 1.0]])
    objective = DRFCLoss(alpha=0.1)
    relative = ratio / (0.1 * ratio + 0.9)
    torch.testing.assert_close(objective.log_pd(relative), ratio.log())


def test_mine_moving_average_is_a_buffer_that_updates_in_training() -> None:
    objective = MINELoss(momentum=0.5)
    scores = torch.randn(8, 8, requires_grad=True)
    objective(scores).backward()
    first = objective.log_ema.clone()
    objective(scores + 1.0)
    assert objective.log_ema > first  # a larger partition pulls the average up
    assert "log_ema" in objective.state_dict()
    frozen = objective.log_ema.clone()
    objective.eval()
    objective(scores + 5.0)
    assert objective.log_ema == frozen


@pytest.mark.parametrize("form", ["dv", "nwj"])
def test_mice_blocked_partition_keeps_the_readout_but_drops_its_gradient(form: str) -> None:
    scores = torch.randn(6, 6, requires_grad=True)
    full, blocked = MICELoss(form=form), MICELoss(form=form, partition_gradient="blocked")
    assert full.mi(scores) == pytest.approx(blocked.mi(scores).item())
    (gradient,) = torch.autograd.grad(blocked(scores), scores)
    off_diagonal = ~torch.eye(6, dtype=torch.bool)
    assert torch.all(gradient[off_diagonal] == 0)


def test_registry_builds_by_name_and_lists_valid_names_on_error() -> None:
    assert isinstance(build_objective("PCC", balanced=False), PCCLoss)
    assert isinstance(build_objective("drfc", alpha=0.01), DRFCLoss)
    with pytest.raises(ValueError, match="Unknown objective 'pcx': choose one of .*cpc.*drfc.*pcc"):
        build_objective("pcx")
    with pytest.raises(ValueError, match="takes no argument alpha"):
        build_objective("pcc", alpha=0.1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DRFCLoss(alpha=1.0), r"alpha must be in \[0, 1\)"),
        (lambda: DRFCLoss(alpha=-0.1), r"alpha must be in \[0, 1\)"),
        (lambda: DRFCLoss(readout="mean"), "readout='mean'"),
        (lambda: MINELoss(momentum=1.0), "momentum must be in"),
        (lambda: SMILELoss(tau=0.0), "tau must be > 0"),
        (lambda: build_objective("dm2", eta=-1.0), "eta must be > 0"),
        (lambda: MICELoss(form="js"), "form='js'"),
        (lambda: PCCLoss(balanced="yes"), "must be True or False"),
    ],
)
def test_invalid_arguments_fail_with_a_clear_message(make, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_scores_of_the_wrong_shape_are_rejected() -> None:
    with pytest.raises(ValueError, match="2-D"):
        CPCLoss()(torch.randn(4))
    with pytest.raises(ValueError, match="fit no layout"):
        CPCLoss()(torch.randn(4, 8))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        CPCLoss()(torch.randn(1, 1))


def test_losses_import_without_lightning() -> None:
    code = (
        "import sys; import pdrl.losses, pdrl.heads, pdrl.distributed; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
