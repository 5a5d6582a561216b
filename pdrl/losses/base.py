"""The score-matrix convention shared by every objective, and the base class of the losses.

A critic scores every pair of a batch: ``scores[i, j] = critic(x_i, y_j)``. On one process the matrix
is n x n and the positive (joint) pair of row i is column i. When the columns were gathered from
every rank (``pdrl.distributed.gather_with_grad``) the matrix is n x (world_size * n) and the positive
of local row i sits at column ``rank * n + i``. All the other entries are samples of P(X)P(Y).

Every mean below is taken over the *global* batch (summed over ranks with a differentiable
all-reduce), so a loss computed on 2 ranks with half the batch each equals, value and gradient, the loss
of 1 process on the whole batch. Scores are promoted to float32 before any reduction, which keeps the
losses finite under bfloat16 / float16 autocast.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import nn

from pdrl import distributed


def exp_linear_above(z: torch.Tensor, limit: float = 10.0) -> torch.Tensor:
    """``exp(z)`` for ``z <= limit``, continued linearly (value and slope match) above it.

    The exponential partition terms of NWJ, JS and Density Matching I would overflow to ``inf`` for
    scores in the hundreds; above ``limit`` they grow linearly instead, so value and gradient stay finite
    while the loss still pushes the scores down. At the default limit the slope never exceeds
    e^10 ~ 2.2e4, so the gradient flowing back into float16 scores stays inside float16's range. The
    terms concerned are ~1 at the optimum (E_Q[r] = 1): only a diverging critic reaches the linear part.
    """
    return torch.exp(z.clamp(max=limit)) * (1.0 + torch.relu(z - limit))


class ScoreMatrix:
    """Joint/marginal bookkeeping for one score matrix, with means over the global batch.

    Args:
        scores: ``(n, m)`` with ``m == n`` (local) or ``m == world_size * n`` (gathered columns).
    """

    def __init__(self, scores: torch.Tensor) -> None:
        if scores.dim() != 2:
            raise ValueError(f"scores must be a 2-D (n, m) matrix of critic values, got shape {tuple(scores.shape)}.")
        n_rows, n_cols = scores.shape
        world = distributed.world_size()
        if n_cols == n_rows:
            self.offset, self.synced = 0, False
        elif distributed.is_distributed() and n_cols == world * n_rows:
            self.offset, self.synced = distributed.rank() * n_rows, True
        else:
            raise ValueError(
                f"scores of shape {tuple(scores.shape)} fit no layout: expected (n, n), or (n, world_size * n) "
                f"with columns gathered from every rank (world_size is {world})."
            )
        if n_cols < 2:
            raise ValueError("scores need a batch of at least 2 pairs to have any marginal (off-diagonal) pair.")
        self.scores = scores if scores.dtype == torch.float64 else scores.float()
        self.n_rows, self.n_cols = n_rows, n_cols
        self.n_total_rows = n_rows * (world if self.synced else 1)
        columns = torch.arange(n_rows, device=scores.device) + self.offset
        self.positive_mask = torch.zeros_like(self.scores, dtype=torch.bool)
        self.positive_mask[torch.arange(n_rows, device=scores.device), columns] = True
        self.joint = self.scores[torch.arange(n_rows, device=scores.device), columns]

    @property
    def n_joint(self) -> int:
        """Number of joint pairs in the global batch."""
        return self.n_total_rows

    @property
    def n_marginal(self) -> int:
        """Number of marginal (off-diagonal) pairs in the global batch."""
        return self.n_total_rows * (self.n_cols - 1)

    def _global_sum(self, value: torch.Tensor) -> torch.Tensor:
        return distributed.sum_over_ranks(value) if self.synced else value

    def joint_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of per-joint-pair ``values`` (shape ``(n,)``) over the global batch."""
        return self._global_sum(values.sum()) / self.n_joint

    def marginal_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of an ``(n, m)`` matrix of ``values`` over the marginal (off-diagonal) entries."""
        return self._global_sum(values.masked_fill(self.positive_mask, 0.0).sum()) / self.n_marginal

    def all_pairs_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of an ``(n, m)`` matrix of ``values`` over every entry of the global matrix."""
        return self._global_sum(values.sum()) / (self.n_total_rows * self.n_cols)

    def marginal_logmeanexp(self, values: torch.Tensor) -> torch.Tensor:
        """``log mean exp`` of ``values`` over the marginal entries, stable and global over ranks."""
        masked = values.masked_fill(self.positive_mask, -math.inf)
        shift = distributed.max_over_ranks(masked.detach().amax()) if self.synced else masked.detach().amax()
        total = self._global_sum(torch.exp(masked - shift).sum())
        return shift + torch.log(total) - math.log(self.n_marginal)

    def row_logsumexp(self, values: torch.Tensor) -> torch.Tensor:
        """``logsumexp_j values[i, j]`` per row, over all columns (joint included)."""
        return torch.logsumexp(values, dim=1)


class DependencyLoss(nn.Module, abc.ABC):
    """Base class: a training loss, an MI readout and a pointwise log-PD from one score matrix.

    Subclasses implement ``objective`` (the quantity maximised in training), ``mi_readout`` and
    ``log_pd``; ``forward`` returns ``-objective``. ``scores_from_log_pd`` is the inverse map of
    ``log_pd``: it gives the critic output at which the loss is optimal when the true log-PD is known.
    """

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """Loss to minimise (a scalar): the negative training objective."""
        return -self.objective(ScoreMatrix(scores))

    @torch.no_grad()
    def mi(self, scores: torch.Tensor) -> torch.Tensor:
        """The MI readout in nats (a float64 scalar without gradient), computed in float64 from the scores.

        Readouts are exact: the linear continuation of ``exp`` (``exp_linear_above``) is in training losses only,
        so a diverged critic reads as +-inf, not as a large finite number.
        """
        return self.mi_readout(ScoreMatrix(scores.detach().double()))

    @abc.abstractmethod
    def objective(self, matrix: ScoreMatrix) -> torch.Tensor:
        """The training objective (to maximise) on the global batch."""

    @abc.abstractmethod
    def mi_readout(self, matrix: ScoreMatrix) -> torch.Tensor:
        """The MI estimate in nats on the global batch."""

    def log_pd(self, scores: torch.Tensor) -> torch.Tensor:
        """Pointwise log-PD, log p(x,y) / (p(x)p(y)), estimated from each score (same shape)."""
        return scores

    def scores_from_log_pd(self, log_pd: torch.Tensor) -> torch.Tensor:
        """The critic output that this loss learns at its optimum for a given true log-PD."""
        return log_pd
