"""Lightning callbacks: linear evaluation of a frozen representation."""

from pdrl.callbacks.linear_probe import LinearProbe, linear_probe_accuracy

__all__ = ["LinearProbe", "linear_probe_accuracy"]
