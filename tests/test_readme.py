"""The README's and the docs' commands stay true: every config the README names exists, every fit command of the
README and the docs parses with the overrides it shows, the README's code block runs, and its links resolve."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pdrl.fit import main

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {path.relative_to(ROOT).as_posix(): path.read_text() for path in sorted((ROOT / "docs").rglob("*.md"))}
CONFIGS = sorted(path.name for path in (ROOT / "configs").glob("*.yaml"))
CONFIG_NAME = r"configs/([a-z0-9_]+\.yaml)"  # lower-case names: configs/X.yaml is the README's placeholder
FIT_COMMANDS = [
    shlex.split(re.sub(r"\[(--[^]]*)\]", r"\1", line.split("python -m pdrl.fit", 1)[1].split("#")[0]))  # [--opt]
    for text in [README, *DOCS.values()]
    for line in re.findall(r"python -m pdrl\.fit --config [^`\n]*", re.sub(r"\\\n\s*", " ", text))
    if re.search(CONFIG_NAME, line) and "..." not in line and "<" not in line
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


def test_the_readme_loss_block_runs_as_written() -> None:
    """The one code block of the loss library, with identity networks and a random batch filled in."""
    import torch

    block = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    batch, dim = 8, 128
    names = {
        "encoder": lambda x: x,
        "head": lambda x: x,
        "view_a": torch.randn(batch, dim, requires_grad=True),
        "view_b": torch.randn(batch, dim),
        "queries": torch.randn(batch, dim, requires_grad=True),
        "keys": torch.randn(batch, dim),
    }
    exec(compile(block, "README.md", "exec"), names)
    assert torch.isfinite(names["loss"]) and names["loss"].requires_grad
    assert len(names["queue"]) == batch  # enqueue ran on the keys


def test_every_relative_link_of_the_readme_resolves() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links its results files"
    assert [link for link in local if not (ROOT / link).exists()] == []
