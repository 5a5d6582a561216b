"""Lightning callbacks: everything that evaluates or reports (linear probe, figures, tables, metrics), the non-finite
loss guard, and the callbacks that store a run's state in every checkpoint."""

from pdrl.callbacks.checkpoint_state import RandomState, RunConfig, WandbRunId
from pdrl.callbacks.finite_guard import FiniteGuard, NonFiniteLossError
from pdrl.callbacks.linear_probe import LinearProbe

__all__ = [
    "FiniteGuard",
    "LinearProbe",
    "NonFiniteLossError",
    "RandomState",
    "RunConfig",
    "WandbRunId",
]
