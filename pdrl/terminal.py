"""A quiet terminal for ``pdrl.fit``: the lines and warnings a fit drops, only while it runs.

Dropped: Lightning's "Tip" and "GPU/TPU available" info lines, its hint to use DataLoader workers (pdrl's
datamodules load in-memory tensors with ``num_workers=0`` on purpose), the ``LeafSpec`` FutureWarning that
Lightning's own code triggers in torch, and torch's "No CUDA runtime is found" line on a CPU. Every other line and
warning stays, and nothing is filtered outside ``quiet_lightning``'s block.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from pytorch_lightning.utilities.warnings import PossibleUserWarning

# Lightning's info lines that say nothing about this run: where its logger (``pytorch_lightning.utilities.rank_zero``,
# used by every ``rank_zero_info``) is filtered rather than raised to WARNING, which would also drop the lines worth
# reading ("Restoring states from the checkpoint path at ...", "`Trainer.fit` stopped: `max_steps=...` reached.").
LIGHTNING_RANK_ZERO_LOGGER = "pytorch_lightning.utilities.rank_zero"
DROPPED_LIGHTNING_LINES = ("💡 Tip:", "GPU available:", "TPU available:")
# torch.compile on a CPU with torch's CUDA wheels: inductor's first C++ build says it found no CUDA runtime, which
# a CPU run does not need
TORCH_CPP_EXTENSION_LOGGER = "torch.utils.cpp_extension"
DROPPED_TORCH_LINES = ("No CUDA runtime is found",)
# (message regex, category) of the warnings a fit drops: Lightning's hint to use DataLoader workers (pdrl's datamodules
# load in-memory tensors with num_workers=0 on purpose), and the FutureWarning that Lightning's own _pytree code
# triggers by building torch's deprecated LeafSpec.
DROPPED_WARNINGS = (
    (r"The '\w+' does not have many workers which may be a bottleneck", PossibleUserWarning),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
)


class _DropLines(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Within the block, drop ``DROPPED_LIGHTNING_LINES``, ``DROPPED_TORCH_LINES`` and ``DROPPED_WARNINGS``; all are
    restored after it."""
    filters = [
        (logging.getLogger(LIGHTNING_RANK_ZERO_LOGGER), _DropLines(DROPPED_LIGHTNING_LINES)),
        (logging.getLogger(TORCH_CPP_EXTENSION_LOGGER), _DropLines(DROPPED_TORCH_LINES)),
    ]
    for logger, dropped in filters:
        logger.addFilter(dropped)
    try:
        with warnings.catch_warnings():
            for message, category in DROPPED_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        for logger, dropped in filters:
            logger.removeFilter(dropped)
