"""The score-matrix convention shared by every objective, and the base class of the losses.

A critic scores pairs: ``scores[i, j] = critic(x_i, y_j)``. A *layout* (``pdrl.losses.layouts``) says
which entry of each row is its positive (joint) pair, which entries are excluded, and how many marginal
candidates a row has. The default, ``PairedLayout()``, is one positive per row: an n x n matrix with
joint pairs on the diagonal, or n x (world_size * n) when the columns were gathered from every rank
(``pdrl.distributed.gather_with_grad``), the positive of local row i at column ``rank * n + i``.
``TwoViewLayout()`` is SimCLR's 2N x 2N matrix and ``QueueLayout(K)`` MoCo's queue of past keys. All the
marginal entries are samples of P(X)P(Y).

Every mean below is taken over the *global* batch (summed over ranks with a differentiable
all-reduce), so a loss computed on 2 ranks with half the batch each equals, value and gradient, the loss
of 1 process on the whole batch. Scores are promoted to float32 before any reduction, which keeps the
losses finite under bfloat16 / float16 autocast.
"""

from __future__ import annotations

import abc
import math
import numbers

import torch
from torch import nn

from pdrl import distributed
from pdrl.losses.layouts import Layout, PairedLayout


def exp_linear_above(z: torch.Tensor, limit: float = 10.0) -> torch.Tensor:
    """``exp(z)`` for ``z <= limit``, continued linearly (value and slope match) above it.

    The exponential partition terms of NWJ, JS and Density Matching I would overflow to ``inf`` for
    scores in the hundreds; above ``limit`` they grow linearly instead, so value and gradient stay finite
    while the loss still pushes the scores down. At the default limit the slope never exceeds
    e^10 ~ 2.2e4, so the gradient flowing back into float16 scores stays inside float16's range. The
    terms concerned are ~1 at the optimum (E_Q[r] = 1): only a diverging critic reaches the linear part.
    """
    # where, not clamp: clamp passes no gradient at z == limit, where the slope is e^limit from both sides
    return torch.exp(torch.where(z > limit, limit, z)) * (1.0 + torch.relu(z - limit))


def trained_negatives(shape: tuple[int, ...], layout: Layout | None, n_negatives: int | None) -> int:
    """The marginal candidates per row that a critic was trained against, for a readout of ``shape`` scores.

    ``n_negatives`` when given (an int >= 1); else the layout's count for an ``(n, m)`` matrix (leading batch
    axes are allowed); else that of a paired matrix, ``m - 1`` (``(n, n)``, or ``(n, world_size * n)`` gathered).
    A matrix that fits neither, such as ``n`` rows of 5 retrieval candidates, has no count of its own: without
    ``n_negatives`` it raises ``ValueError``.
    """
    if n_negatives is not None:
        if isinstance(n_negatives, bool) or not isinstance(n_negatives, numbers.Integral) or n_negatives < 1:
            raise ValueError(
                f"n_negatives={n_negatives!r} must be a whole number >= 1: the marginal candidates per row of the "
                "training score matrix (batch size - 1 for a paired n x n matrix)."
            )
        return int(n_negatives)
    if len(shape) < 2:
        raise ValueError(
            f"scores of shape {tuple(shape)} are no score matrix: pass n_negatives=<marginal candidates per row in "
            "training> to read them out."
        )
    try:
        return (layout if layout is not None else PairedLayout()).n_negatives(*shape[-2:])
    except ValueError as error:
        raise ValueError(
            f"{error} To read out scores of another shape (e.g. retrieval candidates), pass "
            "n_negatives=<marginal candidates per row in training>."
        ) from error


