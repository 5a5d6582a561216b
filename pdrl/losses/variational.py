"""Variational MI bounds: NWJ, JS, DV, MINE, SMILE and the plug-in bound (PD paper Table 1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pdrl.errors import ConfigError
from pdrl.losses.base import DependencyLoss, Layout, ScoreMatrix, exp_linear_above


def js_objective(matrix: ScoreMatrix) -> torch.Tensor:
    """Jensen-Shannon (f-GAN) objective ``-E_P softplus(-f) - E_Q softplus(f)``, optimal at f = log-PD."""
    return -(matrix.joint_mean(F.softplus(-matrix.joint)) + matrix.marginal_mean(F.softplus(matrix.scores)))


def nwj_value(
    matrix: ScoreMatrix, shift: float = 1.0, exact: bool = False, block_partition_gradient: bool = False
) -> torch.Tensor:
    """``1 + E_P[g] - E_Q[e^g]`` for ``g = f - shift`` (NWJ: shift 1; the JS readout and Density Matching I: 0).

    ``exact=False`` (the training loss) continues ``e^x`` linearly above e^10 (``exp_linear_above``);
    ``exact=True`` (the readouts) uses ``exp`` itself: -inf once ``E_Q[e^g]`` overflows (float64 above e^709).
    ``block_partition_gradient`` detaches ``E_Q[e^g]`` (MICE's literal Algorithm 1).
    """
    partition = matrix.marginal_logmeanexp(matrix.scores - shift)
    if block_partition_gradient:
        partition = partition.detach()
    expectation = torch.exp(partition) if exact else exp_linear_above(partition)
    return 1.0 + matrix.joint_mean(matrix.joint - shift) - expectation


def dv_value(matrix: ScoreMatrix, log_partition: torch.Tensor | None = None) -> torch.Tensor:
    """Donsker-Varadhan ``E_P[f] - log E_Q[e^f]``.

    ``log_partition`` stands in for ``log E_Q[e^f]`` where a loss forms it otherwise (SMILE's clipped scores,
    MINE's moving-average surrogate, MICE's detached partition).
    """
    if log_partition is None:
        log_partition = matrix.marginal_logmeanexp(matrix.scores)
    return matrix.joint_mean(matrix.joint) - log_partition


class NWJLoss(DependencyLoss):
    """Nguyen-Wainwright-Jordan bound (PD paper Table 1, row NWJ)::

        I_NWJ = 1 + E_P[f - 1] - E_Q[e^(f - 1)]         log-PD = f - 1

    The objective is also the readout. ``E_Q[e^(f-1)]`` is formed as ``exp(logmeanexp)``; in the training loss
    only it is continued linearly above e^10 (``exp_linear_above``) so that large scores give a large but finite
    loss and gradient. The readout is exact (float64, see ``DependencyLoss.mi``): -inf when the critic diverged.

    Example::

        criterion = NWJLoss()  # used as every DependencyLoss: see its docstring
    """

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        return nwj_value(matrix)

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        return nwj_value(matrix, exact=True)

    def log_pd(
        self, scores: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        return scores - 1.0

    def scores_from_log_pd(
        self, log_pd: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        return log_pd + 1.0


class JSLoss(DependencyLoss):
    """Jensen-Shannon training, NWJ readout (Poole et al. 2019; PD paper Table 1, row JS)::

    train:   -E_P softplus(-f) - E_Q softplus(f)        (optimal f = log-PD)
    readout: NWJ at f + 1 = 1 + E_P[f] - E_Q[e^f]          (exact, float64: -inf when the critic diverged)

    Example::

        criterion = JSLoss()  # used as every DependencyLoss: see its docstring
    """

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        return js_objective(matrix)

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        return nwj_value(matrix, shift=0.0, exact=True)


class DVLoss(DependencyLoss):
    """Donsker-Varadhan bound (PD paper Table 1, row DV; MINE without the moving average)::

    I_DV = E_P[f] - log E_Q[e^f]          log-PD = f (up to a constant)

    Example::

        criterion = DVLoss()  # used as every DependencyLoss: see its docstring
    """

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        return dv_value(matrix)

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        return dv_value(matrix)


class MINELoss(DVLoss):
    """MINE (Belghazi et al. 2018): the DV bound with a bias-corrected gradient.

    The gradient of ``log E_Q[e^f]`` is ``grad E_Q[e^f] / E_Q[e^f]``; MINE replaces the denominator with an
    exponential moving average over batches (``momentum`` is the weight of the past). In log space, with
    t = log E_Q[e^f] on this batch and the running ``log_ema``, the partition term contributes the value t
    and the gradient ``exp(t - log_ema) * grad t``. The readout is DV (inherited). The average is a buffer, so it is
    saved in checkpoints and identical on every rank (t is a global quantity).

    Args:
        momentum: weight of the running average in ``[0, 1)`` (0.9 in the PD code).

    Example::

        criterion = MINELoss(momentum=0.9)  # used as every DependencyLoss: see its docstring
    """

    log_ema: torch.Tensor

    def __init__(self, momentum: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"MINELoss(momentum={momentum}) is out of range: momentum must be in [0, 1), e.g. 0.9.")
        self.momentum = float(momentum)
        self.register_buffer("log_ema", torch.tensor(math.nan))

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        log_partition = matrix.marginal_logmeanexp(matrix.scores)
        if not (self.training and torch.is_grad_enabled()):
            return dv_value(matrix, log_partition)
        self._update_average(log_partition.detach())
        weight = exp_linear_above(log_partition - self.log_ema.to(log_partition))
        return dv_value(matrix, log_partition.detach() + weight - weight.detach())

    @torch.no_grad()
    def _update_average(self, log_partition: torch.Tensor) -> None:
        batch_value = log_partition.to(self.log_ema.dtype)
        if torch.isnan(self.log_ema) or self.momentum == 0.0:
            self.log_ema.copy_(batch_value)
        else:
            past = math.log(self.momentum) + self.log_ema
            self.log_ema.copy_(torch.logaddexp(past, math.log1p(-self.momentum) + batch_value))


class SMILELoss(DependencyLoss):
    """SMILE (Song & Ermon 2020): JS training, DV readout with a clipped partition::

        train:   JS objective
        readout: E_P[f] - log E_Q[e^clip(f, -tau, tau)]

    Args:
        tau: clipping threshold (> 0); ``math.inf`` gives the unclipped DV readout. Usual values 1, 5, inf.

    Example::

        criterion = SMILELoss(tau=5.0)  # used as every DependencyLoss: see its docstring
    """

    def __init__(self, tau: float = 1.0) -> None:
        super().__init__()
        if not tau > 0:
            raise ConfigError(f"SMILELoss(tau={tau}) is out of range: tau must be > 0 (e.g. 1.0, 5.0 or inf).")
        self.tau = float(tau)

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        return js_objective(matrix)

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        return dv_value(matrix, matrix.marginal_logmeanexp(matrix.scores.clamp(-self.tau, self.tau)))


class VariationalBoundLoss(DependencyLoss):
    """The variational plug-in estimate (PD paper Eq. 1): JS training, readout ``E_P[f]``.

    With the JS optimum f = log-PD, the average score on joint pairs is the MI (the mean PMI).

    Example::

        criterion = VariationalBoundLoss()  # used as every DependencyLoss: see its docstring
    """

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        return js_objective(matrix)

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        return matrix.joint_mean(matrix.joint)
