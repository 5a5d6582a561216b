"""The probabilistic classifier, PC / PCC (PD paper Sec. 3.2, Eq. 4-5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pdrl.errors import ConfigError
from pdrl.losses.base import DependencyLoss, Layout, ScoreMatrix, trained_negatives


class PCCLoss(DependencyLoss):
    """Probabilistic classifier coding: tell joint pairs (label 1) from marginal pairs (label 0).

    Binary cross-entropy with logits f (PD paper Eq. 4), written with softplus so that no score
    overflows::

        balanced:    L = E_P softplus(-f) + E_Q softplus(f)                      log-PD = f
        imbalanced:  L = (sum_P softplus(-f) + sum_Q softplus(f)) / (n m)        log-PD = f + log(k)

    The imbalanced form weighs every joint and marginal entry equally (n positives, n k negatives, k = m - 1
    the marginal candidates per row that the layout gives in training), so its optimal logit is the log-PD minus
    the log prior ratio log(k) (Eq. 5); the readouts add it back. k is a property of the *training* matrix, not
    of the one read out: ``log_pd``, ``scores_from_log_pd`` and ``mi`` take it as ``n_negatives=k`` and otherwise
    from the layout of the matrix they are given, or its width - 1 when it is paired
    (``pdrl.losses.base.trained_negatives``). Pass ``n_negatives`` to read out any other matrix, e.g. a critic
    trained on batches of 128 pairs (k = 127) scoring 5 retrieval candidates: ``log_pd = f + log(127)``.
    The balanced form (the SSL "PCC" of the PD code, identical to the JS objective) learns log-PD directly and
    ignores ``n_negatives``. MI readout: ``E_P[log-PD]``.

    Args:
        balanced: weigh the joint and the marginal terms equally (True) or every entry equally (False).

    Example::

        criterion = PCCLoss()
        loss = criterion(critic(embed_x(x), embed_y(y)))                      # (n, n), positives on the diagonal
        loss = criterion(CosineCritic(0.1).two_view(z_a, z_b), TwoViewLayout())  # SimCLR's layout
        log_pd = criterion.log_pd(scores)                                     # pointwise log-PD of every pair
        log_pd = PCCLoss(balanced=False).log_pd(candidates, n_negatives=127)  # (n, 5) read at training k = 127
    """

    def __init__(self, balanced: bool = True) -> None:
        super().__init__()
        if not isinstance(balanced, bool):
            raise ConfigError(f"PCCLoss(balanced=...) must be True or False, got {balanced!r}.")
        self.balanced = balanced

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        joint_term = F.softplus(-matrix.joint)
        marginal_term = F.softplus(matrix.scores)
        if self.balanced:
            return -(matrix.joint_mean(joint_term) + matrix.marginal_mean(marginal_term))
        n_entries = matrix.n_joint + matrix.n_marginal
        return (
            -(matrix.joint_mean(joint_term) * matrix.n_joint + matrix.marginal_mean(marginal_term) * matrix.n_marginal)
            / n_entries
        )

    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        count = matrix.n_negatives if n_negatives is None else trained_negatives((), None, n_negatives)
        return matrix.joint_mean(matrix.joint + self._log_prior_ratio(count))

    def _log_prior_ratio(self, n_negatives: int) -> float:
        """log(k) of the imbalanced form for k training negatives per row, 0 for the balanced form."""
        return 0.0 if self.balanced else math.log(n_negatives)

    def _readout_shift(self, scores: torch.Tensor, layout: Layout | None, n_negatives: int | None) -> float:
        if self.balanced:
            return 0.0
        return self._log_prior_ratio(trained_negatives(tuple(scores.shape), layout, n_negatives))

    def log_pd(
        self, scores: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        return scores + self._readout_shift(scores, layout, n_negatives)

    def scores_from_log_pd(
        self, log_pd: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        return log_pd - self._readout_shift(log_pd, layout, n_negatives)