class ScoreMatrix:
    """Joint/marginal bookkeeping for one score matrix in a layout, with means over the global batch.

    Args:
        scores: ``(n, m)`` critic values.
        layout: where the positives sit (``pdrl.losses.layouts``); ``PairedLayout()`` when None, which
            takes ``(n, n)`` or ``(n, world_size * n)`` with gathered columns.

    Entries the layout excludes (SimCLR's self-pairs) take no part in any mean: their values are replaced
    by 0 here, so they get no gradient whatever the critic put there.

    The bookkeeping is written for scores with trailing axes after the two pair axes, ``(n, m, *K)``: the
    masks broadcast over them and every mean reduces the pair axes only, so it returns one value per trailing
    index (``pdrl.losses.locations.LocationScoreMatrix`` stacks location matrices that way). ``ScoreMatrix``
    itself takes a single 2-D matrix.
    """

    def __init__(self, scores: torch.Tensor, layout: Layout | None = None) -> None:
        if scores.dim() != 2:
            raise ValueError(f"scores must be a 2-D (n, m) matrix of critic values, got shape {tuple(scores.shape)}.")
        self._place(scores, layout)

    def _place(self, scores: torch.Tensor, layout: Layout | None) -> None:
        """Resolve ``layout`` for the pair axes of ``(n, m, *K)`` scores and build the masks and joint entries."""
        if layout is not None and not isinstance(layout, Layout):
            raise TypeError(
                "layout must be a pdrl.losses layout (PairedLayout(), TwoViewLayout() or QueueLayout(K)), "
                f"got {layout!r}."
            )
        self.layout = layout if layout is not None else PairedLayout()
        n_rows, n_cols = scores.shape[:2]
        placement = self.layout.place(n_rows, n_cols, scores.device)
        if placement.n_negatives < 1:
            raise ValueError(
                f"scores of shape {tuple(scores.shape)} in {self.layout!r} have no marginal (negative) pair: "
                "a batch needs at least 2 pairs (or a non-empty queue)."
            )
        trailing = (1,) * (scores.dim() - 2)  # the masks are (n, m), broadcast over any trailing axes
        scores = scores if scores.dtype == torch.float64 else scores.float()
        self.excluded_mask = None
        if placement.excluded is not None:
            self.excluded_mask = placement.excluded.view(n_rows, n_cols, *trailing)
            scores = scores.masked_fill(self.excluded_mask, 0.0)
        self.scores = scores
        self.n_rows, self.n_cols = n_rows, n_cols
        self.synced, self.n_total_rows = placement.synced, placement.n_total_rows
        self.n_negatives = placement.n_negatives
        rows = torch.arange(n_rows, device=scores.device)
        positive = torch.zeros(n_rows, n_cols, dtype=torch.bool, device=scores.device)
        positive[rows, placement.positive_columns] = True
        marginal = ~positive
        if placement.excluded is not None:
            marginal &= ~placement.excluded
        self.positive_mask = positive.view(n_rows, n_cols, *trailing)
        self.marginal_mask = marginal.view(n_rows, n_cols, *trailing)
        self.joint = self.scores[rows, placement.positive_columns]

    @property
    def n_candidates(self) -> int:
        """Candidates per row, the joint one included (the m of CPC's ``log m``)."""
        return self.n_negatives + 1

    @property
    def n_joint(self) -> int:
        """Number of joint pairs in the global batch."""
        return self.n_total_rows

    @property
    def n_marginal(self) -> int:
        """Number of marginal pairs in the global batch."""
        return self.n_total_rows * self.n_negatives

    def _global_sum(self, value: torch.Tensor) -> torch.Tensor:
        return distributed.sum_over_ranks(value) if self.synced else value

    def joint_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of per-joint-pair ``values`` (shape ``(n,)``) over the global batch."""
        return self._global_sum(values.sum(dim=0)) / self.n_joint

    def marginal_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean of an ``(n, m)`` matrix of ``values`` over the marginal entries."""
        return self._global_sum(values.masked_fill(~self.marginal_mask, 0.0).sum(dim=(0, 1))) / self.n_marginal

    def marginal_logmeanexp(self, values: torch.Tensor) -> torch.Tensor:
        """``log mean exp`` of ``values`` over the marginal entries, stable and global over ranks."""
        masked = values.masked_fill(~self.marginal_mask, -math.inf)
        shift = masked.detach().amax(dim=(0, 1))
        shift = distributed.max_over_ranks(shift) if self.synced else shift
        total = self._global_sum(torch.exp(masked - shift).sum(dim=(0, 1)))
        return shift + torch.log(total) - math.log(self.n_marginal)

    def row_logsumexp(self, values: torch.Tensor) -> torch.Tensor:
        """``logsumexp_j values[i, j]`` per row, over the row's candidates (joint included, excluded entries not)."""
        if self.excluded_mask is not None:
            values = values.masked_fill(self.excluded_mask, -math.inf)
        return torch.logsumexp(values, dim=1)


