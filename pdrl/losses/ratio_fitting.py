"""Density-ratio fitting, D-RF / D-RFC (PD paper Sec. 3.3, Eq. 6), with the relative ratio."""

from __future__ import annotations

import math

import torch

from pdrl.errors import ConfigError
from pdrl.losses.base import DependencyLoss, Layout, ScoreMatrix

READOUTS = ("plugin", "self_normalized")


class DRFCLoss(DependencyLoss):
    """Least-squares fit of the density ratio r = p(x,y) / (p(x)p(y)); the critic output *is* r.

    Objective (PD paper Eq. 6; alpha > 0 gives the relative ratio r_a = r / (alpha r + 1 - alpha),
    which is bounded by 1/alpha)::

        J = E_P[f] - alpha/2 * E_P[f^2] - (1 - alpha)/2 * E_Q[f^2]

    Pointwise log-PD: ``log r = log(1 - alpha) + log f - log(1 - alpha f)`` with f clamped to
    ``[eps, (1 - eps)/alpha]`` (to ``>= eps`` when alpha = 0).

    MI readout, chosen by ``readout``:

    - ``"plugin"`` (the paper's): ``E_P[log r]``.
    - ``"self_normalized"``: ``E_P[log r] - log E_Q[r]``. The fitted ratio should average to 1 under
      the marginals; dividing by its batch average removes any error in its overall scale, which the
      plug-in readout passes straight into the MI (a DV-style correction, still a lower bound in
      expectation when r is a valid ratio).

    Args:
        alpha: relative-ratio parameter in ``[0, 1)``; the PD code's deep SSL runs use 0.01.
        eps: the smallest ratio taken in a logarithm.
        readout: ``"plugin"`` or ``"self_normalized"``.

    Example::

        criterion = DRFCLoss(alpha=0.01)
        loss = criterion(critic(embed_x(x), embed_y(y)))                          # (n, n), one positive per row
        loss = criterion(CosineCritic(0.2).two_view(z_a, z_b), TwoViewLayout())  # SimCLR's 2N x 2N
        ratio = criterion.log_pd(scores).exp()                                    # the fitted r(x, y)
    """

    def __init__(self, alpha: float = 0.0, eps: float = 1e-4, readout: str = "plugin") -> None:
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ConfigError(f"DRFCLoss(alpha={alpha}) is out of range: alpha must be in [0, 1), e.g. 0.01.")
        if not 0.0 < eps < 1.0:
            raise ConfigError(f"DRFCLoss(eps={eps}) is out of range: eps must be in (0, 1), e.g. 1e-4.")
        if readout not in READOUTS:
            raise ConfigError(f"DRFCLoss(readout={readout!r}) is unknown: choose one of {READOUTS}.")
        self.alpha, self.eps, self.readout = float(alpha), float(eps), readout

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        joint, scores = matrix.joint, matrix.scores
        joint_term = joint - 0.5 * self.alpha * joint.square()
        return matrix.joint_mean(joint_term) - 0.5 * (1.0 - self.alpha) * matrix.marginal_mean(scores.square())

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        plugin = matrix.joint_mean(self.log_pd(matrix.joint))
        if self.readout == "plugin":
            return plugin
        log_ratio = self.log_pd(matrix.scores)
        return plugin - matrix.marginal_logmeanexp(log_ratio)

    def log_pd(
        self, scores: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        scores = scores.float() if scores.dtype != torch.float64 else scores
        if self.alpha == 0.0:
            return torch.log(scores.clamp(min=self.eps))
        relative = scores.clamp(min=self.eps, max=(1.0 - self.eps) / self.alpha)
        return math.log1p(-self.alpha) + torch.log(relative) - torch.log1p(-self.alpha * relative)

    def scores_from_log_pd(
        self, log_pd: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        ratio = torch.exp(log_pd)
        return ratio / (self.alpha * ratio + 1.0 - self.alpha)
