"""MI readouts are exact (float64, no linear continuation of exp): a diverging critic reads as what it is.

The linear continuation above e^10 (``exp_linear_above``) stays in the training losses only, where it keeps
loss and gradient finite."""

from __future__ import annotations

import math

import pytest
import torch

from pdrl.losses import build_objective

# a 3 x 3 score matrix whose off-diagonal (marginal) scores sit far above e^10: a diverging critic
JOINT, MARGINAL = 2.0, 16.0


def diverged_scores(marginal: float = MARGINAL) -> torch.Tensor:
    return torch.full((3, 3), marginal).fill_diagonal_(JOINT)


def exact_nwj(joint: float, marginal: float) -> float:
    """1 + E_P[g] - E_Q[e^g] for the constant matrix above (computed with Python floats)."""
    return 1.0 + joint - math.exp(marginal)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("nwj", {}, exact_nwj(JOINT - 1.0, MARGINAL - 1.0)),  # about -3.3e6
        ("js", {}, exact_nwj(JOINT, MARGINAL)),
        ("mice", {"form": "nwj"}, exact_nwj(JOINT - 1.0, MARGINAL - 1.0)),
        ("dm1", {}, JOINT),
    ],
)
def test_readout_of_a_diverged_critic_is_exact(name, args, expected):
    objective = build_objective(name, **args)
    readout = objective.mi(diverged_scores())
    assert readout.dtype == torch.float64
    assert readout.item() == pytest.approx(expected, rel=1e-12)
    assert torch.isfinite(objective(diverged_scores())), "the training loss stays finite"


@pytest.mark.parametrize(("name", "args"), [("nwj", {}), ("js", {}), ("mice", {"form": "nwj"})])
def test_readout_is_minus_inf_when_the_partition_overflows(name, args):
    objective = build_objective(name, **args)
    scores = diverged_scores(800.0)  # e^800 overflows even float64
    assert objective.mi(scores).item() == -math.inf
    loss = objective(scores.requires_grad_())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores.grad).all()  # the continuation keeps training finite


def test_readout_is_computed_in_float64():
    """A float32 score matrix whose exact NWJ needs float64: e^(88.5) overflows float32 but not float64."""
    scores = diverged_scores(89.5).float()
    readout = build_objective("nwj").mi(scores)
    assert math.isfinite(readout.item()) and readout.item() == pytest.approx(exact_nwj(1.0, 88.5), rel=1e-12)
