"""Critic heads: turn two batches of embeddings into the score matrix ``scores[i, j] = s(a_i, b_j)``.

Every head takes ``(a, b)`` of shapes ``(n, d_a)`` and ``(n, d_b)`` and returns ``(n, m)`` scores, with
joint pairs on the diagonal. With ``gather_distributed=True`` the ``b`` side is gathered from every rank
with gradients first, so m = world_size * n and each row is scored against the whole global batch
(the positive of local row i at column rank * n + i, which the losses find on their own).

Two more matrices serve self-supervised code, each with its layout from ``pdrl.losses``:

- ``critic.two_view(view_a, view_b)``: SimCLR's (2n, 2n) matrix of both views against both views, for
  ``TwoViewLayout()`` (with ``CosineCritic`` and ``CPCLoss`` this is NT-Xent);
- ``critic.with_queue(queries, keys, queue)``: MoCo's (n, n + K) matrix of queries against the batch's keys
  and a ``pdrl.losses.KeyQueue`` of K past keys, for ``QueueLayout(K)``.
``MultiLocationCritic`` (AMDIM) scores vectors against feature maps and returns one such matrix per
location, ``(n, m, L)``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pdrl import distributed
from pdrl.errors import ConfigError
from pdrl.losses import KeyQueue
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

    def own_candidates(self, rows: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Each row against its own k candidates (1:k matching), never gathered: ``(n, d), (n, k, d) -> (n, k)``.

        ``out[i, j] = score(rows[i], candidates[i, j])``, the same score as the full matrix gives that pair,
        computed for the n * k pairs only (``torch.vmap`` over the rows).
        """
        if rows.dim() != 2 or candidates.dim() != 3 or candidates.shape[0] != rows.shape[0]:
            raise ValueError(
                f"{type(self).__name__}.own_candidates needs (n, d) rows and (n, k, d) candidates of the same n, "
                f"got {tuple(rows.shape)} and {tuple(candidates.shape)}."
            )
        return torch.vmap(lambda row, own: self.score(row.unsqueeze(0), own).squeeze(0))(rows, candidates)

    def two_view(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        """Both views against both views, for ``TwoViewLayout()``: ``(2n, 2n)``, or ``(2n, world * 2n)`` gathered.

        Rows are ``[view_a; view_b]``; the columns are the same rows (of every rank, in rank order, with
        gradients, when ``gather_distributed``). Entry (i, i+n) is the positive of item i; the self-pairs are
        computed but the layout ignores them.
        """
        if view_a.dim() != 2 or view_a.shape != view_b.shape:
            raise ValueError(
                f"{type(self).__name__}.two_view needs two (n, d) embedding batches of the same shape, "
                f"got {tuple(view_a.shape)} and {tuple(view_b.shape)}."
            )
        rows = torch.cat([view_a, view_b])
        columns = distributed.gather_with_grad(rows) if self.gather_distributed else rows
        return self.score(rows, columns)

    def with_queue(self, queries: torch.Tensor, keys: torch.Tensor, queue: KeyQueue | torch.Tensor) -> torch.Tensor:
        """Queries against the batch's keys and a queue of K past keys, for ``QueueLayout(K)``.

        Columns are ``[keys; queue]``: the n keys (of every rank, in rank order, with gradients, when
        ``gather_distributed``), then the K queued keys (a ``KeyQueue`` or a ``(K, d)`` tensor, no gradient).
        Returns ``(n, n + K)``, or ``(n, world * n + K)`` gathered; the positive of query i is column
        ``rank * n + i``.
        """
        if queries.dim() != 2 or queries.shape[0] != keys.shape[0] or keys.dim() != 2:
            raise ValueError(
                f"{type(self).__name__}.with_queue needs (n, d) queries and keys of the same n, "
                f"got {tuple(queries.shape)} and {tuple(keys.shape)}."
            )
        queued = queue.keys if isinstance(queue, KeyQueue) else queue
        if queued.dim() != 2 or queued.shape[1] != keys.shape[1]:
            raise ValueError(
                f"the queue holds keys of shape {tuple(queued.shape)}, which do not match keys {tuple(keys.shape)}: "
                "build KeyQueue(size, dim) with dim the key embedding size."
            )
        columns = distributed.gather_with_grad(keys) if self.gather_distributed else keys
        return self.score(queries, torch.cat([columns, queued.detach().to(columns.dtype)]))


class SeparableCritic(_Critic):
    """Inner product of the embeddings (the encoders carry all parameters)::

        scores = a @ b.T / temperature                                   (normalize=False)
        scores = (a / |a|) @ (b / |b|).T / temperature                   (normalize=True: cosine similarity)

    Args:
        temperature: divides the scores (> 0); 1 leaves them as they are.
        gather_distributed: score against the ``b`` embeddings of every rank.
        normalize: L2-normalise both embeddings first, so the scores are cosines over the temperature.
    """

    def __init__(self, temperature: float = 1.0, gather_distributed: bool = False, normalize: bool = False) -> None:
        super().__init__(gather_distributed)
        if not temperature > 0:
            raise ConfigError(f"{type(self).__name__}(temperature={temperature}) must be > 0, e.g. 0.1.")
        if not isinstance(normalize, bool):
            raise ConfigError(f"{type(self).__name__}(normalize=...) must be True or False, got {normalize!r}.")
        self.temperature, self.normalize = float(temperature), normalize

    def score(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
        return a @ b.T / self.temperature


class CosineCritic(SeparableCritic):
    """Cosine similarity over a temperature, SimCLR's and MoCo's critic: ``SeparableCritic(normalize=True)``::

        scores = (a / |a|) @ (b / |b|).T / temperature

    Scores lie in ``[-1/temperature, 1/temperature]``.

    Args:
        temperature: > 0; SimCLR uses 0.1 to 0.5, MoCo 0.07 to 0.2.
        gather_distributed: score against the embeddings of every rank.

    Example::

        critic = CosineCritic(temperature=0.1)
        scores = critic.two_view(encoder(view_a), encoder(view_b))          # (2n, 2n)
        loss = CPCLoss(cross_entropy=True)(scores, TwoViewLayout())        # SimCLR's NT-Xent
    """

    def __init__(self, temperature: float = 0.1, gather_distributed: bool = False) -> None:
        super().__init__(temperature, gather_distributed, normalize=True)


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
        return self.soft_clip(self.raw_scores(a, b))

    def raw_scores(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The scaled scores before the clip, ``<a_i, b_j[:, l]> / sqrt(d)`` (AMDIM's penalty reads these)."""
        if a.dim() != 2 or b.dim() != 4 or a.shape[0] != b.shape[0] or a.shape[1] != b.shape[1]:
            raise ValueError(
                "MultiLocationCritic needs (n, d) source vectors and (n, d, H, W) target maps of the same n and d, "
                f"got {tuple(a.shape)} and {tuple(b.shape)}."
            )
        if self.gather_distributed:
            b = distributed.gather_with_grad(b)
        return torch.einsum("id,jdl->ijl", a, b.flatten(2)) / math.sqrt(a.shape[1])

    def soft_clip(self, scores: torch.Tensor) -> torch.Tensor:
        """``c tanh(s / c)``, or the scores as they are without a clip."""
        return scores if self.clip is None else self.clip * torch.tanh(scores / self.clip)
