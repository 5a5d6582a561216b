"""CPC / InfoNCE (van den Oord et al. 2018; PD paper Table 1), and with its layouts SimCLR's NT-Xent and MoCo's loss."""

from __future__ import annotations

import math

import torch

from pdrl.errors import ConfigError
from pdrl.losses.base import DependencyLoss, Layout, ScoreMatrix


class CPCLoss(DependencyLoss):
    """Contrastive predictive coding (InfoNCE).

    Objective and MI readout (PD paper Table 1, row CPC), with m the number of candidates per row that the
    layout gives (the joint pair counted; m = n on an n x n matrix, 2N - 1 in SimCLR's two-view layout,
    n + K with a queue of K keys)::

        I_CPC = log m + 1/N * sum_i ( f_i,pos(i) - logsumexp_{j candidate of i} f_ij )

    The readout can never exceed ``log m``. The critic learns the log-PD up to a constant per x, so
    ``log_pd`` returns the scores as they are. The loss is ``-I_CPC``: the mean cross-entropy of picking the
    positive among the candidates, minus the constant log m. ``cross_entropy=True`` leaves the constant out,
    so that the value is exactly SimCLR's NT-Xent on ``TwoViewLayout()`` (with a ``CosineCritic``) and MoCo's
    loss on ``QueueLayout(K, batch_negatives=False)``; the gradient is the same either way, and so is ``mi``.

    Neither readout depends on how many negatives the critic was trained against, and both ignore
    ``n_negatives``: the ``log m`` of ``mi`` belongs to the softmax it takes over the m candidates of the matrix
    it is given (the bound with m candidates), so a matrix of another width reads out the bound with its own m.

    CPC is unchanged when a constant is added to a row of scores, so with a bilinear critic a shift of G's output
    (e.g. the bias of its last layer) gets a zero gradient. In float32 that gradient is rounding noise (~1e-7),
    which Adam (eps 1e-8) turns into steps of about lr in a direction the loss never sees: harmless, but two runs
    that sum in another order (1 vs k ranks) differ there; compare them in float64 (``tests/test_fit_distributed.py``).

    Args:
        cross_entropy: return the plain cross-entropy (NT-Xent / MoCo value) instead of ``-I_CPC``.

    Example::

        criterion = CPCLoss()
        scores = embeddings_x @ embeddings_y.T   # (n, n), positives on the diagonal
        loss = criterion(scores)
        mi = criterion.mi(scores)
        # SimCLR: both views anchors, 2N x 2N, self-pairs excluded
        nt_xent = CPCLoss(cross_entropy=True)(CosineCritic(0.5).two_view(z_a, z_b), TwoViewLayout())
    """

    def __init__(self, cross_entropy: bool = False) -> None:
        super().__init__()
        if not isinstance(cross_entropy, bool):
            raise ConfigError(f"CPCLoss(cross_entropy=...) must be True or False, got {cross_entropy!r}.")
        self.cross_entropy = cross_entropy

    def forward(self, scores: torch.Tensor, layout: Layout | None = None) -> torch.Tensor:
        matrix = ScoreMatrix(scores, layout)
        if self.cross_entropy:
            return -self._mean_log_softmax(matrix)
        return -self.training_value(matrix)

    @staticmethod
    def _mean_log_softmax(matrix: ScoreMatrix) -> torch.Tensor:
        return matrix.joint_mean(matrix.joint - matrix.row_logsumexp(matrix.scores))

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        return math.log(matrix.n_candidates) + self._mean_log_softmax(matrix)

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        return self.training_value(matrix)
