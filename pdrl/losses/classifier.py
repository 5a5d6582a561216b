"""The probabilistic classifier, PC / PCC (PD paper Sec. 3.2, Eq. 4-5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pdrl.errors import ConfigError
from pdrl.losses.base import DependencyLoss, Layout, ScoreMatrix


class PCCLoss(DependencyLoss):
    """Probabilistic classifier coding: tell joint pairs (label 1) from marginal pairs (label 0).

    Binary cross-entropy with logits f (PD paper Eq. 4), written with softplus so that no score
    overflows::

        balanced:    L = E_P softplus(-f) + E_Q softplus(f)                      log-PD = f
        imbalanced:  L = (sum_P softplus(-f) + sum_Q softplus(f)) / (n m)        log-PD = f + log(m - 1)

    The imbalanced form weighs every joint and marginal entry equally (n positives, n(m-1) negatives, m - 1
    the marginal candidates per row that the layout gives), so its optimal logit is the log-PD minus the log
    prior ratio log(m-1) (Eq. 5); the readout adds it back.
    The balanced form (the SSL "PCC" of the PD code, identical to the JS objective) learns log-PD directly.
    MI readout: ``E_P[log-PD]``.

    Args:
        balanced: weigh the joint and the marginal terms equally (True) or every entry equally (False).

    Example::

        criterion = PCCLoss()
        loss = criterion(critic(embed_x(x), embed_y(y)))                      # (n, n), positives on the diagonal
        loss = criterion(CosineCritic(0.1).two_view(z_a, z_b), TwoViewLayout())  # SimCLR's layout
        log_pd = criterion.log_pd(scores)                                     # pointwise log-PD of every pair
    """

    def __init__(self, balanced: bool = True) -> None:
        super().__init__()
        if not isinstance(balanced, bool):
            raise ConfigError(f"PCCLoss(balanced=...) must be True or False, got {balanced!r}.")
        self.balanced = balanced

    def objective(self, matrix: ScoreMatrix) -> torch.Tensor:
        joint_term = F.softplus(-matrix.joint)
        marginal_term = F.softplus(matrix.scores)
        if self.balanced:
            return -(matrix.joint_mean(joint_term) + matrix.marginal_mean(marginal_term))
        n_entries = matrix.n_joint + matrix.n_marginal
        return (
            -(matrix.joint_mean(joint_term) * matrix.n_joint + matrix.marginal_mean(marginal_term) * matrix.n_marginal)
            / n_entries
        )

    def mi_readout(self, matrix: ScoreMatrix) -> torch.Tensor:
        log_prior_ratio = 0.0 if self.balanced else math.log(matrix.n_negatives)
        return matrix.joint_mean(matrix.joint + log_prior_ratio)

    def _log_prior_ratio(self, scores: torch.Tensor, layout: Layout | None) -> float:
        """log(m - 1), the marginal candidates per row; without a layout, the width of a paired matrix."""
        if self.balanced:
            return 0.0
        if layout is None:  # a paired matrix, or a retrieval matrix padded to the training width
            return math.log(scores.shape[-1] - 1)
        return math.log(layout.n_negatives(*scores.shape))

    def log_pd(self, scores: torch.Tensor, layout: Layout | None = None) -> torch.Tensor:
        return scores + self._log_prior_ratio(scores, layout)

    def scores_from_log_pd(self, log_pd: torch.Tensor, layout: Layout | None = None) -> torch.Tensor:
        return log_pd - self._log_prior_ratio(log_pd, layout)
