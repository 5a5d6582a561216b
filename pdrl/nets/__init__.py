"""Encoders: MLPs, RealNVP (shallow task) and the AMDIM-style encoder (deep task)."""

from pdrl.nets.amdim import AMDIMEncoder, GlobalBatchNorm2d
from pdrl.nets.mlp import MLP
from pdrl.nets.realnvp import RealNVP

__all__ = ["MLP", "AMDIMEncoder", "GlobalBatchNorm2d", "RealNVP"]
