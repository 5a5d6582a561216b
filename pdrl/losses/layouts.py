"""Layouts: where the positive of each row of a score matrix sits, and which entries are no pair at all.

Every objective takes ``(scores, layout)``. The layout says, for a matrix of a given shape,

- the column of each local row's positive (joint) pair,
- the entries that are excluded (neither joint nor marginal: SimCLR's self-pairs),
- how many marginal (negative) candidates each row has, which the readouts use (CPC's log m, the imbalanced
  classifier's prior ratio), and
- whether the columns were gathered from every rank, so that means are taken over the global batch.

Three layouts, all exact across ranks (2 ranks with half the batch each == 1 process on the whole batch):

========================  ===============================  ======================================================
layout                    matrix (n local rows)            positive of local row i
========================  ===============================  ======================================================
``PairedLayout()``        n x n, or n x world*n gathered   column ``rank*n + i`` (the diagonal on one process)
``TwoViewLayout()``       2n x 2n, or 2n x world*2n        the other view of the same item: ``rank*2n + (i+n)%2n``;
                          (rows = [view_a; view_b])        the self-pair ``rank*2n + i`` is excluded (NT-Xent)
``QueueLayout(K)``        n x (n + K), or n x (world*n+K)  column ``rank*n + i``; the last K columns are queued
                          ([keys; queue])                  past keys, marginal for every row (MoCo)
========================  ===============================  ======================================================

``pdrl.heads`` builds the matching matrices: ``critic(a, b)``, ``critic.two_view(view_a, view_b)`` and
``critic.with_queue(queries, keys, queue)``, with a ``KeyQueue`` (``pdrl.losses.queue``) holding the queued keys.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from pdrl import distributed
from pdrl.errors import ConfigError


@dataclass(frozen=True)
class Placement:
    """A layout resolved for one matrix shape on this rank.

    Attributes:
        positive_columns: ``(n_rows,)`` column of each local row's joint pair.
        excluded: ``(n_rows, n_cols)`` bool mask of entries that are no pair at all, or None.
        n_negatives: marginal candidates per row (the same for every row).
        synced: columns were gathered from every rank; means are then global sums over ranks.
        n_total_rows: rows (anchors) in the global batch.
    """

    positive_columns: torch.Tensor
    excluded: torch.Tensor | None
    n_negatives: int
    synced: bool
    n_total_rows: int


def _gathered(n_cols: int, block: int) -> bool | None:
    """True if ``n_cols`` columns are ``block`` gathered from every rank, False if local, None if neither."""
    if n_cols == block:
        return False
    if distributed.is_distributed() and n_cols == distributed.world_size() * block:
        return True
    return None


def _block_offset_and_rows(n_rows: int, synced: bool) -> tuple[int, int]:
    """This rank's first column in gathered columns (0 when local) and the number of rows on every rank."""
    if not synced:
        return 0, n_rows
    return distributed.rank() * n_rows, distributed.world_size() * n_rows


class Layout(abc.ABC):
    """Where the joint pairs of a score matrix sit; see the module docstring for the three layouts."""

    @abc.abstractmethod
    def place(self, n_rows: int, n_cols: int, device: torch.device | None = None) -> Placement:
        """Resolve the layout for an ``(n_rows, n_cols)`` matrix on this rank (ValueError if it does not fit)."""

    def n_negatives(self, n_rows: int, n_cols: int) -> int:
        """Marginal candidates per row of an ``(n_rows, n_cols)`` matrix in this layout."""
        return self.place(n_rows, n_cols).n_negatives


class PairedLayout(Layout):
    """One positive per row: ``scores[i, j] = critic(x_i, y_j)``, joint pairs on the diagonal (the default).

    ``n x n`` on one process, or ``n x world*n`` with columns gathered from every rank (the positive of
    local row i at column ``rank*n + i``). Every other entry is marginal: m - 1 candidates per row.

    Example::

        loss = PCCLoss()(critic(embed_x(x), embed_y(y)), PairedLayout())   # same as without a layout
    """

    def place(self, n_rows: int, n_cols: int, device: torch.device | None = None) -> Placement:
        synced = _gathered(n_cols, n_rows)
        if synced is None:
            raise ValueError(
                f"scores of shape {(n_rows, n_cols)} fit no layout: expected (n, n), or (n, world_size * n) "
                f"with columns gathered from every rank (world_size is {distributed.world_size()}). For SimCLR's "
                "two views pass TwoViewLayout(), for a queue of past keys QueueLayout(queue_size)."
            )
        offset, global_rows = _block_offset_and_rows(n_rows, synced)
        columns = torch.arange(n_rows, device=device) + offset
        return Placement(columns, None, n_cols - 1, synced, global_rows)

    def __repr__(self) -> str:
        return "PairedLayout()"


