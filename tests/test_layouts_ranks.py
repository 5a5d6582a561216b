"""Layout placements on every rank: positive columns, masks, counts and the synced flag, with the rank and world
size of pdrl.distributed simulated; exact error messages and reprs; the device argument is honoured."""

from __future__ import annotations

import pytest
import torch

from pdrl.errors import ConfigError
from pdrl.losses import PairedLayout, QueueLayout, TwoViewLayout
from tests.messages import exactly
from tests.simulated_ranks import as_rank

# (rank, world size); world 3 tells ``+ offset`` from ``- offset`` where indexing wraps modulo the columns
RANKS = [(0, 2), (1, 2), (1, 3), (2, 3)]
N = 4  # local rows
K = 3  # queued keys


def assert_columns(columns: torch.Tensor, expected: list[int]) -> None:
    assert columns.dtype == torch.long
    assert columns.tolist() == expected


def assert_counts(placement, n_negatives: int, synced: bool, n_total_rows: int) -> None:
    assert placement.n_negatives == n_negatives
    assert placement.synced is synced
    assert type(placement.n_total_rows) is int and placement.n_total_rows == n_total_rows


def paired_message(shape: tuple[int, int], world: int) -> str:
    return (
        f"scores of shape {shape} fit no layout: expected (n, n), or (n, world_size * n) with columns gathered "
        f"from every rank (world_size is {world}). For SimCLR's two views pass TwoViewLayout(), for a queue of "
        "past keys QueueLayout(queue_size)."
    )


def two_view_message(shape: tuple[int, int], world: int) -> str:
    return (
        f"scores of shape {shape} fit no two-view layout: expected (2n, 2n) with rows [view_a; view_b], or "
        f"(2n, world_size * 2n) with the columns gathered from every rank (world_size is {world}); build them "
        "with critic.two_view(view_a, view_b)."
    )


def queue_message(shape: tuple[int, int], world: int) -> str:
    return (
        f"scores of shape {shape} fit no queue layout with {K} queued keys: expected (n, n + K) or "
        f"(n, world_size * n + K) (world_size is {world}). Read the queue's length before enqueue "
        "(QueueLayout(len(queue)) or queue.layout())."
    )


@pytest.mark.parametrize(("rank", "world"), RANKS)
def test_paired_gathered_positives_sit_in_this_ranks_block(monkeypatch, rank: int, world: int) -> None:
    as_rank(monkeypatch, rank, world)
    layout = PairedLayout()
    placement = layout.place(N, world * N)
    assert_columns(placement.positive_columns, [rank * N + i for i in range(N)])
    assert placement.excluded is None
    assert_counts(placement, world * N - 1, True, world * N)
    assert layout.n_negatives(N, world * N) == world * N - 1


@pytest.mark.parametrize(("rank", "world"), [(0, 1), (1, 2), (2, 3)])
def test_paired_local_matrix_is_the_diagonal_on_any_rank(monkeypatch, rank: int, world: int) -> None:
    as_rank(monkeypatch, rank, world)
    placement = PairedLayout().place(N, N)
    assert_columns(placement.positive_columns, list(range(N)))
    assert placement.excluded is None
    assert_counts(placement, N - 1, False, N)


def test_paired_rejects_other_shapes_with_the_exact_message(monkeypatch) -> None:
    with pytest.raises(ValueError, match=exactly(paired_message((4, 8), 1))):
        PairedLayout().place(4, 8)
    as_rank(monkeypatch, 1, 2)
    for n_cols in (3, 5, 12):  # neither local (4) nor gathered from 2 ranks (8)
        with pytest.raises(ValueError, match=exactly(paired_message((4, n_cols), 2))):
            PairedLayout().place(4, n_cols)


@pytest.mark.parametrize(("rank", "world"), RANKS)
def test_two_view_gathered_pairs_the_views_in_this_ranks_block(monkeypatch, rank: int, world: int) -> None:
    as_rank(monkeypatch, rank, world)
    n_rows, n_cols = 2 * N, world * 2 * N
    offset = rank * n_rows
    placement = TwoViewLayout().place(n_rows, n_cols)
    assert_columns(placement.positive_columns, [offset + (i + N) % n_rows for i in range(n_rows)])
    expected_mask = torch.zeros(n_rows, n_cols, dtype=torch.bool)
    expected_mask[:, offset : offset + n_rows] = torch.eye(n_rows, dtype=torch.bool)
    assert torch.equal(placement.excluded, expected_mask)
    assert_counts(placement, n_cols - 2, True, world * n_rows)


@pytest.mark.parametrize(("rank", "world"), [(0, 1), (1, 2)])
def test_two_view_local_matrix_ignores_the_rank(monkeypatch, rank: int, world: int) -> None:
    as_rank(monkeypatch, rank, world)
    placement = TwoViewLayout().place(6, 6)
    assert_columns(placement.positive_columns, [3, 4, 5, 0, 1, 2])
    assert torch.equal(placement.excluded, torch.eye(6, dtype=torch.bool))
    assert_counts(placement, 4, False, 6)


