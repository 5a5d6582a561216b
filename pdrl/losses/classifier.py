"""The probabilistic classifier, PC / PCC (PD paper Sec. 3.2, Eq. 4-5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pdrl.errors import ConfigError
from pdrl.losses.base import DependencyLoss, ScoreMatrix


class PCCLoss(DependencyLoss):
    """Probabilistic classifier coding: tell joint pairs (label 1) from marginal pairs (label 0).

    Binary cross-entropy with logits f (PD paper Eq. 4), written with softplus so that no score
    overflows::

        balanced:    L = E_P softplus(-f) + E_Q softplus(f)                      log-PD = f
        imbalanced:  L = (sum_P softplus(-f) + sum_Q softplus(f)) / (n m)        log-PD = f + log(m - 1)

    The imbalanced form weighs all n*m entries equally (n positives, n(m-1) negatives), so its
    optimal logit is the log-PD minus the log prior ratio log(m-1) (Eq. 5); the readout adds it back.
    The balanced form (the SSL "PCC" of the PD code, identical to the JS objective) learns log-PD directly.
    MI readout: ``E_P[log-PD]``.

    Args:
        balanced: weigh the joint and the marginal terms equally (True) or every entry equally (False).
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
        log_prior_ratio = 0.0 if self.balanced else math.log(matrix.n_cols - 1)
        return matrix.joint_mean(matrix.joint + log_prior_ratio)

    def log_pd(self, scores: torch.Tensor) -> torch.Tensor:
        return scores if self.balanced else scores + math.log(scores.shape[1] - 1)

    def scores_from_log_pd(self, log_pd: torch.Tensor) -> torch.Tensor:
        return log_pd if self.balanced else log_pd - math.log(log_pd.shape[1] - 1)
