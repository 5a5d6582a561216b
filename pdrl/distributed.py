"""Rank-aware helpers for scoring against the embeddings of every device.

Everything here is a no-op on a single process, so the same code runs on a laptop CPU and under
Lightning's DDP. Gathering uses ``torch.distributed.nn.functional``, whose backward pass sums the
gradients of every rank back onto the local slice. Combined with DDP's gradient averaging this gives
exactly the gradient of the loss on the global batch (see ``tests/test_distributed.py``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


def is_distributed() -> bool:
    """True when a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks, 1 without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank, 0 without a process group."""
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, keeping the autograd graph.

    Rank r's rows sit at ``[r * n, (r + 1) * n)``. Every rank must pass the same shape.
    """
    if not is_distributed():
        return tensor
    return torch.cat(dist_fn.all_gather(tensor), dim=0)


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, differentiably; identity on one process."""
    if not is_distributed():
        return tensor
    return dist_fn.all_reduce(tensor, op=dist.ReduceOp.SUM)


def max_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Elementwise maximum over ranks, without gradient (used only as a numerical shift)."""
    if not is_distributed():
        return tensor
    result = tensor.detach().clone()
    dist.all_reduce(result, op=dist.ReduceOp.MAX)
    return result
