"""Interfaces that parts of pdrl rely on, declared once so that a task or datamodule can be checked against them.

- ``Embedder``: a model whose ``embed(inputs) -> (n, features)`` is the learned representation, the one the
  linear probe (``pdrl.callbacks.linear_probe.LinearProbe``) and the feature projection evaluate.
  ``RepresentationLearning`` (F(x)) and ``DeepRepresentation`` (the AMDIM global vector) implement it.
- ``ProbeDataSource``: a datamodule whose ``probe_dataset(split)`` gives the labelled ``(input, label)`` examples
  of the full ``"train"`` and ``"test"`` splits (every datamodule of ``pdrl.data.images``).
- ``NamesObjective``: a task that names its objective as the config does (``objective_name``, e.g. ``"pcc"``),
  which ``pdrl.callbacks.FiniteGuard`` puts in its error.

The protocols are runtime-checkable: ``isinstance(task, Embedder)`` tells whether a task has the member (not its
signature). ``pdrl.fit`` checks them once at fit start (``check_probe_needs``) and stops with a clear error.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Embedder(Protocol):
    """A model with a representation: ``embed(inputs)`` gives ``(n, features)`` for a batch of n inputs."""

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """The representation of a batch, ``(n, features)``."""
        ...


@runtime_checkable
class ProbeDataSource(Protocol):
    """A datamodule with labelled full splits for the probe: ``probe_dataset("train" | "test")``."""

    def probe_dataset(self, split: str) -> Any:
        """A dataset of ``(input, label)`` examples of the whole split."""
        ...


@runtime_checkable
class NamesObjective(Protocol):
    """A task that names its objective as its config does (a registry name of ``pdrl.losses.OBJECTIVES``)."""

    @property
    def objective_name(self) -> str:
        """The objective's registry name, e.g. ``"pcc"``."""
        ...
