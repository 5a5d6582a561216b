"""Interfaces that parts of pdrl rely on, declared once so that a task can be checked against them.

``Embedder``: a model whose ``embed(inputs) -> (n, features)`` is the learned representation, the one the
linear probe (``pdrl.callbacks.linear_probe.LinearProbe``) evaluates. ``RepresentationLearning`` (F(x)) and
``DeepRepresentation`` (the AMDIM global vector) implement it. The protocol is runtime-checkable:
``isinstance(task, Embedder)`` tells whether a task has the method (not its signature).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Embedder(Protocol):
    """A model with a representation: ``embed(inputs)`` gives ``(n, features)`` for a batch of n inputs."""

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """The representation of a batch, ``(n, features)``."""
        ...
