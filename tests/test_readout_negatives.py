"""The readouts take the training count of negatives per row as ``n_negatives``, not from the matrix's width.

The imbalanced PC learns ``f = log-PD - log(k)`` for k marginal candidates per row in training; read out on a
matrix of another width (5 retrieval candidates of a critic trained at batch 128) it must add ``log(k)`` of
training, not of the matrix it is given. Every other readout does not depend on k and ignores the argument.
"""

from __future__ import annotations

import math

import pytest
import torch

from pdrl.losses import OBJECTIVES, PCCLoss, QueueLayout, TwoViewLayout
from pdrl.losses.base import trained_negatives


def test_imbalanced_pc_reads_a_narrow_matrix_at_the_training_negatives() -> None:
    objective = PCCLoss(balanced=False)
    scores = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    read = objective.log_pd(scores, n_negatives=127)
    torch.testing.assert_close(read, scores + math.log(127))
    torch.testing.assert_close(objective.scores_from_log_pd(read, n_negatives=127), scores)
    with pytest.raises(ValueError, match="pass n_negatives"):  # a 3 x 5 matrix has no count of its own
        objective.log_pd(scores)


def test_n_negatives_overrides_the_width_and_the_layout_of_the_matrix() -> None:
    objective = PCCLoss(balanced=False)
    square = torch.zeros(5, 5)
    torch.testing.assert_close(objective.log_pd(square), square + math.log(4))  # paired: width - 1
    torch.testing.assert_close(objective.log_pd(square, n_negatives=127), square + math.log(127))
    assert not torch.allclose(objective.log_pd(square, n_negatives=127), objective.log_pd(square))
    assert objective.mi(square).item() == pytest.approx(math.log(4))
    assert objective.mi(square, n_negatives=127).item() == pytest.approx(math.log(127))
    two_view = torch.zeros(6, 6)
    torch.testing.assert_close(objective.log_pd(two_view, TwoViewLayout()), two_view + math.log(4))
    torch.testing.assert_close(objective.log_pd(two_view, TwoViewLayout(), n_negatives=9), two_view + math.log(9))
    assert objective.mi(two_view, TwoViewLayout(), n_negatives=9).item() == pytest.approx(math.log(9))
    queue = torch.zeros(4, 11)
    torch.testing.assert_close(
        objective.scores_from_log_pd(queue, QueueLayout(7), n_negatives=30), queue - math.log(30)
    )


def test_leading_batch_axes_read_as_paired_matrices() -> None:
    """The MI benchmark reads a stack of held-out (n, n) matrices in one call."""
    stacked = torch.zeros(4, 6, 6)
    torch.testing.assert_close(PCCLoss(balanced=False).log_pd(stacked), stacked + math.log(5))
    assert trained_negatives((4, 6, 6), None, None) == 5


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "127"])
def test_a_count_that_is_no_whole_number_is_rejected(bad) -> None:
    scores = torch.zeros(3, 5)
    with pytest.raises(ValueError, match="must be a whole number >= 1"):
        PCCLoss(balanced=False).log_pd(scores, n_negatives=bad)
    with pytest.raises(ValueError, match="must be a whole number >= 1"):
        PCCLoss(balanced=False).mi(torch.zeros(5, 5), n_negatives=bad)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_other_readout_accepts_and_ignores_n_negatives(name: str) -> None:
    objective = OBJECTIVES[name]()  # pcc: the balanced form
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(6, 6, generator=generator, dtype=torch.float64) + torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(objective.log_pd(scores, n_negatives=127), objective.log_pd(scores))
    torch.testing.assert_close(
        objective.scores_from_log_pd(scores, n_negatives=127), objective.scores_from_log_pd(scores)
    )
    torch.testing.assert_close(objective.mi(scores, n_negatives=127), objective.mi(scores))
    narrow = scores[:, :5]  # an elementwise readout reads any shape, without a count
    torch.testing.assert_close(objective.log_pd(narrow, n_negatives=127), objective.log_pd(scores)[:, :5])
