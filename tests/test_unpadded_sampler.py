"""pdrl.distributed.UnpaddedDistributedSampler: the ranks share an evaluation set, each index exactly once."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from pdrl.distributed import UnpaddedDistributedSampler, mean_over_ranks


def shares(length: int, world: int, **options) -> list[list[int]]:
    dataset = list(range(length))
    return [list(UnpaddedDistributedSampler(dataset, num_replicas=world, rank=r, **options)) for r in range(world)]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("length", [0, 1, 2, 5, 7, 10])
def test_ranks_cover_every_index_exactly_once(length: int, world: int, shuffle: bool) -> None:
    per_rank = shares(length, world, shuffle=shuffle)
    everything = [index for share in per_rank for index in share]
    assert sorted(everything) == list(range(length))  # disjoint, complete, no padding
    sizes = [len(share) for share in per_rank]
    assert max(sizes) - min(sizes) <= (1 if length else 0)
    for r, share in enumerate(per_rank):
        assert len(UnpaddedDistributedSampler(list(range(length)), num_replicas=world, rank=r)) == len(share)


def test_unshuffled_order_is_strided() -> None:
    assert shares(7, 3) == [[0, 3, 6], [1, 4], [2, 5]]


def test_shuffle_is_deterministic_per_seed_and_epoch() -> None:
    assert shares(10, 2, shuffle=True, seed=4) == shares(10, 2, shuffle=True, seed=4)
    assert shares(10, 2, shuffle=True, seed=4) != shares(10, 2, shuffle=True, seed=5)
    sampler = UnpaddedDistributedSampler(list(range(10)), num_replicas=1, rank=0, shuffle=True)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(list(sampler)) == sorted(first)


def test_without_process_group_one_rank_reads_everything() -> None:
    sampler = UnpaddedDistributedSampler(list(range(5)))
    assert (sampler.num_replicas, sampler.rank, list(sampler)) == (1, 0, [0, 1, 2, 3, 4])


def test_lightning_sees_a_distributed_sampler() -> None:
    """Lightning wraps any sampler that is not a DistributedSampler in its own, which would split it again."""
    dataset = TensorDataset(torch.arange(7))
    loader = DataLoader(dataset, batch_size=2, sampler=UnpaddedDistributedSampler(dataset, num_replicas=2, rank=1))
    assert isinstance(loader.sampler, DistributedSampler)
    assert torch.cat([batch for (batch,) in loader]).tolist() == [1, 3, 5]


def test_mean_over_ranks_on_one_process() -> None:
    values = torch.tensor([1.0, 2.0, 6.0])
    assert mean_over_ranks(values.sum(), len(values)) == values.mean()
