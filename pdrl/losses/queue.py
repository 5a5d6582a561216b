"""MoCo's key queue: the K past keys that ``QueueLayout(K)`` places after the batch's keys (``pdrl.losses.layouts``).

``critic.with_queue(queries, keys, queue)`` (``pdrl.heads``) scores against it, ``queue.layout()`` is the matching
layout, and ``queue.enqueue(keys)`` adds the step's keys after scoring.
"""

from __future__ import annotations

import torch
from torch import nn

from pdrl import distributed
from pdrl.errors import ConfigError
from pdrl.losses.layouts import QueueLayout


class KeyQueue(nn.Module):
    """MoCo's dictionary: a first-in first-out queue of the last ``size`` keys, saved in checkpoints.

    The keys live in registered buffers (``keys_buffer``, ``pointer``, ``count``), so ``state_dict`` and a
    Lightning checkpoint carry the queue and a resumed run continues with it. ``enqueue`` gathers the keys of
    every rank in rank order (without gradient) before writing them, so every rank holds the same queue, the
    one a single process on the whole batch would hold. The queue starts empty and fills up; score before
    you enqueue, and take the layout's K from the queue at that moment.

    Args:
        size: K, the most keys held (MoCo: 4096 to 65536).
        dim: the key embedding size.

    Example::

        queue = KeyQueue(size=4096, dim=128)
        queries, keys = encoder(view_a), momentum_encoder(view_b).detach()
        scores = critic.with_queue(queries, keys, queue)        # (n, n + len(queue))
        loss = CPCLoss()(scores, queue.layout())                # or PCCLoss(), DRFCLoss(), ...
        queue.enqueue(keys)
    """

    keys_buffer: torch.Tensor
    pointer: torch.Tensor
    count: torch.Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        for name, value in (("size", size), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"KeyQueue({name}={value!r}) must be an int >= 1.")
        self.size, self.dim = size, dim
        self.register_buffer("keys_buffer", torch.zeros(size, dim))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.count)

    @property
    def keys(self) -> torch.Tensor:
        """The queued keys, oldest first, ``(len(self), dim)``."""
        if len(self) < self.size:
            return self.keys_buffer[: len(self)]
        return torch.roll(self.keys_buffer, -int(self.pointer), dims=0)

    def layout(self, batch_negatives: bool = True) -> QueueLayout:
        """The ``QueueLayout`` of a matrix scored against this queue as it is now (call before ``enqueue``)."""
        return QueueLayout(len(self), batch_negatives=batch_negatives)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Append the ``(n, dim)`` keys of every rank (rank order), dropping the oldest beyond ``size``."""
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"KeyQueue(dim={self.dim}).enqueue needs (n, {self.dim}) keys, got {tuple(keys.shape)}.")
        keys = distributed.gather(keys)[-self.size :].to(self.keys_buffer)
        rows = (int(self.pointer) + torch.arange(len(keys), device=self.keys_buffer.device)) % self.size
        self.keys_buffer[rows] = keys
        self.pointer.fill_((int(self.pointer) + len(keys)) % self.size)
        self.count.fill_(min(int(self.count) + len(keys), self.size))
