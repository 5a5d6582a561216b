"""A non-editable install ships the configs: ``--config shallow_cifar.yaml`` works from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_run import REPO


@pytest.mark.slow
def test_bare_config_name_works_after_a_non_editable_install(tmp_path: Path) -> None:
    target, elsewhere, source = tmp_path / "site", tmp_path / "elsewhere", tmp_path / "source"
    elsewhere.mkdir()
    anywhere = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".*cache")

    def outputs(folder: str, names: list[str]) -> set[str]:
        # run outputs only at the top: a name like "data" is also a package (pdrl/data), which the wheel must hold
        top_level = {"runs", "data", "wandb"} & set(names) if Path(folder) == REPO else set()
        return anywhere(folder, names) | top_level

    shutil.copytree(REPO, source, symlinks=True, ignore=outputs)  # pip builds in the tree: not in this checkout
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    build = subprocess.run(
        [*install, "--target", str(target), str(source)], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert not (target / "pdrl" / "configs").is_symlink()  # the wheel holds the files themselves
    assert (target / "pdrl" / "data" / "augment.py").is_file()  # every subpackage, pdrl/data included
    env = {**os.environ, "PYTHONPATH": str(target), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    shown = subprocess.run(
        [sys.executable, "-c", "import pdrl; print(pdrl.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert shown.stdout.startswith(str(target)), shown.stdout + shown.stderr  # the installed copy, not this checkout
    printed = subprocess.run(
        [sys.executable, "-m", "pdrl.fit", "--config", "shallow_cifar.yaml", "--print_config"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert "class_path: pdrl.tasks.representation.RepresentationLearning" in printed.stdout
    assert "gather_distributed: true" in printed.stdout