def test_two_view_rejects_other_shapes_with_the_exact_message(monkeypatch) -> None:
    for shape in ((3, 3), (4, 8), (5, 10)):
        with pytest.raises(ValueError, match=exactly(two_view_message(shape, 1))):
            TwoViewLayout().place(*shape)
    as_rank(monkeypatch, 0, 2)
    for shape in ((4, 12), (3, 6)):
        with pytest.raises(ValueError, match=exactly(two_view_message(shape, 2))):
            TwoViewLayout().place(*shape)


@pytest.mark.parametrize(("rank", "world"), RANKS)
def test_queue_gathered_keys_then_queue(monkeypatch, rank: int, world: int) -> None:
    as_rank(monkeypatch, rank, world)
    n_keys = world * N
    n_cols = n_keys + K
    positives = [rank * N + i for i in range(N)]
    with_batch = QueueLayout(K).place(N, n_cols)
    assert_columns(with_batch.positive_columns, positives)
    assert with_batch.excluded is None
    assert_counts(with_batch, n_cols - 1, True, n_keys)
    # MoCo v1/v2: every key but the own one is excluded, the queue stays marginal
    queue_only = QueueLayout(K, batch_negatives=False).place(N, n_cols)
    assert_columns(queue_only.positive_columns, positives)
    expected_mask = torch.zeros(N, n_cols, dtype=torch.bool)
    expected_mask[:, :n_keys] = True
    expected_mask[torch.arange(N), torch.tensor(positives)] = False
    assert torch.equal(queue_only.excluded, expected_mask)
    assert_counts(queue_only, K, True, n_keys)
    assert QueueLayout(K, batch_negatives=False).n_negatives(N, n_cols) == K


@pytest.mark.parametrize(("rank", "world"), [(0, 1), (1, 2)])
def test_queue_local_keys_ignore_the_rank(monkeypatch, rank: int, world: int) -> None:
    as_rank(monkeypatch, rank, world)
    placement = QueueLayout(K, batch_negatives=False).place(N, N + K)
    assert_columns(placement.positive_columns, list(range(N)))
    expected_mask = torch.cat([~torch.eye(N, dtype=torch.bool), torch.zeros(N, K, dtype=torch.bool)], dim=1)
    assert torch.equal(placement.excluded, expected_mask)
    assert_counts(placement, K, False, N)
    assert_counts(QueueLayout(K).place(N, N + K), N + K - 1, False, N)


def test_queue_rejects_other_shapes_with_the_exact_message(monkeypatch) -> None:
    with pytest.raises(ValueError, match=exactly(queue_message((4, 8), 1))):
        QueueLayout(K).place(4, 8)
    as_rank(monkeypatch, 1, 2)
    for n_cols in (4 * 3 + K, 5 + K):
        with pytest.raises(ValueError, match=exactly(queue_message((4, n_cols), 2))):
            QueueLayout(K).place(4, n_cols)


@pytest.mark.parametrize("queue_size", [-1, 2.5, True, "3", None])
def test_queue_size_must_be_a_non_negative_int(queue_size) -> None:
    message = f"QueueLayout(queue_size={queue_size!r}) must be an int >= 0, e.g. len(queue)."
    with pytest.raises(ConfigError, match=exactly(message)):
        QueueLayout(queue_size)


@pytest.mark.parametrize("batch_negatives", [1, None, "yes"])
def test_batch_negatives_must_be_a_bool(batch_negatives) -> None:
    message = f"QueueLayout(batch_negatives=...) must be True or False, got {batch_negatives!r}."
    with pytest.raises(ConfigError, match=exactly(message)):
        QueueLayout(4, batch_negatives=batch_negatives)


def test_reprs() -> None:
    assert repr(PairedLayout()) == "PairedLayout()"
    assert repr(TwoViewLayout()) == "TwoViewLayout()"
    assert repr(QueueLayout(7)) == "QueueLayout(queue_size=7, batch_negatives=True)"
    assert repr(QueueLayout(0, batch_negatives=False)) == "QueueLayout(queue_size=0, batch_negatives=False)"


@pytest.mark.parametrize(
    ("layout", "shape"),
    [
        (PairedLayout(), (4, 4)),
        (TwoViewLayout(), (4, 4)),
        (QueueLayout(K), (4, 4 + K)),
        (QueueLayout(K, batch_negatives=False), (4, 4 + K)),
    ],
    ids=repr,
)
def test_placement_tensors_live_on_the_requested_device(layout, shape: tuple[int, int]) -> None:
    """The meta device stands in for an accelerator: nothing may be built on the CPU instead."""
    placement = layout.place(*shape, device=torch.device("meta"))
    assert placement.positive_columns.device.type == "meta"
    assert placement.positive_columns.shape == (shape[0],)
    if placement.excluded is not None:
        assert placement.excluded.device.type == "meta"
        assert placement.excluded.shape == shape
