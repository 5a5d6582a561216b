"""Stop a run at random steps (SIGKILL, and SIGINT as Ctrl+C sends it), resume it with --ckpt_path last, and get the
uninterrupted run back exactly.

Each stopped run is a real ``python -m pdrl.fit`` process, stopped at a random moment after it passed a randomly
drawn step: SIGKILL runs no clean-up code; SIGINT lets Lightning shut down. ``--ckpt_path last`` then continues the
same run. The run is CIFAR-10-shaped: a ``train/<class>``, ``test/<class>`` folder of 32x32 RGB JPEGs with CIFAR-10's
ten classes, read by ``CIFAR10DataModule`` as 1536 + 1536-value views, as the shallow CIFAR-10 config reads it. Every
process runs with W&B offline and its server address refused (``WANDB_BASE_URL`` on a closed port), under a
timeout: W&B without a network never blocks a run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_lightning import Callback, Trainer, seed_everything
from pytorch_lightning.callbacks import LambdaCallback, ModelCheckpoint
from pytorch_lightning.utilities.data import _update_dataloader
from torch.utils.data import DistributedSampler, TensorDataset

from pdrl import fit
from pdrl.callbacks.checkpoint_state import RandomState
from pdrl.checkpointing import WANDB_RUN_ID_KEY, AtomicCheckpointIO, find_last_checkpoint, read_checkpoint
from pdrl.data.images import CIFAR10_CLASSES, DigitsDataModule
from pdrl.data.resumable import ResumableDataLoader
from pdrl.heads import BilinearCritic
from pdrl.nets.realnvp import RealNVP
from pdrl.tasks.representation import RepresentationLearning
from tests.tiny_run import fit_command, subprocess_env, tiny_config, write_config

MAX_STEPS = 12
STOPS = (signal.SIGKILL, signal.SIGINT, signal.SIGKILL)  # stopped and resumed three times, Ctrl+C once
CIFAR_VIEW = 16 * 32 * 3  # the top (or bottom) half of a 32x32 RGB image


def last_step(run_folder: Path) -> int:
    """The global step of the run's last checkpoint, or -1 while there is none (atomic writes: never half a file)."""
    try:
        return read_checkpoint(find_last_checkpoint(run_folder))["global_step"]
    except (ValueError, FileNotFoundError):
        return -1


