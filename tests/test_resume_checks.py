"""What a resume checks before anything is built, logged or trained, and what it refuses to load.

- a checkpoint of another task, or of the same task with another objective, stops with one line (exit 2) before
  its W&B id is taken; ``--resume_with_changes true`` continues with the new values on purpose;
- a run stopped by its ``max_steps`` is extended by resuming with a larger one (trainer settings may change);
- a checkpoint that needs more than tensors and plain containers is refused without unpickling it (a pickled
  callable in it never runs) unless ``PDRL_TRUSTED_CHECKPOINTS=1``;
- an unwritable run folder and a probe whose datamodule has no labels are found at start.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from pdrl import fit
from pdrl.checkpointing import RUN_CONFIG_KEY, TRUST_VARIABLE, check_resume, find_last_checkpoint, read_checkpoint
from pdrl.data.images import DigitsDataModule
from pdrl.errors import ConfigError, run_command
from tests.tiny_run import run_fit, tiny_config, write_config

MARKER = Path("/tmp/pdrl_untrusted_checkpoint_ran")


def fit_tiny(tmp_path: Path, max_steps: int = 2, *args: str) -> Path:
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", max_steps, probe_every=100))
    fit.main(["--config", str(config), "--trainer.logger", "false", *args])
    return find_last_checkpoint(tmp_path / "run")


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


def test_checkpoint_stores_the_run_config_as_plain_values(tmp_path):
    checkpoint = read_checkpoint(fit_tiny(tmp_path))  # a safe (weights_only) load reads everything pdrl saved
    assert checkpoint[RUN_CONFIG_KEY]["model"]["init_args"]["objective"] == "pcc"
    assert checkpoint[RUN_CONFIG_KEY]["data"]["class_path"] == "pdrl.data.images.DigitsDataModule"
    assert torch.is_tensor(checkpoint["rng_states"]["numpy"]["keys"])


def test_checkpoint_of_another_task_stops_before_taking_its_wandb_id(tmp_path):
    """As a user meets it, in a process with W&B offline: one line, exit 2, and no W&B run written."""
    other = tmp_path / "mi"
    fit.main(["--config", "configs/mi_gaussian.yaml", "--trainer.logger", "false", "--data.steps_per_level", "2",
              "--data.heldout_batches", "0", "--trainer.default_root_dir", str(other)])  # fmt: skip
    foreign = find_last_checkpoint(other)
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", 2, probe_every=100))
    finished = run_fit(["--config", str(config), "--ckpt_path", str(foreign)], cwd=tmp_path, wandb_mode="offline")
    errors = [line for line in finished.stderr.splitlines() if line.startswith("pdrl: error:")]
    assert finished.returncode == 2 and len(errors) == 1, finished.stderr[-3000:]
    assert "is of task pdrl.tasks.mi_estimation.MIEstimation" in errors[0]
    assert "Traceback" not in finished.stderr
    assert not (tmp_path / "run" / "wandb").exists()  # the W&B run was never started


def test_weights_of_another_model_size_stop_with_one_line(tmp_path, capsys):
    checkpoint_path = fit_tiny(tmp_path)
    checkpoint = read_checkpoint(checkpoint_path)
    del checkpoint[RUN_CONFIG_KEY]  # as a checkpoint written before the config was stored
    checkpoint["state_dict"] = {name: torch.zeros(3) for name in checkpoint["state_dict"]}
    torch.save(checkpoint, tmp_path / "resized.ckpt")
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", 4, probe_every=100))
    status = run_command(fit.main, ["--config", str(config), "--ckpt_path", str(tmp_path / "resized.ckpt")])
    line = error_line(capsys)
    assert status == 2 and "does not fit this model" in line and "of another shape" in line, line


def test_another_objective_is_an_error_unless_the_user_opts_in(tmp_path, capsys):
    checkpoint = str(fit_tiny(tmp_path))
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", 4, probe_every=100))
    args = ["--config", str(config), "--trainer.logger", "false", "--ckpt_path", checkpoint]
    status = run_command(fit.main, [*args, "--model.objective", "drfc"])
    line = error_line(capsys)
    assert status == 2 and "model.init_args.objective: 'pcc' -> 'drfc'" in line and "--resume_with_changes" in line
    with pytest.warns(UserWarning, match="model.init_args.objective: 'pcc' -> 'drfc'"):
        status = run_command(fit.main, [*args, "--model.objective", "drfc", "--resume_with_changes", "true"])
    assert status == 0
    resumed = read_checkpoint(find_last_checkpoint(tmp_path / "run"))
    assert resumed["global_step"] == 4 and resumed[RUN_CONFIG_KEY]["model"]["init_args"]["objective"] == "drfc"


def test_a_run_stopped_by_max_steps_is_extended(tmp_path):
    first = fit_tiny(tmp_path, 2)
    fit_tiny(tmp_path, 5, "--ckpt_path", str(first))
    assert read_checkpoint(find_last_checkpoint(tmp_path / "run"))["global_step"] == 5


class LeavesAMark:
    """Unpickling this runs ``Path.touch`` on MARKER: code from the file."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


