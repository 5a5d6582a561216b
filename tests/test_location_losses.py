"""Objectives on stacked location score matrices in one call, and AMDIM's pooled-negatives NCE."""

from __future__ import annotations

import math

import pytest
import torch

from pdrl.losses import OBJECTIVES, CPCLoss, PairedLayout, QueueLayout, TwoViewLayout, build_objective
from pdrl.losses.locations import LocationScoreMatrix, PooledCPCLoss, location_losses, location_mis

# MINE's moving average is state updated once per call: the deep task keeps its per-location calls
STATELESS = sorted(name for name, cls in OBJECTIVES.items() if next(cls().buffers(), None) is None)
PER_LOCATION = [name for name in STATELESS if OBJECTIVES[name] is not PooledCPCLoss]


# (layout, columns of an n-row matrix): the deep task's paired matrices, SimCLR's two views, MoCo's queue
LAYOUTS = {
    "paired": (PairedLayout(), lambda n: n),
    "two_view": (TwoViewLayout(), lambda n: n),
    "queue": (QueueLayout(3), lambda n: n + 3),
    "queue_only_negatives": (QueueLayout(3, batch_negatives=False), lambda n: n + 3),
}


def stacked_scores(
    n: int = 6, sizes: tuple[int, ...] = (3, 4, 2), seed: int = 0, layout: str = "paired"
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    positives = LAYOUTS[layout][0].place(n, LAYOUTS[layout][1](n)).positive_columns
    scores = torch.randn(n, LAYOUTS[layout][1](n), sum(sizes), generator=generator, dtype=torch.float64).abs()
    scores[torch.arange(n), positives] += 2.0  # positives stand out, as after training
    groups = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return scores.requires_grad_(), groups  # positive scores keep every objective (D-RFC's log) in range


def test_the_stateless_objectives_are_all_covered() -> None:
    assert {"cpc", "pcc", "drfc", "nwj", "js", "dv", "smile", "dm1", "dm2", "mice", "cpc_pooled"} <= set(STATELESS)
    assert "mine" not in STATELESS


@pytest.mark.parametrize("layout_name", sorted(LAYOUTS))
@pytest.mark.parametrize("name", PER_LOCATION)
def test_one_call_on_stacked_locations_equals_one_call_per_location(name: str, layout_name: str) -> None:
    """Value and gradient of the weighted sum of location losses, and every MI readout, in every layout."""
    objective, layout = build_objective(name), LAYOUTS[layout_name][0]
    scores, groups = stacked_scores(layout=layout_name)
    weights = torch.rand(scores.shape[2], dtype=torch.float64)
    batched = (weights * location_losses(objective, scores, groups, layout)).sum()
    (batched_grad,) = torch.autograd.grad(batched, scores)
    looped = sum(weights[k] * objective(scores[:, :, k], layout) for k in range(scores.shape[2]))
    (looped_grad,) = torch.autograd.grad(looped, scores)
    torch.testing.assert_close(batched, looped)
    torch.testing.assert_close(batched_grad, looped_grad)
    looped_mis = torch.stack([objective.mi(scores[:, :, k], layout) for k in range(scores.shape[2])])
    torch.testing.assert_close(location_mis(objective, scores, groups, layout), looped_mis)


def amdim_nce_by_hand(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """AMDIM's NCE loss per location, element by element: -mean_i log softmax of (i, l) among its candidates."""
    n, _, n_locations = scores.shape
    losses = []
    for location in range(n_locations):
        group = [k for k in range(n_locations) if groups[k] == groups[location]]
        per_image = []
        for i in range(n):
            positive = scores[i, i, location]
            negatives = [scores[i, j, k] for j in range(n) if j != i for k in group]
            denominator = torch.exp(positive) + sum(torch.exp(value) for value in negatives)
            per_image.append(positive - torch.log(denominator))
        losses.append(-sum(per_image) / n)
    return torch.stack(losses)


def test_pooled_cpc_is_amdims_nce_by_hand() -> None:
    scores, groups = stacked_scores(n=4, sizes=(3, 2))
    objective = PooledCPCLoss()
    candidates = 1 + (4 - 1) * torch.tensor([3, 3, 3, 2, 2], dtype=torch.float64)
    expected = amdim_nce_by_hand(scores, groups) - torch.log(candidates)  # the loss is -(log candidates - NCE)
    torch.testing.assert_close(location_losses(objective, scores, groups), expected)
    # pooling matters: one group of all locations is a different (larger) softmax
    one_group = location_losses(objective, scores, torch.zeros_like(groups))
    assert not torch.allclose(one_group + torch.log(1 + 3 * torch.tensor(5.0, dtype=torch.float64)), expected)


def two_view_nce_by_hand(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Pooled NCE on SimCLR's rows [view_a; view_b]: positive i+-n, negatives every j but i and i+-n, per group."""
    rows, _, n_locations = scores.shape
    losses = []
    for location in range(n_locations):
        group = [k for k in range(n_locations) if groups[k] == groups[location]]
        per_row = []
        for i in range(rows):
            positive = scores[i, (i + rows // 2) % rows, location]
            others = [j for j in range(rows) if j not in (i, (i + rows // 2) % rows)]
            denominator = torch.exp(positive) + sum(torch.exp(scores[i, j, k]) for j in others for k in group)
            per_row.append(positive - torch.log(denominator))
        losses.append(-sum(per_row) / rows)
    return torch.stack(losses)


def test_pooled_cpc_in_the_two_view_layout_takes_the_layouts_negatives() -> None:
    scores, groups = stacked_scores(n=4, sizes=(3, 2), layout="two_view")
    candidates = 1 + (4 - 2) * torch.tensor([3, 3, 3, 2, 2], dtype=torch.float64)  # 2n - 2 negatives per row
    expected = two_view_nce_by_hand(scores, groups) - torch.log(candidates)
    torch.testing.assert_close(location_losses(PooledCPCLoss(), scores, groups, TwoViewLayout()), expected)


@pytest.mark.parametrize("layout_name", sorted(LAYOUTS))
def test_pooled_cpc_on_one_matrix_is_cpc_and_on_one_location_too(layout_name: str) -> None:
    layout = LAYOUTS[layout_name][0]
    scores, _ = stacked_scores(n=6, sizes=(1,), layout=layout_name)
    torch.testing.assert_close(PooledCPCLoss()(scores[:, :, 0], layout), CPCLoss()(scores[:, :, 0], layout))
    torch.testing.assert_close(
        location_losses(PooledCPCLoss(), scores, torch.zeros(1, dtype=torch.long), layout),
        CPCLoss()(scores[:, :, 0], layout)[None],
    )
    assert build_objective("cpc_pooled").__class__ is PooledCPCLoss


def test_bad_location_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"\(n, m, K\)"):
        LocationScoreMatrix(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="one group per location"):
        LocationScoreMatrix(torch.zeros(3, 3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="fit no layout"):
        LocationScoreMatrix(torch.zeros(3, 4, 2))
    with pytest.raises(ValueError, match="fit no queue layout"):
        LocationScoreMatrix(torch.zeros(3, 4, 2), layout=QueueLayout(2))
    with pytest.raises(TypeError, match="must be a pdrl.losses layout"):
        LocationScoreMatrix(torch.zeros(3, 3, 2), layout="paired")


def test_an_objective_that_reduces_over_locations_is_reported() -> None:
    class Flattening(CPCLoss):
        def training_value(self, matrix):  # noqa: ANN001 - a deliberately wrong objective
            return matrix.scores.mean()

    scores, groups = stacked_scores()
    with pytest.raises(TypeError, match="reduced over the location axis"):
        location_losses(Flattening(), scores, groups)


def test_bf16_location_scores_give_float32_losses() -> None:
    scores, groups = stacked_scores()
    losses = location_losses(PooledCPCLoss(), scores.detach().bfloat16(), groups)
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    assert math.isclose(
        losses.sum().item(), location_losses(PooledCPCLoss(), scores, groups).sum().item(), rel_tol=0.05
    )