class DependencyLoss(nn.Module, abc.ABC):
    """Base class: a training loss, an MI readout and a pointwise log-PD from a score matrix and its layout.

    Subclasses implement ``training_value`` (the value of the training objective, maximised in training),
    ``mi_readout`` and ``log_pd``; ``forward`` returns ``-training_value``. ``scores_from_log_pd`` is the inverse
    map of ``log_pd``: it gives the critic output at which the loss is optimal when the true log-PD is known.
    Every method takes an optional ``layout`` (``PairedLayout()`` when None).

    The readouts (``mi``, ``mi_readout``, ``log_pd``, ``scores_from_log_pd``) also take the keyword
    ``n_negatives``: the number of marginal candidates per row that the critic was *trained* against. A readout
    whose optimal critic depends on that count (the imbalanced ``PCCLoss``, whose logit is the log-PD minus the
    prior ratio log(n_negatives)) needs it whenever the matrix it reads differs from the training matrix, e.g.
    5 retrieval candidates scored by a critic trained on batches of 512 pairs; it resolves it with
    ``trained_negatives``: ``n_negatives`` when given, else the layout's count for the matrix, else (a paired
    matrix) its width - 1. Every other readout does not depend on it and accepts and ignores it; CPC's
    ``log m`` is not such a count (it is the size of the softmax the readout takes on the matrix it is given).

    Example (any loss, here NWJ)::

        criterion = NWJLoss()
        loss = criterion(scores)                             # (n, n), positives on the diagonal
        loss = criterion(scores, TwoViewLayout())            # SimCLR's 2N x 2N: critic.two_view(z_a, z_b)
        mi = criterion.mi(scores, QueueLayout(len(queue)))   # MoCo: critic.with_queue(q, k, queue)
    """

    def forward(self, scores: torch.Tensor, layout: Layout | None = None) -> torch.Tensor:
        """Loss to minimise (a scalar): the negative training objective."""
        return -self.training_value(ScoreMatrix(scores, layout))

    @torch.no_grad()
    def mi(self, scores: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None) -> torch.Tensor:
        """The MI readout in nats (a float64 scalar without gradient), computed in float64 from the scores.

        Readouts are exact: the linear continuation of ``exp`` (``exp_linear_above``) is in training losses only,
        so a diverged critic reads as +-inf, not as a large finite number. ``n_negatives``: the training count of
        marginal candidates per row, for the readouts that depend on it (class docstring).
        """
        return self.mi_readout(ScoreMatrix(scores.detach().double(), layout), n_negatives=n_negatives)

    @abc.abstractmethod
    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        """The training objective's value, to maximise, on the global batch."""

    @abc.abstractmethod
    def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
        """The MI estimate in nats on the global batch (``n_negatives``: see the class docstring)."""

    def log_pd(
        self, scores: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        """Pointwise log-PD, log p(x,y) / (p(x)p(y)), estimated from each score (same shape).

        ``n_negatives``: the training count of marginal candidates per row, for the readouts that depend on it
        (class docstring); this one does not.
        """
        return scores

    def scores_from_log_pd(
        self, log_pd: torch.Tensor, layout: Layout | None = None, *, n_negatives: int | None = None
    ) -> torch.Tensor:
        """The critic output that this loss learns at its optimum for a given true log-PD (``n_negatives``: as
        in ``log_pd``)."""
        return log_pd
