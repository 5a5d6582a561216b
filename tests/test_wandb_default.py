"""W&B on a fresh machine: the README's quick start with no key, no WANDB_* variable, an empty HOME and stdin
closed logs offline, says so in one line, and never prompts; the offline run holds the probe plot, the figures
and the resolved config; a resume continues the same W&B step axis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pdrl.wandb_setup import choose_wandb_mode, has_wandb_credentials
from tests.tiny_run import REPO
from tests.wandb_records import history, records, run_name

NOTICE = "pdrl: no W&B API key found, so W&B logs offline to "
QUICK_START = [
    "--config",
    "configs/quickstart_digits.yaml",
    "--trainer.callbacks.init_args.every_n_steps",
    "2",
    "--trainer.log_every_n_steps",
    "2",
]


def fresh_machine_env(home: Path) -> dict[str, str]:
    """Nothing a user would have set: no WANDB_* variable, no key, an empty HOME (so no netrc, no W&B settings)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WANDB_") and key != "NETRC"}
    return {**env, "HOME": str(home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def quick_start(folder: Path, *args: str) -> subprocess.CompletedProcess:
    home = folder / "home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "pdrl.fit", *QUICK_START, *args],
        cwd=folder,
        env=fresh_machine_env(home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The quick start for 4 steps, then resumed to 6 with ``--ckpt_path last``, in a folder without configs/."""
    folder = tmp_path_factory.mktemp("fresh_machine")
    first = quick_start(folder, "--trainer.max_steps", "4")
    resumed = quick_start(folder, "--trainer.max_steps", "6", "--ckpt_path", "last")
    run_files = sorted((folder / "runs" / "wandb").glob("offline-run-*/run-*.wandb"))
    return {"folder": folder, "first": first, "resumed": resumed, "run_files": run_files}


@pytest.mark.slow
def test_quick_start_logs_offline_with_one_line_and_no_prompt(runs: dict) -> None:
    first = runs["first"]
    assert first.returncode == 0, first.stderr[-3000:]
    output = first.stdout + first.stderr
    notices = [line for line in output.splitlines() if line.startswith(NOTICE)]
    assert len(notices) == 1, output[-3000:]
    folder = notices[0][len(NOTICE) :].split(";")[0]
    assert (runs["folder"] / folder).is_dir() and Path(folder).name.startswith("offline-run-")
    assert f"wandb sync {folder}" in notices[0]
    assert "wandb:" not in output  # W&B's own banner and prompts stay silent


@pytest.mark.slow
def test_offline_run_holds_plot_figures_config_and_the_objective_in_its_name(runs: dict) -> None:
    run_file = runs["run_files"][0]
    assert run_name(run_file) == "quickstart_digits-cpc"
    keys = set().union(*(row for _, row in history(run_file)))
    assert {"probe/accuracy", "train/loss", "probe/curve_table/path", "figures/probe_curve/path"} <= keys
    assert "figures/feature_pca/path" in keys
    charts = [
        list(update.nested_key)
        for record in records(run_file)
        if record.WhichOneof("record_type") == "config"
        for update in record.config.update
    ]
    assert ["_wandb", "visualize", "probe/curve"] in charts  # the line plot over the curve table
    files = run_file.parent / "files"
    resolved = (files / "resolved_config.yaml").read_text()
    assert "class_path: pdrl.tasks.representation.RepresentationLearning" in resolved
    assert list((files / "media" / "images" / "figures").glob("probe_curve_*.png"))
    assert (runs["folder"] / "runs" / "quickstart_digits" / "config.yaml").is_file()
    assert not (runs["folder"] / "runs" / "config.yaml").exists()  # no config shared by every run


@pytest.mark.slow
def test_probe_curve_is_logged_at_every_probe(runs: dict) -> None:
    rows = history(runs["run_files"][0])
    probe_steps = [step for step, row in rows if "probe/accuracy" in row]
    curve_steps = [step for step, row in rows if "probe/curve_table/path" in row]
    assert probe_steps == [0, 2, 4] and curve_steps == probe_steps  # step 0: the untrained encoder (at_start)


@pytest.mark.slow
def test_resume_continues_the_step_axis_of_the_same_run(runs: dict) -> None:
    assert runs["resumed"].returncode == 0, runs["resumed"].stderr[-3000:]
    first_file, resumed_file = runs["run_files"]
    assert first_file.name == resumed_file.name  # the same run id, in a second offline folder
    first_steps = [step for step, _ in history(first_file)]
    resumed_rows = history(resumed_file)
    assert max(first_steps) == 4
    assert min(step for step, _ in resumed_rows) > max(first_steps)
    assert all(row["_step"] == step for step, row in resumed_rows)
    assert [row["trainer/global_step"] for step, row in resumed_rows if "probe/accuracy" in row] == [6]


def test_credentials_are_found_where_wandb_login_writes_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert not has_wandb_credentials({"HOME": str(home)})
    assert has_wandb_credentials({"HOME": str(home), "WANDB_API_KEY": "x" * 40})
    (home / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    assert has_wandb_credentials({"HOME": str(home)})
    assert not has_wandb_credentials({"HOME": str(home), "WANDB_BASE_URL": "https://wandb.example.com"})


def test_offline_is_chosen_only_without_a_mode_and_without_a_key(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path)}
    assert choose_wandb_mode(environ) and environ["WANDB_MODE"] == "offline"
    for given in ({"WANDB_MODE": "online"}, {"WANDB_MODE": "disabled"}, {"WANDB_API_KEY": "x" * 40}):
        environ = {"HOME": str(tmp_path), **given}
        assert not choose_wandb_mode(environ)
        assert environ.get("WANDB_MODE") == given.get("WANDB_MODE")


def test_a_run_that_logs_elsewhere_needs_no_wandb(tmp_path: Path) -> None:
    """wandb is imported where a W&B logger logs, never at import: a run with a CSVLogger trains, probes and plots
    with ``import wandb`` failing (a GPU machine without it, say)."""
    code = (
        "import sys; sys.modules['wandb'] = None\n"  # any `import wandb` now raises ImportError
        "from pdrl.fit import main\n"
        "main(sys.argv[1:])\n"
        "assert 'wandb' not in {name.split('.')[0] for name, module in sys.modules.items() if module is not None}\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code, *QUICK_START, "--trainer.max_steps", "2",
         "--trainer.logger", "pytorch_lightning.loggers.CSVLogger", "--trainer.logger.save_dir", str(tmp_path)],
        cwd=tmp_path, env=fresh_machine_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "probe/accuracy" in next(tmp_path.glob("*/version_0/metrics.csv")).read_text()
