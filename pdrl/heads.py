"""Critic heads: turn two batches of embeddings into the score matrix ``scores[i, j] = s(a_i, b_j)``.

Every head takes ``(a, b)`` of shapes ``(n, d_a)`` and ``(n, d_b)`` and returns ``(n, m)`` scores, with
joint pairs on the diagonal. With ``gather_distributed=True`` the ``b`` side is gathered from every rank
with gradients first, so m = world_size * n and each row is scored against the whole global batch
(the positive of local row i at column rank * n + i, which the losses find on their own).
``MultiLocationCritic`` (AMDIM) scores vectors against feature maps and returns one such matrix per
location, ``(n, m, L)``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import torch
from torch import nn

from pdrl import distributed
from pdrl.errors import ConfigError
from pdrl.nets.mlp import MLP, constrain


class _Critic(nn.Module, abc.ABC):
    def __init__(self, gather_distributed: bool) -> None:
        super().__init__()
        self.gather_distributed = gather_distributed

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[0]:
            raise ValueError(
                f"{type(self).__name__} needs two (n, d) embedding batches of the same n, "
                f"got {tuple(a.shape)} and {tuple(b.shape)}."
            )
        if self.gather_distributed:
            b = distributed.gather_with_grad(b)
        return self.score(a, b)

    @abc.abstractmethod
    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The (n, m) score matrix of local rows ``a`` against (possibly gathered) columns ``b``."""


class SeparableCritic(_Critic):
    """Inner product of the embeddings (the encoders carry all parameters)::

        scores = a @ b.T / temperature

    Args:
        temperature: divides the scores (> 0); 1 leaves them as they are.
        gather_distributed: score against the ``b`` embeddings of every rank.
    """

    def __init__(self, temperature: float = 1.0, gather_distributed: bool = False) -> None:
        super().__init__(gather_distributed)
        if not temperature > 0:
            raise ConfigError(f"SeparableCritic(temperature={temperature}) must be > 0.")
        self.temperature = float(temperature)

    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b.T / self.temperature


class BilinearCritic(_Critic):
    """Bilinear form with a bias-free learned matrix W (Tschannen et al.'s shallow task)::

        scores = a @ W @ b.T

    Args:
        dim_a, dim_b: embedding sizes.
        spectral_norm: divide W by its largest singular value (the MICE constraint).
        gather_distributed: score against the ``b`` embeddings of every rank.
    """

    def __init__(self, dim_a: int, dim_b: int, spectral_norm: bool = False, gather_distributed: bool = False) -> None:
        super().__init__(gather_distributed)
        self.linear = constrain(nn.Linear(dim_b, dim_a, bias=False), spectral_norm)

    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ self.linear(b).T


class ConcatCritic(_Critic):
    """Joint critic: an MLP on the concatenation ``[a_i, b_j]`` of every pair, n*m evaluations.

    The first layer is split, ``W [a; b] = W_a a + W_b b``, and broadcast over the pairs, so no Python
    loop runs and the n*m concatenated inputs are never built.

    Args:
        dim_a, dim_b: input sizes.
        hidden_dims: hidden widths (the PD code uses (512, 512)); at least one.
        spectral_norm: ``"none"``, ``"last"`` (MICE) or ``"all"`` layers normalised.
        gather_distributed: score against the ``b`` inputs of every rank.
    """

    def __init__(
        self,
        dim_a: int,
        dim_b: int,
        hidden_dims: Sequence[int] = (512, 512),
        spectral_norm: str = "none",
        gather_distributed: bool = False,
    ) -> None:
        super().__init__(gather_distributed)
        if len(hidden_dims) < 1:
            raise ConfigError("ConcatCritic needs at least one hidden layer (hidden_dims=(512, 512) in the PD code).")
        self.first_a = constrain(nn.Linear(dim_a, hidden_dims[0]), spectral_norm == "all")
        self.first_b = constrain(nn.Linear(dim_b, hidden_dims[0], bias=False), spectral_norm == "all")
        self.rest = nn.Sequential(nn.ReLU(), MLP(hidden_dims[0], list(hidden_dims[1:]), 1, spectral_norm=spectral_norm))

    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        hidden = self.first_a(a)[:, None, :] + self.first_b(b)[None, :, :]
        return self.rest(hidden).squeeze(-1)


class MultiLocationCritic(nn.Module):
    """AMDIM's critic: a global vector of one view against every location of a feature map of the other.

    For source vectors ``a`` ``(n, d)`` and target maps ``b`` ``(n, d, H, W)`` with L = H * W locations::

        scores[i, j, l] = c * tanh( <a_i, b_j[:, l]> / (sqrt(d) * c) )        (c = clip; no tanh if None)

    Dividing by sqrt(d) keeps the scores of order one at any width; the soft clip ``c tanh(s / c)``
    (AMDIM's ``tclip``, c = 20) bounds them. ``scores[:, :, l]`` is an ordinary score matrix of location l,
    joint pairs on its diagonal, that any ``pdrl.losses`` objective takes (see
    ``pdrl.tasks.deep_representation`` for how the locations are averaged).

    Args:
        clip: soft-clip level c (> 0), or None for raw scaled scores.
        gather_distributed: score against the target maps of every rank (m = world_size * n columns).
    """

    def __init__(self, clip: float | None = 20.0, gather_distributed: bool = False) -> None:
        super().__init__()
        if clip is not None and not clip > 0:
            raise ConfigError(f"MultiLocationCritic(clip={clip}) must be > 0, or None for no clipping.")
        self.clip = None if clip is None else float(clip)
        self.gather_distributed = gather_distributed

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(n, d)`` vectors and ``(n, d, H, W)`` maps -> ``(n, m, H * W)`` scores."""
        if a.dim() != 2 or b.dim() != 4 or a.shape[0] != b.shape[0] or a.shape[1] != b.shape[1]:
            raise ValueError(
                "MultiLocationCritic needs (n, d) source vectors and (n, d, H, W) target maps of the same n and d, "
                f"got {tuple(a.shape)} and {tuple(b.shape)}."
            )
        if self.gather_distributed:
            b = distributed.gather_with_grad(b)
        scores = torch.einsum("id,jdl->ijl", a, b.flatten(2)) / math.sqrt(a.shape[1])
        if self.clip is not None:
            scores = self.clip * torch.tanh(scores / self.clip)
        return scores
