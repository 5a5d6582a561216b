"""The objective registry: every name builds its class, and a wrong name or argument says exactly what to set."""

from __future__ import annotations

import re

import pytest

from pdrl.errors import ConfigError
from pdrl.losses import (
    OBJECTIVES,
    CPCLoss,
    DensityMatchingLagrangianLoss,
    DensityMatchingPenaltyLoss,
    DRFCLoss,
    DVLoss,
    JSLoss,
    MICELoss,
    MINELoss,
    NWJLoss,
    PCCLoss,
    SMILELoss,
    VariationalBoundLoss,
    build_objective,
)
from pdrl.losses.locations import PooledCPCLoss
from tests.messages import exactly

EXPECTED = {
    "cpc": CPCLoss,
    "infonce": CPCLoss,
    "cpc_pooled": PooledCPCLoss,
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


def test_the_registry_holds_exactly_the_documented_names() -> None:
    assert OBJECTIVES == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_name_builds_its_class_with_defaults_in_any_case(name: str) -> None:
    assert type(build_objective(name)) is EXPECTED[name]
    assert type(build_objective(name.upper())) is EXPECTED[name]


def test_keyword_arguments_reach_the_objective() -> None:
    assert build_objective("drfc", alpha=0.25, eps=1e-3).alpha == 0.25
    assert build_objective("smile", tau=3.0).tau == 3.0
    assert build_objective("pcc", balanced=False).balanced is False
    assert build_objective("mice", form="nwj").form == "nwj"


def test_an_unknown_name_lists_every_valid_one() -> None:
    message = f"Unknown objective 'pcx': choose one of {', '.join(sorted(EXPECTED))}."
    with pytest.raises(ConfigError, match=exactly(message)):
        build_objective("pcx")


def test_a_name_that_is_not_a_string_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("Unknown objective 3: choose one of cpc,")):
        build_objective(3)  # type: ignore[arg-type]


def test_an_unknown_argument_names_itself_and_the_accepted_ones() -> None:
    message = "Objective 'DRFC' (DRFCLoss) takes no argument beta, gamma; it accepts: alpha, eps, readout."
    with pytest.raises(ConfigError, match=exactly(message)):
        build_objective("DRFC", gamma=1, beta=2, alpha=0.1)


@pytest.mark.parametrize("name", ["nwj", "js", "dv", "variational", "dm1"])
def test_an_objective_without_arguments_accepts_none(name: str) -> None:
    # these classes inherit nn.Module.__init__(*args, **kwargs); that signature must not read as "takes anything"
    cls = EXPECTED[name].__name__
    message = f"Objective {name!r} ({cls}) takes no argument tau; it accepts: no arguments."
    with pytest.raises(ConfigError, match=exactly(message)):
        build_objective(name, tau=1.0)
