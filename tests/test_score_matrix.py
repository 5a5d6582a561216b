"""``pdrl.losses.base``: ``exp_linear_above``, ``trained_negatives``, ``ScoreMatrix`` (masks, messages, and its
means on 2 simulated ranks, equal to 1 process on the whole matrix), with every message pinned exactly.

The 2 ranks are threads: ``pdrl.distributed``'s rank helpers and collectives are replaced by a barrier exchange,
so the code under test runs its real gathered-column path (offsets, global sums and maxima) in one process.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from pdrl import distributed
from pdrl.losses import DependencyLoss, NWJLoss, QueueLayout, ScoreMatrix, TwoViewLayout
from pdrl.losses.base import exp_linear_above, trained_negatives
from pdrl.losses.locations import LocationScoreMatrix
from tests.messages import exactly

E10 = math.exp(10.0)


def joint_value(matrix: ScoreMatrix) -> torch.Tensor:
    return matrix.joint_mean(matrix.joint)


class ThreadRanks:
    """``world_size`` ranks as threads; ``pdrl.distributed``'s helpers patched to exchange through a barrier."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, world_size: int = 2) -> None:
        self.world_size = world_size
        self.barrier = threading.Barrier(world_size, timeout=10)
        self.slots: list[torch.Tensor | None] = [None] * world_size
        self.local = threading.local()
        monkeypatch.setattr(distributed, "is_distributed", lambda: True)
        monkeypatch.setattr(distributed, "world_size", lambda: world_size)
        monkeypatch.setattr(distributed, "rank", lambda: self.local.rank)
        monkeypatch.setattr(distributed, "sum_over_ranks", self.sum_over_ranks)
        monkeypatch.setattr(distributed, "max_over_ranks", self.max_over_ranks)

    def _exchange(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        self.slots[self.local.rank] = tensor
        self.barrier.wait()
        values = list(self.slots)
        self.barrier.wait()
        return values

    def sum_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum in rank order; the gradient reaches this rank's term (the other ranks' terms are constants)."""
        values = self._exchange(tensor)
        return torch.stack([v if r == self.local.rank else v.detach() for r, v in enumerate(values)]).sum(dim=0)

    def max_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.stack([v.detach() for v in self._exchange(tensor)]).amax(dim=0)

    def run(self, task):
        """``task(rank)`` on every rank at once; the results in rank order (the first error is raised)."""
        results, errors = [None] * self.world_size, []

        def work(rank: int) -> None:
            self.local.rank = rank
            try:
                results[rank] = task(rank)
            except BaseException as error:  # handed to the main thread
                errors.append(error)
                self.barrier.abort()

        threads = [threading.Thread(target=work, args=(rank,)) for rank in range(self.world_size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
        return results


# exp_linear_above


def test_exp_linear_above_is_exp_up_to_10_then_linear_with_the_matching_slope() -> None:
    z = torch.tensor([-3.0, 9.5, 10.0, 10.5, 12.0, 1000.0], dtype=torch.float64, requires_grad=True)
    value = exp_linear_above(z)
    expected = [math.exp(-3.0), math.exp(9.5), E10, 1.5 * E10, 3.0 * E10, 991.0 * E10]
    torch.testing.assert_close(value, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0.0)
    value.sum().backward()
    slopes = torch.tensor([math.exp(-3.0), math.exp(9.5), E10, E10, E10, E10], dtype=torch.float64)
    torch.testing.assert_close(z.grad, slopes, rtol=1e-12, atol=0.0)  # at the kink too: e^10 from both sides


def test_exp_linear_above_takes_another_limit_and_stays_finite_in_float32() -> None:
    z = torch.tensor([1.5, 3.0], dtype=torch.float64)
    torch.testing.assert_close(
        exp_linear_above(z, limit=2.0), torch.tensor([math.exp(1.5), 2.0 * math.exp(2.0)]).double()
    )
    big = exp_linear_above(torch.tensor([1e6], dtype=torch.float32))
    assert torch.isfinite(big).all() and big.item() == pytest.approx(E10 * (1e6 - 9.0), rel=1e-5)


# trained_negatives


def test_trained_negatives_takes_a_given_count_of_1_or_more_over_the_shape() -> None:
    assert trained_negatives((5, 5), None, 1) == 1, "1 negative (a batch of 2 pairs) is a valid count"
    assert trained_negatives((5, 5), TwoViewLayout(), 511) == 511
    count = trained_negatives((5,), None, np.int64(3))
    assert count == 3 and type(count) is int
    assert trained_negatives((5, 5), None, None) == 4
    assert trained_negatives((2, 6, 6), TwoViewLayout(), None) == 4, "leading batch axes are allowed"


@pytest.mark.parametrize("bad", [0, -2, True, 2.0, "3"])
def test_trained_negatives_rejects_a_count_that_is_no_whole_number_from_1(bad: object) -> None:
    message = (
        f"n_negatives={bad!r} must be a whole number >= 1: the marginal candidates per row of the training score "
        "matrix (batch size - 1 for a paired n x n matrix)."
    )
    with pytest.raises(ValueError, match=exactly(message)):
        trained_negatives((5, 5), None, bad)


def test_trained_negatives_of_scores_that_are_no_matrix_asks_for_the_count() -> None:
    message = (
        "scores of shape (5,) are no score matrix: pass n_negatives=<marginal candidates per row in training> to "
        "read them out."
    )
    with pytest.raises(ValueError, match=exactly(message)):
        trained_negatives((5,), None, None)
    with pytest.raises(ValueError, match=r"fit no layout: .* pass n_negatives=<marginal candidates per row in"):
        trained_negatives((4, 5), None, None)


# ScoreMatrix on one process


def test_a_layout_of_another_type_is_refused_with_its_repr() -> None:
    message = "layout must be a pdrl.losses layout (PairedLayout(), TwoViewLayout() or QueueLayout(K)), got 'paired'."
    with pytest.raises(TypeError, match=exactly(message)):
        ScoreMatrix(torch.zeros(3, 3), "paired")


def test_two_pairs_are_enough_and_one_pair_is_refused() -> None:
    scores = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    matrix = ScoreMatrix(scores)
    assert (matrix.n_negatives, matrix.n_candidates, matrix.n_joint, matrix.n_marginal) == (1, 2, 2, 2)
    assert matrix.marginal_mean(matrix.scores).item() == 2.5 and joint_value(matrix).item() == 3.0
    message = (
        "scores of shape (1, 1) in PairedLayout() have no marginal (negative) pair: a batch needs at least 2 pairs "
        "(or a non-empty queue)."
    )
    with pytest.raises(ValueError, match=exactly(message)):
        ScoreMatrix(torch.zeros(1, 1))
    queue = QueueLayout(0, batch_negatives=False)
    message = (
        "scores of shape (2, 2) in QueueLayout(queue_size=0, batch_negatives=False) have no marginal (negative) "
        "pair: a batch needs at least 2 pairs (or a non-empty queue)."
    )
    with pytest.raises(ValueError, match=exactly(message)):
        ScoreMatrix(torch.zeros(2, 2), queue)
    assert ScoreMatrix(torch.zeros(2, 3), QueueLayout(1, batch_negatives=False)).n_negatives == 1


def test_two_view_masks_and_the_excluded_self_pairs_read_as_zero() -> None:
    scores = torch.arange(1.0, 17.0).view(4, 4).requires_grad_()
    matrix = ScoreMatrix(scores, TwoViewLayout())
    eye = torch.eye(4, dtype=torch.bool)
    positive = torch.zeros(4, 4, dtype=torch.bool)
    positive[[0, 1, 2, 3], [2, 3, 0, 1]] = True
    assert torch.equal(matrix.excluded_mask, eye)
    assert torch.equal(matrix.positive_mask, positive)
    assert torch.equal(matrix.marginal_mask, ~positive & ~eye)
    assert torch.equal(matrix.scores, scores.detach().masked_fill(eye, 0.0)), "excluded entries are replaced by 0"
    assert torch.equal(matrix.joint, scores.detach()[[0, 1, 2, 3], [2, 3, 0, 1]])
    assert (matrix.n_negatives, matrix.n_joint, matrix.n_marginal) == (2, 4, 8)
    matrix.scores.sum().backward()
    assert torch.equal(scores.grad, (~eye).float()), "no gradient reaches an excluded entry"


def test_location_matrices_keep_a_location_axis_in_every_mask() -> None:
    scores = torch.randn(3, 3, 2)
    matrix = LocationScoreMatrix(scores)
    eye = torch.eye(3, dtype=torch.bool)
    assert matrix.positive_mask.shape == matrix.marginal_mask.shape == (3, 3, 1)
    assert torch.equal(matrix.positive_mask[..., 0], eye) and torch.equal(matrix.marginal_mask[..., 0], ~eye)
    assert torch.equal(matrix.joint, scores.diagonal().T)


def test_marginal_logmeanexp_shifts_every_location_by_its_own_maximum() -> None:
    """Locations of very different scales (float32): one shared shift would underflow the lower one to -inf."""
    scores = torch.randn(4, 4, 2)
    scores[..., 1] += 1000.0
    value = LocationScoreMatrix(scores).marginal_logmeanexp(scores)
    off_diagonal = ~torch.eye(4, dtype=torch.bool)
    expected = torch.stack([torch.logsumexp(scores[..., k][off_diagonal], dim=0) - math.log(12) for k in range(2)])
    assert torch.isfinite(value).all()
    torch.testing.assert_close(value, expected)


# ScoreMatrix on 2 ranks


def test_gathered_columns_on_2_ranks_equal_1_process_on_the_whole_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank r holds rows [3r, 3r + 3) of a 6 x 6 matrix; rank 1's scores are higher (distinct local maxima)."""
    full = torch.randn(6, 6, dtype=torch.float64)
    full[3:] += 4.0
    full.requires_grad_()
    whole = ScoreMatrix(full)
    expected = {
        "joint_mean": joint_value(whole),
        "marginal_mean": whole.marginal_mean(whole.scores),
        "marginal_logmeanexp": whole.marginal_logmeanexp(whole.scores),
        "nwj_loss": NWJLoss()(full),
    }
    (full_grad,) = torch.autograd.grad(NWJLoss()(full), full)
    row_logsumexp = whole.row_logsumexp(whole.scores).detach()
    world = ThreadRanks(monkeypatch)

    def task(rank: int) -> dict:
        local = full.detach()[3 * rank : 3 * rank + 3].clone().requires_grad_()
        matrix = ScoreMatrix(local)
        loss = NWJLoss()(local)
        (grad,) = torch.autograd.grad(loss, local)
        return {
            "matrix": matrix,
            "joint_mean": joint_value(matrix),
            "marginal_mean": matrix.marginal_mean(matrix.scores),
            "marginal_logmeanexp": matrix.marginal_logmeanexp(matrix.scores),
            "nwj_loss": loss,
            "grad": grad,
            "row_logsumexp": matrix.row_logsumexp(matrix.scores),
        }

    for rank, result in enumerate(world.run(task)):
        rows = slice(3 * rank, 3 * rank + 3)
        matrix = result["matrix"]
        assert matrix.synced and (matrix.n_rows, matrix.n_cols, matrix.n_total_rows) == (3, 6, 6)
        assert (matrix.n_negatives, matrix.n_candidates, matrix.n_joint, matrix.n_marginal) == (5, 6, 6, 30)
        assert torch.equal(matrix.positive_mask, torch.eye(6, dtype=torch.bool)[rows]), "positives at rank*n + i"
        assert torch.equal(matrix.joint, full.detach().diagonal()[rows])
        for name, value in expected.items():
            torch.testing.assert_close(result[name], value, msg=f"rank {rank}: {name}")
        torch.testing.assert_close(result["row_logsumexp"], row_logsumexp[rows])
        torch.testing.assert_close(result["grad"], full_grad[rows], msg=f"rank {rank}: gradient")


