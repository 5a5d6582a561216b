"""CPC / InfoNCE (van den Oord et al. 2018; PD paper Table 1)."""

from __future__ import annotations

import math

import torch

from pdrl.losses.base import DependencyLoss, ScoreMatrix


class CPCLoss(DependencyLoss):
    """Contrastive predictive coding (InfoNCE).

    Objective and MI readout (PD paper Table 1, row CPC), with m the number of columns of the global
    score matrix (the joint pair counted)::

        I_CPC = log m + 1/n * sum_i ( f_ii - logsumexp_j f_ij )

    The readout can never exceed ``log m``. The critic learns the log-PD up to a constant per x, so
    ``log_pd`` returns the scores as they are.

    Example::

        criterion = CPCLoss()
        scores = embeddings_x @ embeddings_y.T   # (n, n), positives on the diagonal
        loss = criterion(scores)
        mi = criterion.mi(scores)
    """

    def objective(self, matrix: ScoreMatrix) -> torch.Tensor:
        per_row = matrix.joint - matrix.row_logsumexp(matrix.scores)
        return math.log(matrix.n_cols) + matrix.joint_mean(per_row)

    def mi_readout(self, matrix: ScoreMatrix) -> torch.Tensor:
        return self.objective(matrix)
