"""Non-finite losses and gradients: FiniteGuard stops with the right message or skips the step; a checkpoint
half-written when the process dies is never loaded. (W&B offline without a network: tests/test_resume.py.)"""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_lightning import Callback, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint

from pdrl import fit
from pdrl.callbacks.finite_guard import FiniteGuard, NonFiniteLossError, all_finite
from pdrl.checkpointing import AtomicCheckpointIO, find_last_checkpoint, read_checkpoint
from pdrl.data.images import DigitsDataModule
from pdrl.errors import run_command
from pdrl.heads import BilinearCritic
from pdrl.nets.realnvp import RealNVP
from pdrl.tasks.representation import RepresentationLearning
from tests.tiny_run import tiny_config, write_config


def tiny_task() -> RepresentationLearning:
    encoder = {"dim": 32, "num_couplings": 2, "hidden_dims": [16], "init_std": 1.0e-4}
    return RepresentationLearning(
        RealNVP(**encoder, seed=0), RealNVP(**encoder, seed=1), BilinearCritic(32, 32), objective="pcc", lr=1e-3
    )


def inject_nan_loss(task: RepresentationLearning, steps: set[int]) -> None:
    """Make the objective return NaN at the given global steps (as a diverging critic would)."""
    objective_forward = task.objective.forward

    def forward(scores: torch.Tensor) -> torch.Tensor:
        loss = objective_forward(scores)
        return loss * math.nan if task.global_step in steps else loss

    task.objective.forward = forward


class WeightHistory(Callback):
    """The flattened weights after every optimizer step."""

    def __init__(self) -> None:
        self.after_step: dict[int, torch.Tensor] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        weights = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        self.after_step[trainer.global_step] = weights.clone()


