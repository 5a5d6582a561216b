"""Rank-aware helpers for scoring against the embeddings of every device.

Everything here is a no-op on a single process, so the same code runs on a laptop CPU and under
Lightning's DDP. The backward pass of a gather sums the gradients of every rank back onto the local
slice; combined with DDP's gradient averaging this gives exactly the gradient of the loss on the global
batch (see ``tests/test_distributed.py``). ``UnpaddedDistributedSampler`` shares an evaluation set between the ranks
with every item seen exactly once.

The two autograd functions are ours rather than ``torch.distributed.nn.functional``'s: those are
deprecated in torch 2.14, and on gloo their all-gather backward fills ``empty_like`` buffers with
gradients that may be non-contiguous, which scrambles them (seen with an einsum-based critic).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler


def is_distributed() -> bool:
    """True when a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks, 1 without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank, 0 without a process group."""
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward: sum the gradient over ranks and keep this rank's rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        ctx.rows = tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor)
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum); backward: the gradient summed over ranks, since every rank used the sum."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, keeping the autograd graph.

    Rank r's rows sit at ``[r * n, (r + 1) * n)``. Every rank must pass the same shape.
    """
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, differentiably; identity on one process."""
    if not is_distributed():
        return tensor
    return _SumOverRanks.apply(tensor)


def max_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Elementwise maximum over ranks, without gradient (used only as a numerical shift)."""
    if not is_distributed():
        return tensor
    result = tensor.detach().clone()
    dist.all_reduce(result, op=dist.ReduceOp.MAX)
    return result


@torch.no_grad()
def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, without gradient (rank r's rows at ``[r*n, (r+1)*n)``).

    For state that every rank must hold identically, such as a queue of past keys. Every rank must pass the
    same shape; identity on one process.
    """
    if not is_distributed():
        return tensor.detach()
    tensor = tensor.detach().contiguous()
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor)
    return torch.cat(gathered, dim=0)


def mean_over_ranks(local_sum: torch.Tensor, local_count: int | torch.Tensor) -> torch.Tensor:
    """Mean over the global batch from this rank's ``local_sum`` of ``local_count`` values, differentiably.

    Every rank must hold the same count (equal per-rank batches, as DDP training has); identity division on one
    process.
    """
    return sum_over_ranks(local_sum) / (local_count * world_size())


class UnpaddedDistributedSampler(DistributedSampler):
    """Each rank's share of a dataset, every index exactly once over the ranks: no padding, no dropping.

    Rank r gets positions ``r, r + world, r + 2 * world, ...`` of the (optionally shuffled) order, so ranks may
    differ by one sample. That is safe for evaluation (no buffers are synced per batch), not for training, where
    DDP expects every rank to run the same number of steps. It subclasses torch's ``DistributedSampler`` so that
    Lightning recognises a distributed sampler and leaves it in place rather than wrapping it in its own.

    ``num_replicas`` and ``rank`` default to the running process group (1 and 0 without one). With
    ``shuffle=True`` the order is a permutation drawn from ``seed + epoch`` (``set_epoch``), the same on every rank.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
    ) -> None:
        num_replicas = world_size() if num_replicas is None else num_replicas
        rank = (dist.get_rank() if is_distributed() else 0) if rank is None else rank
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.total_size = len(dataset)
        self.num_samples = len(range(self.rank, self.total_size, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.total_size, generator=generator).tolist()
        else:
            order = list(range(self.total_size))
        return iter(order[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
