"""Objectives on a stack of location score matrices in one call, and AMDIM's pooled-negatives NCE.

AMDIM's critic (``pdrl.heads.MultiLocationCritic``) gives one ``(n, m)`` score matrix per target
location; the deep task stacks every location of every direction into one ``(n, m, K)`` tensor (K = 198
for the 1->5, 1->7 and 5->5 pairings in both directions). ``LocationScoreMatrix`` is a ``ScoreMatrix``
whose means run over rows and columns only, so an objective written for one matrix returns a vector of K
values, one per location, from a single call::

    objective.training_value(LocationScoreMatrix(scores, groups, layout))[k]
        == objective.training_value(ScoreMatrix(scores[:, :, k], layout))

(``tests/test_location_losses.py`` checks it, value and gradient, for every registered objective and every
layout). The layout (``pdrl.losses.layouts``, ``PairedLayout()`` by default, as in the deep task) places the
positives of every location matrix and gives the marginal candidates per row, m - 1 below in the paired
layout. The ``groups`` of the locations (which direction each belongs to) matter only to pooled objectives.

``PooledCPCLoss`` is the NCE of AMDIM (Bachman et al. 2019, ``costs.py``): for each positive (i, l) of a
group (a direction with L locations) one softmax over the positive and the ``(m - 1) * L`` negatives of
every other image at every location of the group::

    nce(i, l) = f[i, i, l] - log( exp f[i, i, l] + sum_{j != i} sum_{l' in group} exp f[i, j, l'] )
    I_pooled(l) = log(1 + (m - 1) L) + 1/n * sum_i nce(i, l)          (per location; the loss is its negative)

In another layout the negatives of row i are its marginal entries (``j != i`` above) and m - 1 is the
layout's count of them. On a single matrix (L = 1) it is exactly CPC (``pdrl.losses.CPCLoss``).
"""

from __future__ import annotations

import math

import torch

from pdrl.losses.base import ScoreMatrix
from pdrl.losses.contrastive import CPCLoss
from pdrl.losses.layouts import Layout


class LocationScoreMatrix(ScoreMatrix):
    """K score matrices sharing rows, columns and layout, ``(n, m, K)``; every mean keeps the location axis.

    The rows and columns are placed by a layout, as for ``ScoreMatrix`` (``PairedLayout()`` when None: local
    ``(n, n)`` or columns gathered from every rank; ``TwoViewLayout()`` and ``QueueLayout(K)`` fit too), and
    the same placement holds at every location. ``joint`` is ``(n, K)``; ``joint_mean``, ``marginal_mean`` and
    ``marginal_logmeanexp`` return ``(K,)``; ``row_logsumexp`` returns ``(n, K)``;
    ``n_negatives`` (and the readouts that use it) comes from the layout.

    Args:
        scores: ``(n, m, K)`` location score matrices.
        groups: ``(K,)`` integer group (direction) of every location, ``0 .. G - 1``; None: one group.
        layout: where the positives of every location matrix sit (``pdrl.losses.layouts``).
    """

    def __init__(self, scores: torch.Tensor, groups: torch.Tensor | None = None, layout: Layout | None = None) -> None:
        if scores.dim() != 3:
            raise ValueError(f"location scores must be (n, m, K), got shape {tuple(scores.shape)}.")
        self._place(scores, layout)
        n_locations = scores.shape[2]
        if groups is None:
            groups = torch.zeros(n_locations, dtype=torch.long, device=scores.device)
        if groups.shape != (n_locations,):
            raise ValueError(
                f"groups must give one group per location, shape ({n_locations},), got {tuple(groups.shape)}."
            )
        self.groups = groups.to(scores.device)
        self.n_groups = int(self.groups.max()) + 1
        self.group_sizes = torch.bincount(self.groups, minlength=self.n_groups)

    def group_logsumexp(self, values: torch.Tensor) -> torch.Tensor:
        """``(n, K)`` values -> ``(n, G)``: the log-sum-exp of each row over the locations of each group."""
        member = self.groups[None, :] == torch.arange(self.n_groups, device=values.device)[:, None]
        log_member = torch.zeros(member.shape, dtype=values.dtype, device=values.device).masked_fill(~member, -math.inf)
        return torch.logsumexp(values[:, None, :] + log_member, dim=2)


def location_losses(
    objective: torch.nn.Module, scores: torch.Tensor, groups: torch.Tensor, layout: Layout | None = None
) -> torch.Tensor:
    """The loss of every location score matrix of ``(n, m, K)`` scores in one call: ``(K,)``."""
    values = -objective.training_value(LocationScoreMatrix(scores, groups, layout))
    if values.shape != (scores.shape[2],):
        raise TypeError(
            f"{type(objective).__name__}.training_value reduced over the location axis "
            f"(gave shape {tuple(values.shape)}); "
            "it must take its means through the ScoreMatrix methods to be evaluated on stacked locations."
        )
    return values


@torch.no_grad()
def location_mis(
    objective: torch.nn.Module, scores: torch.Tensor, groups: torch.Tensor, layout: Layout | None = None
) -> torch.Tensor:
    """The MI readout of every location score matrix, ``(K,)``, without gradient."""
    # float64, exact, like DependencyLoss.mi
    return objective.mi_readout(LocationScoreMatrix(scores.detach().double(), groups, layout))


class PooledCPCLoss(CPCLoss):
    """CPC with AMDIM's pooled negatives on stacked location scores (formula in the module docstring).

    On a ``ScoreMatrix`` (one location) it is ``CPCLoss``. On a ``LocationScoreMatrix`` it returns one value
    per location, ``log(1 + (m - 1) L) + mean_i nce(i, l)``, the negatives of a positive being the row's
    marginal scores (every other image in the paired layout) at every location of the positive's group, and
    m - 1 the layout's marginal candidates per row; the MI readout is the same quantity.
    """

    def training_value(self, matrix: ScoreMatrix) -> torch.Tensor:
        if not isinstance(matrix, LocationScoreMatrix):
            return super().training_value(matrix)
        negatives = matrix.scores.masked_fill(~matrix.marginal_mask, -math.inf)
        pooled = matrix.group_logsumexp(torch.logsumexp(negatives, dim=1))  # (n, G)
        per_positive = matrix.joint - torch.logaddexp(matrix.joint, pooled[:, matrix.groups])
        candidates = 1.0 + matrix.n_negatives * matrix.group_sizes[matrix.groups].to(matrix.scores.dtype)
        return torch.log(candidates) + matrix.joint_mean(per_positive)