def stop_after_step(
    args: list[str], cwd: Path, run_folder: Path, step: int, rng: random.Random, stop: signal.Signals
) -> None:
    log = cwd / "killed_run.log"  # a file, not a pipe: a full pipe would block the run
    with open(log, "w") as output:
        process = subprocess.Popen(
            fit_command(*args), cwd=cwd, env=subprocess_env("offline"), stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 240
        while last_step(run_folder) < step:
            assert process.poll() is None, f"the run ended before step {step}: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))  # anywhere in the next step: forward, backward, probe or checkpoint write
    finally:
        process.send_signal(stop)
        process.wait(timeout=120)
    if stop == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:  # Lightning turns Ctrl+C into a graceful shutdown and a non-zero exit
        assert process.returncode != 0, log.read_text()[-2000:]


def cifar_shaped_config(run_folder: Path, root: Path) -> dict:
    """The tiny run on a CIFAR-10-shaped image folder: 1536-d views, as ``configs/shallow_cifar.yaml`` sees them."""
    config = tiny_config(run_folder, MAX_STEPS)
    model = config["model"]["init_args"]
    for encoder in ("encoder_a", "encoder_b"):
        model[encoder]["init_args"]["dim"] = CIFAR_VIEW
    model["critic"]["init_args"] = {"dim_a": CIFAR_VIEW, "dim_b": CIFAR_VIEW}
    config["data"] = {
        "class_path": "pdrl.data.images.CIFAR10DataModule",
        "init_args": {"root": str(root), "batch_size": 32},
    }
    return config


def write_cifar_folder(root: Path, per_class: int) -> Path:
    """``root/{train,test}/<CIFAR-10 class>/*.jpg``: 32x32 RGB images whose colours depend on the class."""
    generator = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", max(per_class // 3, 1))):
        for label, name in enumerate(CIFAR10_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = generator.integers(0, 256, size=(32, 32, 3)) // 2 + 12 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:04d}.jpg", quality=90)
    return root


def test_a_cifar_shaped_run_stopped_three_times_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PDRL_CACHE_DIR", str(tmp_path / "decoded"))  # also read by the subprocesses
    root = write_cifar_folder(tmp_path / "CIFAR-10-images", per_class=8)
    reference_folder, killed_folder = tmp_path / "reference", tmp_path / "killed"
    reference_config = write_config(tmp_path / "reference.yaml", cifar_shaped_config(reference_folder, root))
    fit.main(["--config", str(reference_config)])  # uninterrupted, in this process, W&B disabled
    reference = read_checkpoint(find_last_checkpoint(reference_folder))

    config = str(write_config(tmp_path / "killed.yaml", cifar_shaped_config(killed_folder, root)))
    rng = random.Random(0)
    kill_steps = sorted(rng.sample(range(1, MAX_STEPS - 1), len(STOPS)))
    for index, (step, stop) in enumerate(zip(kill_steps, STOPS, strict=True)):
        args = ["--config", config] + (["--ckpt_path", "last"] if index else [])
        stop_after_step(args, tmp_path, killed_folder, step, rng, stop)
        assert last_step(killed_folder) >= step
    finished = subprocess.run(
        fit_command("--config", config, "--ckpt_path", "last"),
        cwd=tmp_path,
        env=subprocess_env("offline"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    resumed = read_checkpoint(find_last_checkpoint(killed_folder))

    assert resumed["global_step"] == reference["global_step"] == MAX_STEPS
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    for name, weight in reference["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], weight), f"{name} differs after {len(STOPS)} stops and resumes"
    probe_key = next(key for key in reference["callbacks"] if "LinearProbe" in key)
    history = [(entry["step"], entry["accuracy"]) for entry in resumed["callbacks"][probe_key]["history"]]
    assert history == [(entry["step"], entry["accuracy"]) for entry in reference["callbacks"][probe_key]["history"]]
    assert [step for step, _ in history] == [0, 4, 8, 12]  # step 0: the untrained encoder (LinearProbe at_start)

    run_ids = {path.name.rsplit("-", 1)[-1] for path in (killed_folder / "wandb").glob("offline-run-*")}
    assert run_ids == {resumed[WANDB_RUN_ID_KEY]}, f"one W&B run expected, got {run_ids}"
    # (no count of the offline-run folders: two processes started within one second share a folder name)
    leftovers = [name for name in os.listdir(killed_folder / "checkpoints") if name != "last.ckpt"]
    assert all(name.startswith(".last.ckpt.tmp-") for name in leftovers), leftovers  # never loaded


class NoisyViews(RepresentationLearning):
    """The representation task with Gaussian noise on its views: training that draws from the global RNG."""

    def training_step(self, batch, batch_idx):
        view_a, view_b = batch
        return super().training_step((view_a + 0.1 * torch.randn_like(view_a), view_b), batch_idx)


def fit_noisy(
    run_folder: Path, max_steps: int, keep_random_state: bool, ckpt_path: str | None = None, view_noise_std: float = 0.0
) -> dict:
    """``NoisyViews`` (noise from the global RNG), or with ``view_noise_std`` the plain task on noisy digit views."""
    seed_everything(0)
    encoder = {"dim": 32, "num_couplings": 2, "hidden_dims": [16], "init_std": 1.0e-4}
    task_class = RepresentationLearning if view_noise_std else NoisyViews
    task = task_class(RealNVP(**encoder, seed=0), RealNVP(**encoder, seed=1), BilinearCritic(32, 32), lr=1e-3)
    callbacks = [ModelCheckpoint(run_folder / "checkpoints", every_n_train_steps=1, save_last=True, save_top_k=0)]
    trainer = Trainer(
        max_steps=max_steps,
        callbacks=callbacks + ([RandomState()] if keep_random_state else []),
        plugins=[AtomicCheckpointIO()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    datamodule = DigitsDataModule(batch_size=64, view_noise_std=view_noise_std)
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    return task.state_dict()


def test_random_state_makes_a_noisy_resume_exact(tmp_path):
    reference = fit_noisy(tmp_path / "reference", 6, keep_random_state=True)
    for keep_random_state in (True, False):
        run = tmp_path / f"resumed_{keep_random_state}"
        fit_noisy(run, 3, keep_random_state)
        resumed = fit_noisy(run, 6, keep_random_state, ckpt_path=str(find_last_checkpoint(run)))
        same = all(torch.equal(resumed[name], weight) for name, weight in reference.items())
        assert same == keep_random_state  # without RandomState the noise after the resume differs


def test_view_noise_resumes_exactly_from_the_checkpoint_alone(tmp_path):
    """The datamodule's view noise keeps its generator in the checkpoint: no RandomState needed for an exact resume."""
    reference = fit_noisy(tmp_path / "reference", 6, keep_random_state=False, view_noise_std=0.1)
    run = tmp_path / "resumed"
    fit_noisy(run, 3, keep_random_state=False, view_noise_std=0.1)
    resumed = fit_noisy(run, 6, False, ckpt_path=str(find_last_checkpoint(run)), view_noise_std=0.1)
    assert all(torch.equal(resumed[name], weight) for name, weight in reference.items())


def test_resumable_loader_continues_where_the_state_says():
    dataset = TensorDataset(torch.arange(40.0))
    loader = ResumableDataLoader(dataset, batch_size=4, seed=7)
    loader.sampler.set_epoch(2)
    full_epoch = [batch[0].tolist() for batch in loader]
    assert sorted(sum(full_epoch, [])) == list(range(40)) and len(full_epoch) == 10
    iterator = iter(loader)
    first = [next(iterator)[0].tolist() for _ in range(3)]
    state = loader.state_dict()
    assert state == {"seed": 7, "epoch": 2, "batches_done": 3}
    resumed = ResumableDataLoader(dataset, batch_size=4)  # another seed, until the state comes back
    resumed.load_state_dict(state)
    assert first + [batch[0].tolist() for batch in resumed] == full_epoch
    assert [batch[0].tolist() for batch in resumed] == full_epoch  # the next pass starts the epoch over
    resumed.sampler.set_epoch(3)
    assert [batch[0].tolist() for batch in resumed] != full_epoch


def test_resumable_loader_takes_lightnings_distributed_sampler():
    dataset = TensorDataset(torch.arange(20.0))
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=0)
    loader = _update_dataloader(ResumableDataLoader(dataset, batch_size=4, seed=3), sampler)
    assert isinstance(loader, ResumableDataLoader) and loader.sampler is sampler and loader.seed == 3
    assert len(sum([batch[0].tolist() for batch in loader], [])) == 8  # 10 of 20 per rank, last batch dropped


class StopAt(Callback):
    """Stop the fit cleanly after ``step`` steps, as a run cut short would (the checkpoint of that step is saved)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def fit_cosine(run_folder: Path, stop_at: int | None = None, ckpt_path: str | None = None) -> tuple[dict, list]:
    """8 steps of the tiny task with ``lr_schedule='cosine'``; the weights and the learning rate after each step."""
    seed_everything(0)
    encoder = {"dim": 32, "num_couplings": 2, "hidden_dims": [16], "init_std": 1.0e-4}
    task = RepresentationLearning(
        RealNVP(**encoder, seed=0), RealNVP(**encoder, seed=1), BilinearCritic(32, 32), lr=1e-2,
        lr_schedule="cosine", fast=False,
    )  # fmt: skip
    rates = []
    record = LambdaCallback(
        on_train_batch_end=lambda trainer, *_: rates.append(trainer.optimizers[0].param_groups[0]["lr"])
    )
    checkpoints = ModelCheckpoint(run_folder / "checkpoints", every_n_train_steps=1, save_last=True, save_top_k=0)
    callbacks = [checkpoints, record]
    trainer = Trainer(
        max_steps=8, callbacks=callbacks + ([StopAt(stop_at)] if stop_at else []), plugins=[AtomicCheckpointIO()],
        logger=False, enable_progress_bar=False, enable_model_summary=False, deterministic=True,
    )  # fmt: skip
    trainer.fit(task, datamodule=DigitsDataModule(batch_size=64), ckpt_path=ckpt_path)
    return task.state_dict(), rates


def test_cosine_schedule_resumes_where_it_stopped(tmp_path):
    reference, reference_rates = fit_cosine(tmp_path / "reference")
    _, first_rates = fit_cosine(tmp_path / "cut", stop_at=4)
    resumed, later_rates = fit_cosine(tmp_path / "cut", ckpt_path=str(find_last_checkpoint(tmp_path / "cut")))
    assert len(first_rates) == 4 and first_rates + later_rates == reference_rates  # the schedule's own step count
    assert reference_rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(torch.equal(resumed[name], weight) for name, weight in reference.items())


def test_a_run_resumed_twice_at_epoch_ends_keeps_each_epochs_order(tmp_path, monkeypatch):
    """Stopped at the last batch of an epoch (steps 2 and 6 of 2-batch epochs) and resumed each time: Lightning's
    epoch count after the second resume was one behind, so epoch 2's order was trained twice; the loader's own
    epoch, saved in the checkpoint, now decides."""
    monkeypatch.setenv("PDRL_CACHE_DIR", str(tmp_path / "decoded"))
    root = write_cifar_folder(tmp_path / "CIFAR-10-images", per_class=8)  # 80 images, batch 32: 2 batches an epoch

    def fit_to(folder: Path, steps: int, resume: bool) -> dict:
        config = cifar_shaped_config(folder, root)
        config["trainer"].update(max_steps=steps, logger=False)
        path = write_config(tmp_path / f"{folder.name}_{steps}.yaml", config)
        fit.main(["--config", str(path), *(["--ckpt_path", "last"] if resume else [])])
        return read_checkpoint(find_last_checkpoint(folder))["state_dict"]

    reference = fit_to(tmp_path / "reference", MAX_STEPS, resume=False)
    for index, steps in enumerate((2, 6, MAX_STEPS)):
        resumed = fit_to(tmp_path / "resumed", steps, resume=index > 0)
    assert all(torch.equal(resumed[name], weight) for name, weight in reference.items())
