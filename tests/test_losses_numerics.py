"""Numerical fuzz: every objective stays finite, in value and gradient, on extreme score matrices in
float32, and in bfloat16 / float16 under autocast."""

from __future__ import annotations

import math

import pytest
import torch

from pdrl.losses import OBJECTIVES, DRFCLoss, MICELoss, PCCLoss, SMILELoss

OBJECTIVE_VARIANTS = {
    **{name: cls for name, cls in OBJECTIVES.items() if name != "infonce"},
    "pcc_imbalanced": lambda: PCCLoss(balanced=False),
    "drfc_relative": lambda: DRFCLoss(alpha=0.01, readout="self_normalized"),
    "smile_unclipped": lambda: SMILELoss(tau=math.inf),
    "mice_nwj_blocked": lambda: MICELoss(form="nwj", partition_gradient="blocked"),
}


def extreme_matrices(n: int = 16) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    eye = torch.eye(n, dtype=torch.bool)
    return {
        "gaussian_1e4": 1e4 * torch.randn(n, n, generator=generator),
        "separated_1e4": torch.where(eye, 1e4, -1e4),
        "inverted_1e4": torch.where(eye, -1e4, 1e4),
        "constant_1e4": torch.full((n, n), 1e4),
        "constant_minus_1e4": torch.full((n, n), -1e4),
        "one_outlier": torch.zeros(n, n).index_put_((torch.tensor([0]), torch.tensor([3])), torch.tensor(1e4)),
        "tiny": 1e-30 * torch.randn(n, n, generator=generator),
    }


def assert_finite_loss_and_gradient(objective: torch.nn.Module, scores: torch.Tensor) -> None:
    scores = scores.detach().requires_grad_(True)
    loss = objective(scores)
    (gradient,) = torch.autograd.grad(loss, scores)
    assert torch.isfinite(loss), f"loss {loss}"
    assert torch.isfinite(gradient).all(), "gradient has inf/nan"
    readout = objective.mi(scores)  # exact: -inf once E_Q[e^f] overflows float64 (tests/test_readouts_exact.py)
    assert not torch.isnan(readout) and readout < math.inf, f"readout {readout}"
    assert torch.isfinite(objective.log_pd(scores.detach())).all(), "log-PD is not finite"


@pytest.mark.parametrize("name", sorted(OBJECTIVE_VARIANTS))
@pytest.mark.parametrize("matrix", sorted(extreme_matrices()))
def test_float32_extremes_stay_finite(name: str, matrix: str) -> None:
    assert_finite_loss_and_gradient(OBJECTIVE_VARIANTS[name](), extreme_matrices()[matrix])


@pytest.mark.parametrize("name", sorted(OBJECTIVE_VARIANTS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_autocast_stays_finite(name: str, dtype: torch.dtype) -> None:
    """Scores made by a matmul under autocast (so in low precision) of magnitude up to 1e4: the loss, its
    readout and the gradient it sends back into the low-precision scores are finite. (Overflow further
    down, in a float16 matmul's backward, is what a GradScaler handles in float16 training.)"""
    generator = torch.Generator().manual_seed(1)
    objective = OBJECTIVE_VARIANTS[name]()
    embeddings_a = torch.randn(16, 8, generator=generator) * 35.0
    embeddings_b = (embeddings_a + torch.randn(16, 8, generator=generator)).requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype):
        scores = embeddings_a @ embeddings_b.T
        assert scores.dtype == dtype
        assert scores.abs().max() > 1e3
        scores.retain_grad()
        loss = objective(scores)
    loss.backward()
    assert torch.isfinite(loss)
    assert scores.grad.dtype == dtype and torch.isfinite(scores.grad).all()
    readout = objective.mi(scores)  # exact: -inf once E_Q[e^f] overflows float64 (tests/test_readouts_exact.py)
    assert not torch.isnan(readout) and readout < math.inf


@pytest.mark.parametrize("name", sorted(OBJECTIVE_VARIANTS))
def test_random_fuzz_float32(name: str) -> None:
    generator = torch.Generator().manual_seed(2)
    objective = OBJECTIVE_VARIANTS[name]()
    for _ in range(20):
        n = int(torch.randint(2, 40, (1,), generator=generator))
        scale = 10.0 ** float(torch.empty(1).uniform_(-3, 4, generator=generator))
        assert_finite_loss_and_gradient(objective, scale * torch.randn(n, n, generator=generator))
