"""The README's commands stay true: every config it names exists, is documented, and parses with the
overrides the README shows."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pdrl.fit import main

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
CONFIGS = sorted(path.name for path in (ROOT / "configs").glob("*.yaml"))
CONFIG_NAME = r"configs/([a-z0-9_]+\.yaml)"  # lower-case names: configs/X.yaml is the README's placeholder
FIT_COMMANDS = [
    shlex.split(line.split("python -m pdrl.fit", 1)[1].split("#")[0])
    for line in re.findall(r"python -m pdrl\.fit --config [^`\n]*", README)
    if re.search(CONFIG_NAME, line)
]
CONFIGS_WITH_OBJECTIVE = [name for name in CONFIGS if "objective:" in (ROOT / "configs" / name).read_text()]


def test_every_config_is_documented_and_every_documented_config_exists() -> None:
    named = set(re.findall(CONFIG_NAME, README))
    assert named == set(CONFIGS), f"undocumented: {set(CONFIGS) - named}, missing: {named - set(CONFIGS)}"


@pytest.mark.parametrize("arguments", FIT_COMMANDS, ids=[" ".join(args) for args in FIT_COMMANDS])
def test_documented_fit_command_parses(arguments: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*arguments, "--print_config"])
    assert stop.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path" in printed and "trainer:" in printed


def test_most_configs_take_an_objective() -> None:
    assert len(CONFIGS_WITH_OBJECTIVE) >= len(CONFIGS) - 1  # only the vanilla GAN has none


@pytest.mark.parametrize("config", CONFIGS_WITH_OBJECTIVE)
def test_objective_override_parses(config: str, capsys: pytest.CaptureFixture) -> None:
    """The README's one-key override works on every config whose task takes an objective."""
    with pytest.raises(SystemExit):
        main(
            [
                "--config",
                f"configs/{config}",
                "--model.objective",
                "drfc",
                "--model.objective_args",
                "{}",
                "--print_config",
            ]
        )
    assert "objective: drfc" in capsys.readouterr().out
