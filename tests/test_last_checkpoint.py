"""One ``last.ckpt`` per run: the shallow configs' step and time checkpoints write the same file, so
``--ckpt_path last`` always resumes the newest state, whichever of the two callbacks fired last."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pdrl import fit
from pdrl.checkpointing import find_last_checkpoint, read_checkpoint
from pdrl.errors import run_command
from tests.tiny_run import tiny_config, write_config

ROOT = Path(__file__).parents[1]


def shipped_checkpoint_callbacks(config: str) -> list[dict]:
    callbacks = yaml.safe_load((ROOT / "configs" / config).read_text())["trainer"]["callbacks"]
    return [callback for callback in callbacks if callback["class_path"].endswith("ModelCheckpoint")]


@pytest.mark.parametrize("config", ["shallow_cifar.yaml", "shallow_mnist.yaml"])
@pytest.mark.parametrize("time_first", [True, False], ids=["time callback first", "step callback first"])
def test_both_checkpoint_callbacks_write_one_last_checkpoint_with_the_newest_step(tmp_path, config, time_first):
    step_callback, time_callback = shipped_checkpoint_callbacks(config)
    assert (
        step_callback["init_args"]["every_n_train_steps"] == 1000
        and "train_time_interval" in time_callback["init_args"]
    )
    step_callback["init_args"]["every_n_train_steps"] = 3  # the step callback at steps 3 and 6
    time_callback["init_args"]["train_time_interval"] = "0:00:00"  # the time callback at every step
    callbacks = [time_callback, step_callback] if time_first else [step_callback, time_callback]
    run = tmp_path / "run"
    tiny = tiny_config(run, max_steps=7, probe_every=100)
    tiny["trainer"]["callbacks"] = [tiny["trainer"]["callbacks"][0], *callbacks]  # the probe, then the shipped pair
    assert run_command(fit.main, ["--config", str(write_config(tmp_path / "config.yaml", tiny))]) == 0
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    assert read_checkpoint(find_last_checkpoint(run))["global_step"] == 7