class TwoViewLayout(Layout):
    """SimCLR's symmetric layout: both views are anchors, scored against both views (NT-Xent).

    Rows are the 2n local embeddings ``[view_a; view_b]``; columns are the same rows, gathered from every
    rank when ``gather_distributed`` (rank r's 2n rows at ``[r*2n, (r+1)*2n)``). The positive of row i is
    the other view of the same item, i±n; the self-pair is excluded; the other 2N - 2 entries (N items in
    the global batch, same-view pairs included) are marginal. The global batch has 2N anchors.

    Example::

        critic, layout = CosineCritic(temperature=0.1), TwoViewLayout()
        scores = critic.two_view(encoder(augment(images)), encoder(augment(images)))   # (2n, 2n)
        loss = CPCLoss(cross_entropy=True)(scores, layout)   # NT-Xent; PCCLoss() or DRFCLoss() fit too
    """

    def place(self, n_rows: int, n_cols: int, device: torch.device | None = None) -> Placement:
        synced = _gathered(n_cols, n_rows)
        if n_rows % 2 or synced is None:
            raise ValueError(
                f"scores of shape {(n_rows, n_cols)} fit no two-view layout: expected (2n, 2n) with rows "
                "[view_a; view_b], or (2n, world_size * 2n) with the columns gathered from every rank "
                f"(world_size is {distributed.world_size()}); build them with critic.two_view(view_a, view_b)."
            )
        items = n_rows // 2
        offset, global_rows = _block_offset_and_rows(n_rows, synced)
        rows = torch.arange(n_rows, device=device)
        excluded = torch.zeros(n_rows, n_cols, dtype=torch.bool, device=device)
        excluded[rows, rows + offset] = True
        positive = (rows + items) % n_rows + offset
        return Placement(positive, excluded, n_cols - 2, synced, global_rows)

    def __repr__(self) -> str:
        return "TwoViewLayout()"


class QueueLayout(Layout):
    """MoCo's layout: local queries against the keys of the batch, then a queue of K past keys.

    Columns ``[keys; queue]``: the n local keys (or the world*n keys of every rank, gathered in rank order)
    and the K queued keys, identical on every rank. The positive of query i is its own key, column
    ``rank*n + i``. The queue is marginal for every query. The batch's other keys are marginal too when
    ``batch_negatives`` (n - 1 + K candidates per row, as in MoCo v3 with a queue), or excluded (K
    candidates, MoCo v1/v2's ``[q.k+, q.queue]``).

    Args:
        queue_size: K, the number of queued keys in the matrix (``len(queue)`` *before* this step's enqueue).
        batch_negatives: use the other keys of the batch as negatives too.

    Example::

        queue = KeyQueue(size=4096, dim=128)
        scores = critic.with_queue(queries, keys, queue)          # (n, n + len(queue))
        loss = PCCLoss()(scores, QueueLayout(len(queue)))         # or queue.layout()
        queue.enqueue(keys)                                       # after scoring
    """

    def __init__(self, queue_size: int, batch_negatives: bool = True) -> None:
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 0:
            raise ConfigError(f"QueueLayout(queue_size={queue_size!r}) must be an int >= 0, e.g. len(queue).")
        if not isinstance(batch_negatives, bool):
            raise ConfigError(f"QueueLayout(batch_negatives=...) must be True or False, got {batch_negatives!r}.")
        self.queue_size, self.batch_negatives = queue_size, batch_negatives

    def place(self, n_rows: int, n_cols: int, device: torch.device | None = None) -> Placement:
        n_keys = n_cols - self.queue_size
        synced = _gathered(n_keys, n_rows)
        if synced is None:
            raise ValueError(
                f"scores of shape {(n_rows, n_cols)} fit no queue layout with {self.queue_size} queued keys: "
                f"expected (n, n + K) or (n, world_size * n + K) (world_size is {distributed.world_size()}). "
                "Read the queue's length before enqueue (QueueLayout(len(queue)) or queue.layout())."
            )
        offset, global_rows = _block_offset_and_rows(n_rows, synced)
        positive = torch.arange(n_rows, device=device) + offset
        excluded = None
        n_negatives = n_cols - 1
        if not self.batch_negatives:
            excluded = torch.zeros(n_rows, n_cols, dtype=torch.bool, device=device)
            excluded[:, :n_keys] = True
            excluded[torch.arange(n_rows, device=device), positive] = False
            n_negatives = self.queue_size
        return Placement(positive, excluded, n_negatives, synced, global_rows)

    def __repr__(self) -> str:
        return f"QueueLayout(queue_size={self.queue_size}, batch_negatives={self.batch_negatives})"
