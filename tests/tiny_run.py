"""A tiny quick-start run (digits, 2-coupling RealNVP, a few steps) written as a config file, for fault tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_config(
    run_folder: Path, max_steps: int = 12, probe_every: int = 4, extra_callbacks: list | None = None
) -> dict:
    """The quick-start config shrunk to seconds: deterministic, a checkpoint every step, a probe every few."""
    encoder = {"dim": 32, "num_couplings": 2, "hidden_dims": [16], "init_std": 1.0e-4}
    return {
        "seed_everything": 0,
        "model": {
            "class_path": "pdrl.tasks.representation.RepresentationLearning",
            "init_args": {
                "encoder_a": {"class_path": "pdrl.nets.realnvp.RealNVP", "init_args": {**encoder, "seed": 0}},
                "encoder_b": {"class_path": "pdrl.nets.realnvp.RealNVP", "init_args": {**encoder, "seed": 1}},
                "critic": {"class_path": "pdrl.heads.BilinearCritic", "init_args": {"dim_a": 32, "dim_b": 32}},
                "objective": "pcc",
                "lr": 1.0e-3,
            },
        },
        "data": {"class_path": "pdrl.data.images.DigitsDataModule", "init_args": {"batch_size": 128}},
        "trainer": {
            "max_steps": max_steps,
            "max_epochs": -1,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "deterministic": True,
            "default_root_dir": str(run_folder),
            "logger": {
                "class_path": "pytorch_lightning.loggers.WandbLogger",
                "init_args": {"project": "pdrl", "name": "tiny", "save_dir": str(run_folder)},
            },
            "callbacks": [
                {
                    "class_path": "pdrl.callbacks.linear_probe.LinearProbe",
                    "init_args": {"every_n_steps": probe_every, "max_iter": 20, "raw_pixel_baseline": False},
                },
                {
                    "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                    "init_args": {"every_n_train_steps": 1, "save_last": True, "save_top_k": 0},
                },
                *(extra_callbacks or []),
            ],
        },
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def fit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pdrl.fit", *args]


def subprocess_env(wandb_mode: str = "disabled") -> dict[str, str]:
    """This checkout first on the path, one thread, W&B without a network."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": wandb_mode,
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
        "WANDB_BASE_URL": "http://127.0.0.1:9",  # no W&B server: any attempt to reach one is refused at once
    }


def run_fit(
    args: list[str], cwd: Path, timeout: float = 240, wandb_mode: str = "disabled"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        fit_command(*args), cwd=cwd, env=subprocess_env(wandb_mode), capture_output=True, text=True, timeout=timeout
    )
