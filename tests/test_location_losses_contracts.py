"""Contracts of LocationScoreMatrix, location_losses and PooledCPCLoss: groups, dtypes, messages, exact values."""

from __future__ import annotations

import math

import pytest
import torch

from pdrl.losses import CPCLoss
from pdrl.losses.locations import LocationScoreMatrix, PooledCPCLoss, location_losses, location_mis
from tests.messages import exactly
from tests.simulated_ranks import as_rank_one_of_two_mirrored


def paired_scores(n: int = 4, n_locations: int = 5, seed: int = 0) -> torch.Tensor:
    """``(n, n, K)`` float64 scores, positives on the diagonal standing out."""
    scores = torch.randn(n, n, n_locations, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    scores[torch.arange(n), torch.arange(n)] += 2.0
    return scores


def pooled_nce_by_hand(scores: torch.Tensor, groups: list[int]) -> list[float]:
    """``log(1 + (m - 1) L) + mean_i nce(i, l)`` per location (module docstring), in Python floats."""
    f = scores.tolist()
    n, m, n_locations = scores.shape
    values = []
    for location in range(n_locations):
        group = [k for k in range(n_locations) if groups[k] == groups[location]]
        nce = 0.0
        for i in range(n):
            positive = f[i][i][location]
            negatives = sum(math.exp(f[i][j][k]) for j in range(m) if j != i for k in group)
            nce += positive - math.log(math.exp(positive) + negatives)
        values.append(math.log(1 + (m - 1) * len(group)) + nce / n)
    return values


def test_without_groups_every_location_is_in_one_group() -> None:
    scores = paired_scores(n_locations=3)
    matrix = LocationScoreMatrix(scores)
    assert matrix.groups.dtype == torch.long
    assert matrix.groups.tolist() == [0, 0, 0]
    assert matrix.n_groups == 1 and matrix.group_sizes.tolist() == [3]
    pooled = PooledCPCLoss().training_value(matrix)
    torch.testing.assert_close(pooled, torch.tensor(pooled_nce_by_hand(scores, [0, 0, 0]), dtype=torch.float64))


def test_groups_give_their_count_sizes_and_per_group_logsumexp() -> None:
    groups = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    matrix = LocationScoreMatrix(paired_scores(n_locations=7), groups)
    assert matrix.n_groups == 3
    assert matrix.group_sizes.tolist() == [2, 2, 3]
    values = torch.randn(4, 7, dtype=torch.float64)
    summed = matrix.group_logsumexp(values)
    assert summed.shape == (4, 3)
    rows = values.tolist()
    expected = [[math.log(sum(math.exp(row[k]) for k in range(7) if groups[k] == g)) for g in range(3)] for row in rows]
    torch.testing.assert_close(summed, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_group_logsumexp_keeps_the_dtype_of_its_values(dtype: torch.dtype) -> None:
    matrix = LocationScoreMatrix(paired_scores(n_locations=3), torch.tensor([0, 1, 1]))
    values = torch.tensor([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]], dtype=dtype)
    summed = matrix.group_logsumexp(values)
    assert summed.dtype == dtype
    expected = torch.tensor(
        [[0.0, math.log(math.exp(1.0) + math.exp(2.0))], [3.0, math.log(math.exp(-1.0) + math.exp(0.5))]]
    )
    torch.testing.assert_close(summed.float(), expected, atol=2e-2, rtol=1e-2)


def test_groups_of_the_wrong_shape_are_reported_exactly() -> None:
    message = "groups must give one group per location, shape (5,), got (2, 2)."
    with pytest.raises(ValueError, match=exactly(message)):
        LocationScoreMatrix(paired_scores(), torch.zeros(2, 2, dtype=torch.long))
    message = "location scores must be (n, m, K), got shape (4, 4)."
    with pytest.raises(ValueError, match=exactly(message)):
        LocationScoreMatrix(paired_scores()[:, :, 0])


def test_an_objective_reducing_over_locations_is_named_in_the_message() -> None:
    class SummedCPC(CPCLoss):
        def training_value(self, matrix):  # noqa: ANN001 - deliberately sums the K location values
            return super().training_value(matrix).sum()

    message = (
        "SummedCPC.training_value reduced over the location axis (gave shape ()); "
        "it must take its means through the ScoreMatrix methods to be evaluated on stacked locations."
    )
    with pytest.raises(TypeError, match=exactly(message)):
        location_losses(SummedCPC(), paired_scores(), torch.zeros(5, dtype=torch.long))


def test_pooled_readout_is_exact_in_float64() -> None:
    """log(1 + (m - 1) L) is taken in the scores' float64, not float32."""
    scores, groups = paired_scores(n=5, n_locations=5), [0, 0, 0, 1, 1]
    expected = torch.tensor(pooled_nce_by_hand(scores, groups), dtype=torch.float64)
    readout = location_mis(PooledCPCLoss(), scores, torch.tensor(groups))
    assert readout.dtype == torch.float64
    torch.testing.assert_close(readout, expected, rtol=0.0, atol=1e-12)
    losses = location_losses(PooledCPCLoss(), scores, torch.tensor(groups))
    torch.testing.assert_close(losses, -expected, rtol=0.0, atol=1e-12)


def test_pooled_cpc_on_rank_one_of_two_equals_one_process_on_the_whole_batch(monkeypatch) -> None:  # noqa: ANN001
    """Rank 1's (n, 2n, K) gathered block; rank 0 holds its mirror image, so a sum over ranks doubles."""
    n, groups = 3, [0, 0, 1, 1, 1]
    x, y = paired_scores(n, seed=1), paired_scores(n, seed=2)
    whole = torch.cat([torch.cat([y, x], dim=1), torch.cat([x, y], dim=1)], dim=0)  # (2n, 2n, K), diagonal positives
    expected = torch.tensor(pooled_nce_by_hand(whole, groups), dtype=torch.float64)
    as_rank_one_of_two_mirrored(monkeypatch)
    local = whole[n:]
    matrix = LocationScoreMatrix(local, torch.tensor(groups))
    assert matrix.synced and matrix.n_negatives == 2 * n - 1 and matrix.n_joint == 2 * n
    torch.testing.assert_close(matrix.joint, y[torch.arange(n), torch.arange(n)])
    torch.testing.assert_close(location_mis(PooledCPCLoss(), local, torch.tensor(groups)), expected)