def trainer(tmp_path, guard: FiniteGuard, max_steps: int = 8, every_n_steps: int = 1, *callbacks) -> Trainer:
    checkpoints = ModelCheckpoint(tmp_path / "checkpoints", every_n_train_steps=every_n_steps, save_last=True)
    return Trainer(
        max_steps=max_steps,
        callbacks=[guard, checkpoints, *callbacks],
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


def test_nan_loss_stops_with_step_objective_and_last_good_checkpoint(tmp_path):
    task = tiny_task()
    inject_nan_loss(task, {5})
    with pytest.raises(NonFiniteLossError) as raised:
        trainer(tmp_path, FiniteGuard()).fit(task, datamodule=DigitsDataModule(batch_size=64))
    message = str(raised.value)
    last = str(tmp_path / "checkpoints" / "last.ckpt")
    assert "Non-finite loss nan at step 5 with objective pcc" in message
    assert f"last good checkpoint is {last}" in message and "--ckpt_path" in message
    checkpoint = read_checkpoint(last)
    assert checkpoint["global_step"] == 5  # saved after step 5's update of step index 4, never overwritten
    assert all(torch.isfinite(weight).all() for weight in checkpoint["state_dict"].values())
    for name, weight in task.state_dict().items():  # the NaN step changed nothing
        assert torch.equal(weight, checkpoint["state_dict"][name])


def test_nan_before_any_checkpoint_saves_the_good_weights_to_a_new_file(tmp_path):
    task = tiny_task()
    inject_nan_loss(task, {2})
    with pytest.raises(NonFiniteLossError, match="at step 2 with objective pcc") as raised:
        trainer(tmp_path, FiniteGuard(), every_n_steps=100).fit(task, datamodule=DigitsDataModule(batch_size=64))
    path = tmp_path / "checkpoints" / "nonfinite-step=2.ckpt"
    assert str(path) in str(raised.value)
    saved = read_checkpoint(path)["state_dict"]
    assert all(torch.isfinite(weight).all() for weight in saved.values())
    assert all(torch.equal(weight, saved[name]) for name, weight in task.state_dict().items())


def test_skip_leaves_weights_and_adam_untouched_and_counts(tmp_path):
    task = tiny_task()
    inject_nan_loss(task, {3, 4})
    history = WeightHistory()
    guard = FiniteGuard(action="skip")
    with pytest.warns(UserWarning, match="non-finite loss nan at step 3 .*objective pcc.*skipped"):
        trainer(tmp_path, guard, 8, 1, history).fit(task, datamodule=DigitsDataModule(batch_size=64))
    assert guard.skipped_steps == 2 and guard.consecutive_skips == 0
    assert torch.equal(history.after_step[4], history.after_step[3])  # step index 3 skipped
    assert torch.equal(history.after_step[5], history.after_step[3])  # step index 4 skipped
    assert not torch.equal(history.after_step[6], history.after_step[5])  # training goes on
    assert all(torch.isfinite(weights).all() for weights in history.after_step.values())
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 8
    assert checkpoint["callbacks"]["FiniteGuard"]["skipped_steps"] == 2
    assert all(state["step"] == 6 for state in checkpoint["optimizer_states"][0]["state"].values())  # 8 - 2 skipped


def test_non_finite_gradient_with_finite_loss_is_caught(tmp_path):
    task = tiny_task()
    parameter = next(task.critic.parameters())
    parameter.register_hook(lambda grad: grad * math.inf if task.global_step == 2 else grad)
    guard = FiniteGuard(action="skip")
    with pytest.warns(UserWarning, match="non-finite gradient"):
        trainer(tmp_path, guard, 4).fit(task, datamodule=DigitsDataModule(batch_size=64))
    assert guard.skipped_steps == 1
    with pytest.raises(NonFiniteLossError, match="Non-finite gradient .* at step 2"):
        trainer(tmp_path / "raise", FiniteGuard(), 4).fit(tiny_task_with_hook(), datamodule=DigitsDataModule(64))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_all_finite_finds_one_bad_element_in_many(bad):
    tensors = [torch.randn(1000), torch.randn(50, 40, dtype=torch.float64), torch.randn(7).bfloat16()]
    assert all_finite(tensors) and all_finite([])
    for tensor in tensors:
        tensor.view(-1)[3] = bad
        assert not all_finite(tensors)
        tensor.view(-1)[3] = 0.0


def test_all_finite_is_exact_when_the_sum_of_finite_values_overflows():
    huge = torch.full((4,), torch.finfo(torch.float32).max)  # finite, but its sum is inf
    assert all_finite([huge, torch.zeros(3)])
    huge[1] = math.nan
    assert not all_finite([huge])


def tiny_task_with_hook() -> RepresentationLearning:
    task = tiny_task()
    next(task.critic.parameters()).register_hook(lambda grad: grad * math.inf if task.global_step == 2 else grad)
    return task


def test_skip_gives_up_after_too_many_in_a_row(tmp_path):
    task = tiny_task()
    inject_nan_loss(task, set(range(100)))
    with (
        pytest.raises(NonFiniteLossError, match="in 3 steps in a row at step 2 with objective"),
        pytest.warns(UserWarning),
    ):
        trainer(tmp_path, FiniteGuard("skip", max_consecutive_skips=3)).fit(task, datamodule=DigitsDataModule(64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"action": "ignore"}, "action='ignore'"), ({"max_consecutive_skips": 0}, "max_consecutive_skips=0")],
)
def test_guard_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FiniteGuard(**kwargs)


def test_cli_nan_ends_in_one_line_and_nonzero_status(tmp_path, monkeypatch, capsys):
    from pdrl.losses.classifier import PCCLoss

    forward = PCCLoss.forward
    calls = []

    def nan_on_third_call(self, scores):
        calls.append(1)
        return forward(self, scores) * (math.nan if len(calls) == 3 else 1.0)

    monkeypatch.setattr(PCCLoss, "forward", nan_on_third_call)
    config = write_config(tmp_path / "nan.yaml", tiny_config(tmp_path / "run", max_steps=6, probe_every=100))
    status = run_command(fit.main, ["--config", str(config)])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert error.startswith("pdrl: error: Non-finite loss nan at step 2 with objective pcc")
    assert f"last good checkpoint is {checkpoint}" in error
    assert read_checkpoint(checkpoint)["global_step"] == 2


def test_half_written_checkpoint_is_never_the_last_one(tmp_path):
    run = tmp_path / "run"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "global_step": 3}, run / "checkpoints" / "last.ckpt")
    (run / "checkpoints" / ".last.ckpt.tmp-12345").write_bytes(b"PK\x03\x04 half a zip")  # a write that was killed
    assert find_last_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    assert read_checkpoint(find_last_checkpoint(run))["global_step"] == 3
