"""Density matching, the two constrained forms of the PD paper (Sec. 3.1, Eq. 2 and Eq. 3)."""

from __future__ import annotations

import torch

from pdrl.errors import ConfigError
from pdrl.losses.base import DependencyLoss, Layout, ScoreMatrix
from pdrl.losses.variational import nwj_value


class DensityMatchingLagrangianLoss(DependencyLoss):
    """Density Matching I (PD paper Eq. 2): match P with Q e^f under the constraint E_Q[e^f] = 1,
    enforced by its Lagrangian::

        J = E_P[f] - (E_Q[e^f] - 1)          readout E_P[f]          log-PD = f

    This is NWJ's ``1 + E_P[g] - E_Q[e^g]`` at g = f (``nwj_value`` with shift 0); its optimum is f = log-PD.
    Only the training loss continues ``e^x`` linearly above e^10 (``exp_linear_above``); the readout E_P[f]
    needs no exponential and is exact.

    Example::

        criterion = DensityMatchingLagrangianLoss()  # used as every DependencyLoss: see its docstring
    """

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        return nwj_value(matrix, shift=0.0)

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        return matrix.joint_mean(matrix.joint)


class DensityMatchingPenaltyLoss(DependencyLoss):
    """Density Matching II (PD paper Eq. 3): the constraint log E_Q[e^f] = 0 as a quadratic penalty::

        J = E_P[f] - eta * (log E_Q[e^f])^2          log-PD = f - 1/(2 eta)          readout E_P[f] - 1/(2 eta)

    The penalty does not pin the optimum at the true log-PD. Writing f = log r + c, the functional
    derivative of J is ``p(x,y) - 2 eta c p(x,y)``, zero only at c = 1/(2 eta): the optimal critic sits
    1/(2 eta) nats above the log-PD (0.5 nats at the paper's eta = 1), and the paper's readout E_P[f]
    carries that bias. pdrl subtracts it in ``log_pd`` and ``mi_readout`` (checked in
    ``tests/test_losses.py``, where the true ratio must be a stationary point and recover the true MI).

    Args:
        eta: penalty weight (> 0); the paper uses 1.

    Example::

        criterion = DensityMatchingPenaltyLoss(eta=1.0)  # used as every DependencyLoss: see its docstring
    """

    def __init__(self, eta: float = 1.0) -> None:
        super().__init__()
        if not eta > 0:
            raise ConfigError(f"DensityMatchingPenaltyLoss(eta={eta}) is out of range: eta must be > 0, e.g. 1.0.")
        self.eta = float(eta)

    @property
    def offset(self) -> float:
        """The optimal critic's height above the log-PD, 1/(2 eta)."""
        return 0.5 / self.eta

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        return matrix.joint_mean(matrix.joint) - self.eta * matrix.marginal_logmeanexp(matrix.scores).square()

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        return matrix.joint_mean(matrix.joint) - self.offset

    def log_pd(
        self, scores: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        return scores - self.offset

    def scores_from_log_pd(
        self, log_pd: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        return log_pd + self.offset
