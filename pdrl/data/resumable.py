"""A shuffling DataLoader whose position survives a checkpoint, so a resumed run sees the same batches.

A plain ``DataLoader(shuffle=True)`` draws each epoch's order from the global RNG and restarts an interrupted
epoch from its first batch, so a run resumed mid-epoch trains on different batches than an uninterrupted one.
``ResumableDataLoader`` orders epoch ``e`` by ``torch.randperm`` with a generator seeded by ``seed + e``
(Lightning calls ``set_epoch``) and implements ``state_dict``/``load_state_dict`` (Lightning saves them in
every checkpoint), so after a resume it skips the batches of the epoch that were already trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from pytorch_lightning import Trainer
from torch.utils.data import DataLoader, Dataset, Sampler

from pdrl import distributed
from pdrl.errors import ConfigError


def per_device_batch_size(batch_size: int) -> int:
    """The share of the *global* ``batch_size`` that each of the running processes trains on.

    Every shipped config states the global batch, so it means the same objective (the same negatives, gathered by
    the critic) on 1 process and on k: on 4 devices ``batch_size: 480`` trains 120 pairs per device.
    """
    world = distributed.world_size()
    if batch_size % world:
        lower, upper = batch_size // world * world, (batch_size // world + 1) * world
        raise ConfigError(
            f"batch_size={batch_size} is the global batch and must split evenly over the {world} processes: "
            f"use {lower or upper} or {upper}."
        )
    return batch_size // world


def batches_trained(trainer: Trainer | None) -> int:
    """Training batches the run has trained on so far, all epochs together (0 without a trainer).

    For the streams (MI staircase, GAN grid) that a resume replays up to this count. Checkpoints are saved
    after a batch's update (``on_train_batch_end``) or at an epoch's end, when the batch counter of the loop
    already includes the batch that was just trained on.
    """
    if trainer is None:
        return 0
    return int(trainer.fit_loop.epoch_loop.batch_progress.total.processed)


class EpochPermutationSampler(Sampler[int]):
    """Indices ``randperm(n, generator seeded by seed + epoch)[skip:]``; ``skip`` applies to the next pass."""

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self.skip = 0
        self.epoch_offset = 0  # this order's epoch minus Lightning's epoch count (see ResumableDataLoader.__iter__)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch + self.epoch_offset

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        skip, self.skip = self.skip, 0
        yield from order[skip:].tolist()


class ResumableDataLoader(DataLoader):
    """Shuffled batches in an order fixed by ``seed`` and the epoch, resumable in the middle of an epoch.

    Args:
        dataset: a map-style dataset.
        batch_size: samples per batch.
        seed: seed of the epoch orders; None draws one from torch's global RNG (so ``seed_everything`` fixes it).
            The seed is part of ``state_dict`` and comes back on resume.
        drop_last: drop the last incomplete batch of each epoch.
        **kwargs: other ``DataLoader`` arguments (``num_workers``, ...). A ``sampler`` given here (Lightning injects
            a ``DistributedSampler`` under DDP) replaces the seeded order; resume is then exact only at epoch ends.
    """

    def __init__(
        self, dataset: Dataset, batch_size: int, seed: int | None = None, drop_last: bool = True, **kwargs: Any
    ) -> None:
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        kwargs.pop("shuffle", None)
        sampler = kwargs.pop("sampler", None) or EpochPermutationSampler(len(dataset), seed)
        kwargs.setdefault("generator", torch.Generator().manual_seed(seed))  # worker seeds leave the global RNG alone
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs)
        self.seed = seed
        self.batches_done = 0  # batches of the current epoch already yielded (and trained on, see below)
        self._resumed_epoch: int | None = None  # the epoch whose order a resumed run continues with

    def __iter__(self) -> Iterator[Any]:
        # A sized loader is not pre-fetched by Lightning, so a batch yielded is a batch trained on when a
        # checkpoint is saved; an epoch completed in a previous run starts over.
        if self.batches_done >= len(self):
            self.batches_done = 0
        if isinstance(self.sampler, EpochPermutationSampler):
            if self._resumed_epoch is not None:
                # Lightning's epoch count after a resume from a checkpoint saved at an epoch's last batch is not
                # always the next epoch (a run resumed twice repeated an epoch's order): the order follows the
                # checkpoint instead, and Lightning's later counts are shifted by the same offset
                self.sampler.epoch_offset += self._resumed_epoch - self.sampler.epoch
                self.sampler.epoch, self._resumed_epoch = self._resumed_epoch, None
            self.sampler.skip = self.batches_done * self.batch_size
        elif self.batches_done:
            self.batches_done = 0  # an injected sampler cannot skip: this epoch starts over
        for batch in super().__iter__():
            self.batches_done += 1
            yield batch
        self.batches_done = 0

    def state_dict(self) -> dict[str, int]:
        epoch = self.sampler.epoch if isinstance(self.sampler, EpochPermutationSampler) else 0
        return {"seed": self.seed, "epoch": epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.seed = state_dict["seed"]
        self.batches_done = state_dict["batches_done"]
        if isinstance(self.sampler, EpochPermutationSampler):
            self.sampler.seed = self.seed
            self.sampler.set_epoch(state_dict["epoch"])
            finished = self.batches_done >= len(self)  # saved after the epoch's last batch: the next one follows
            self._resumed_epoch = state_dict["epoch"] + 1 if finished else state_dict["epoch"]
