"""Lightning callbacks: linear evaluation of a frozen representation, and the non-finite loss guard."""

from pdrl.callbacks.finite_guard import FiniteGuard, NonFiniteLossError
from pdrl.callbacks.linear_probe import LinearProbe, linear_probe_accuracy

__all__ = ["FiniteGuard", "LinearProbe", "NonFiniteLossError", "linear_probe_accuracy"]
