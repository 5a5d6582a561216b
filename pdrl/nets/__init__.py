"""Encoders: MLPs here; RealNVP (shallow task) and AMDIM-style (deep task) in their own modules."""

from pdrl.nets.mlp import MLP

__all__ = ["MLP"]