def test_local_matrices_under_2_ranks_keep_local_means(monkeypatch: pytest.MonkeyPatch) -> None:
    """(n, n) on each rank is no gathered matrix: no collective, so far-apart ranks do not shift each other."""
    blocks = [torch.randn(3, 3), torch.randn(3, 3) + 1000.0]
    expected = []
    for block in blocks:
        alone = ScoreMatrix(block)
        expected.append([joint_value(alone), alone.marginal_mean(alone.scores), alone.marginal_logmeanexp(block)])
    world = ThreadRanks(monkeypatch)

    def task(rank: int) -> list[torch.Tensor]:
        matrix = ScoreMatrix(blocks[rank])
        assert not matrix.synced and (matrix.n_joint, matrix.n_marginal) == (3, 6)
        return [joint_value(matrix), matrix.marginal_mean(matrix.scores), matrix.marginal_logmeanexp(blocks[rank])]

    for rank, values in enumerate(world.run(task)):
        assert all(torch.isfinite(value) for value in values)
        torch.testing.assert_close(values, expected[rank], msg=f"rank {rank}")


# objective(matrix), training_value's name before 0.1.0, is unknown


def test_objective_is_no_method_of_a_loss_and_a_subclass_defining_only_it_is_abstract() -> None:
    assert not hasattr(NWJLoss(), "objective")

    class OnlyObjective(DependencyLoss):
        def objective(self, matrix: ScoreMatrix) -> torch.Tensor:
            return joint_value(matrix)

        def mi_readout(self, matrix: ScoreMatrix, *, n_negatives: int | None = None) -> torch.Tensor:
            return joint_value(matrix)

    with pytest.raises(TypeError, match="abstract method.*training_value"):
        OnlyObjective()
