"""Make ``pdrl.distributed`` report another rank, so a test runs the gathered (multi-rank) code in one process."""

from __future__ import annotations

import pytest

from pdrl import distributed


def as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    """``pdrl.distributed`` reports ``rank`` of ``world`` ranks (collectives untouched)."""
    monkeypatch.setattr(distributed, "is_distributed", lambda: world > 1)
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    monkeypatch.setattr(distributed, "rank", lambda: rank)


def as_rank_one_of_two_mirrored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 1 of 2 whose rank 0 holds the mirror image of its block: a sum over ranks doubles, a max is unchanged."""
    as_rank(monkeypatch, 1, 2)
    monkeypatch.setattr(distributed, "sum_over_ranks", lambda tensor: 2 * tensor)
    monkeypatch.setattr(distributed, "max_over_ranks", lambda tensor: tensor)
