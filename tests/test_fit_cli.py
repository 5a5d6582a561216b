"""The command line guides a new user: shipped configs by bare name, a --help that starts with the configs and
the objectives, and an unknown objective refused while parsing, --print_config included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pdrl.errors import run_command
from pdrl.fit import SHIPPED_CONFIGS, main, resolve_config_args, shipped_configs
from pdrl.losses import OBJECTIVES
from tests.tiny_run import subprocess_env


def test_bare_and_configs_names_resolve_to_the_shipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    shipped = str(SHIPPED_CONFIGS / "shallow_cifar.yaml")
    assert resolve_config_args(["--config", "shallow_cifar.yaml"]) == ["--config", shipped]
    assert resolve_config_args(["-c", "configs/shallow_cifar.yaml"]) == ["-c", shipped]
    assert resolve_config_args(["--config", "shallow_cifar"]) == ["--config", shipped]  # the .yaml left out
    resolved = resolve_config_args(["--config=shallow_cifar.yaml", "--model.lr", "1"])
    assert resolved == [f"--config={shipped}", "--model.lr", "1"]
    (tmp_path / "shallow_cifar.yaml").write_text("seed_everything: 1\n")
    assert resolve_config_args(["--config", "shallow_cifar.yaml"]) == ["--config", "shallow_cifar.yaml"]  # a file wins


def test_a_missing_config_names_the_shipped_ones(capsys: pytest.CaptureFixture) -> None:
    assert run_command(main, ["--config", "shalow_cifar.yaml", "--print_config"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("pdrl: error: Config shalow_cifar.yaml does not exist") and "shallow_cifar.yaml" in error


def test_help_starts_with_the_configs_and_the_objectives() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pdrl.fit", "--help"], env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    head = result.stdout.splitlines()[:4]
    assert head[0].startswith("usage: python -m pdrl.fit --config NAME.yaml")
    assert head[2] == f"Shipped configs (--config NAME): {', '.join(shipped_configs())}."
    assert head[3] == f"Objectives (--model.objective NAME): {', '.join(OBJECTIVES)}."
    assert "LightningCLI's args parameter" not in result.stderr


@pytest.mark.parametrize("config", ["quickstart_digits.yaml", "mi_gaussian.yaml", "deep_cifar_small.yaml"])
def test_unknown_objective_fails_while_parsing_also_with_print_config(
    config: str, capsys: pytest.CaptureFixture
) -> None:
    assert run_command(main, ["--config", config, "--model.objective", "foo", "--print_config"]) == 2
    captured = capsys.readouterr()
    assert "objective: foo" not in captured.out  # nothing printed as if it were valid
    message = captured.err.strip().splitlines()[-1]  # after Lightning's warning about pytest's own argv
    choices = ", ".join(OBJECTIVES)
    assert message.startswith(f"pdrl: error: model.objective: 'foo' is not one of the choices: {choices}.")


def test_model_help_lists_pdrl_modules_and_still_takes_any_torch_module(capsys: pytest.CaptureFixture) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pdrl.fit", "--model.help", "RepresentationLearning"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = " ".join(result.stdout.split())  # the help wraps lines
    for argument in ("encoder_a", "encoder_b", "critic"):
        described = text.split(f"--model.{argument} {argument.upper()}")[-1].split("--model.")[0]  # not the usage
        assert "pdrl.nets.RealNVP" in described and "pdrl.heads.BilinearCritic" in described
        assert "or any torch.nn.Module by class_path" in described
        assert "torch.nn.Conv2d" not in described and "pdrl.losses" not in described
    # what a config may name is unchanged: a torch module as the encoder still parses
    config = ["--config", "quickstart_digits.yaml", "--model.encoder_b", "torch.nn.Identity", "--print_config"]
    with pytest.raises(SystemExit) as printed:
        main(config)
    assert printed.value.code == 0
    assert "class_path: torch.nn.Identity" in capsys.readouterr().out


def test_the_mi_tasks_removed_critic_key_is_an_unknown_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``critic``, ``critic_name``'s name before 0.1.0, gets jsonargparse's one line for any unknown key."""
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  init_args:\n    critic: separable\n")
    assert run_command(main, ["--config", "mi_gaussian", "--config", str(old), "--print_config"]) == 2
    captured = capsys.readouterr()
    assert "critic_name: separable" not in captured.out  # nothing printed as if it were valid
    assert captured.err.strip().splitlines()[-1] == (
        "pdrl: error: model: Option 'critic' is not accepted. Check the config value (python -m pdrl.fit --help lists "
        "every key)."
    )


def test_the_pdrl_console_script_is_python_m_pdrl_fit(monkeypatch, capsys) -> None:
    """``pdrl ARGS`` (pyproject's console script) ends a user error in one line with status 2, as ``python -m``."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="pdrl")
    monkeypatch.setattr("sys.argv", ["pdrl", "--config", "no_such_config.yaml"])
    assert script.load()() == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("pdrl: error: Config no_such_config.yaml does not exist"), error
