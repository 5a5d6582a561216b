"""Objectives by name, so a config can say ``objective: pcc``."""

from __future__ import annotations

import inspect
from typing import Any

from pdrl.errors import ConfigError
from pdrl.losses.base import DependencyLoss
from pdrl.losses.classifier import PCCLoss
from pdrl.losses.contrastive import CPCLoss
from pdrl.losses.density_matching import DensityMatchingLagrangianLoss, DensityMatchingPenaltyLoss
from pdrl.losses.locations import PooledCPCLoss
from pdrl.losses.mice import MICELoss
from pdrl.losses.ratio_fitting import DRFCLoss
from pdrl.losses.variational import DVLoss, JSLoss, MINELoss, NWJLoss, SMILELoss, VariationalBoundLoss

OBJECTIVES: dict[str, type[DependencyLoss]] = {
    "cpc": CPCLoss,
    "infonce": CPCLoss,
    "cpc_pooled": PooledCPCLoss,  # AMDIM's NCE on stacked location scores; CPC on one matrix
    "pcc": PCCLoss,
    "drfc": DRFCLoss,
    "nwj": NWJLoss,
    "js": JSLoss,
    "dv": DVLoss,
    "mine": MINELoss,
    "smile": SMILELoss,
    "variational": VariationalBoundLoss,
    "dm1": DensityMatchingLagrangianLoss,
    "dm2": DensityMatchingPenaltyLoss,
    "mice": MICELoss,
}


def build_objective(name: str, **kwargs: Any) -> DependencyLoss:
    """Instantiate the objective registered as ``name`` with its keyword arguments.

    Raises:
        ConfigError: for an unknown name (listing the valid ones) or an argument the objective does not take
            (listing the ones it does take).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in OBJECTIVES:
        raise ConfigError(f"Unknown objective {name!r}: choose one of {', '.join(sorted(OBJECTIVES))}.")
    cls = OBJECTIVES[key]
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    # an objective without an __init__ of its own inherits nn.Module's (*args, **kwargs): it takes no arguments
    accepted = {p.name for p in inspect.signature(cls.__init__).parameters.values() if p.kind in named} - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(
            f"Objective {name!r} ({cls.__name__}) takes no argument {', '.join(unknown)}; "
            f"it accepts: {', '.join(sorted(accepted)) or 'no arguments'}."
        )
    return cls(**kwargs)