def test_checkpoint_with_a_pickled_callable_is_refused_without_running_it(tmp_path, capsys, monkeypatch):
    checkpoint = read_checkpoint(fit_tiny(tmp_path))
    checkpoint["callbacks"]["payload"] = LeavesAMark()
    torch.save(checkpoint, tmp_path / "shared.ckpt")
    MARKER.unlink(missing_ok=True)
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", 3, probe_every=100))
    args = ["--config", str(config), "--trainer.logger", "false", "--ckpt_path", str(tmp_path / "shared.ckpt")]
    monkeypatch.delenv(TRUST_VARIABLE, raising=False)
    status = run_command(fit.main, args)
    line = error_line(capsys)
    assert status == 2 and "was not loaded" in line and f"{TRUST_VARIABLE}=1" in line, line
    assert "pathlib" in line  # names what it would have needed
    assert not MARKER.exists()  # nothing from the file ran
    monkeypatch.setenv(TRUST_VARIABLE, "1")  # the explicit opt-in for a trusted file: it now unpickles fully
    assert read_checkpoint(tmp_path / "shared.ckpt")["callbacks"]["payload"] is None  # what Path.touch returned
    assert MARKER.exists()
    MARKER.unlink()


def test_unwritable_run_folder_is_found_at_start(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "a_file" / "run", 2, probe_every=100))
    status = run_command(fit.main, ["--config", str(config), "--trainer.logger", "false"])
    line = error_line(capsys)
    assert status == 2 and f"Cannot write to {tmp_path / 'a_file' / 'run'}" in line, line


class UnlabelledDigits(DigitsDataModule):
    """The digits without labels in their probe split: the probe cannot run on it."""

    def probe_dataset(self, split: str) -> TensorDataset:
        top, _, _ = self._split(split)
        return TensorDataset(top)


def test_probe_without_labels_is_found_at_start(tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path / "run", 2, probe_every=100))
    args = ["--config", str(config), "--trainer.logger", "false", "--data", f"{__name__}.UnlabelledDigits"]
    status = run_command(fit.main, args)
    line = error_line(capsys)
    assert status == 2 and "LinearProbe needs (input, label) examples" in line, line
    assert not (tmp_path / "run" / "checkpoints").exists() or not list((tmp_path / "run").rglob("*.ckpt"))


@pytest.mark.parametrize("config", ["shallow_mnist.yaml", "shallow_cifar.yaml"])
def test_shallow_configs_also_save_on_wall_time(tmp_path, config):
    """Besides every 1000 steps, a second ModelCheckpoint saves last.ckpt every few minutes of training; the same
    setting in a tiny run (an interval of zero) writes a checkpoint before any step-based one would."""
    callbacks = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / config).read_text())["trainer"]
    timed = [c["init_args"] for c in callbacks["callbacks"] if "train_time_interval" in c.get("init_args", {})]
    assert len(timed) == 1 and timed[0]["save_last"] and timed[0]["train_time_interval"].count(":") == 2
    every = {**timed[0], "train_time_interval": "0:00:00", "dirpath": str(tmp_path / "timed")}
    extra = [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": every}]
    run_config = tiny_config(tmp_path / "run", 3, probe_every=100, extra_callbacks=extra)
    run_config["trainer"]["callbacks"] = [c for c in run_config["trainer"]["callbacks"] if "ModelCheckpoint" not in
                                          c["class_path"]] + extra  # fmt: skip
    fit.main(["--config", str(write_config(tmp_path / "config.yaml", run_config)), "--trainer.logger", "false"])
    assert read_checkpoint(tmp_path / "timed" / "last.ckpt")["global_step"] == 3


def test_an_argument_added_since_the_checkpoint_is_no_change_at_its_default():
    """Checkpoints from before ``view_noise_std`` existed resume with the configs that now spell out its default."""

    def stored(**data_args) -> dict:
        data = {"class_path": "pdrl.data.images.MNISTDataModule", "init_args": {"root": "data", **data_args}}
        model = {"class_path": "pdrl.tasks.representation.RepresentationLearning", "init_args": {}}
        return {"model": model, "data": data}

    old = {RUN_CONFIG_KEY: stored(), "state_dict": {}}
    assert check_resume(old, "old.ckpt", stored(view_noise_std=0.0), allow_changes=False) == []
    with pytest.raises(ConfigError, match=r"data.init_args.view_noise_std: None -> 0.25"):
        check_resume(old, "old.ckpt", stored(view_noise_std=0.25), allow_changes=False)  # not the default: a change
    with pytest.raises(ConfigError, match=r"data.init_args.view_noise_std: 0.25 -> 0.0"):
        check_resume({RUN_CONFIG_KEY: stored(view_noise_std=0.25)}, "run.ckpt", stored(view_noise_std=0.0), False)
    with pytest.raises(ConfigError, match=r"data.init_args.no_such_argument: None -> 0.0"):
        check_resume(old, "old.ckpt", stored(no_such_argument=0.0), allow_changes=False)
