"""Callbacks that put a run's state into every checkpoint, so a resume continues the run it interrupted.

- ``RunConfig`` stores the run's model and data config (plain dicts); ``pdrl.checkpointing.check_resume`` compares it
  with the config of a resume before anything is built, logged or trained.
- ``WandbRunId`` stores the W&B run id, so a resume continues the same W&B run.
- ``RandomState`` stores the global random generators (torch, CUDA, numpy, Python) and puts them back when training
  resumes, so random augmentation or noise after a resume is that of an uninterrupted run.

``pdrl.fit`` adds all three to every run. Everything stored is tensors and plain values, which the safe load of
``pdrl.checkpointing.read_checkpoint`` rebuilds.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from pytorch_lightning import Callback, LightningModule, Trainer

from pdrl.checkpointing import RUN_CONFIG_KEY, WANDB_RUN_ID_KEY, plain_config
from pdrl.wandb_setup import wandb_loggers


class RunConfig(Callback):
    """Store the run's model and data config (``{"model": ..., "data": ...}``, plain values) in every checkpoint."""

    def __init__(self, run_config: dict[str, Any]) -> None:
        self.run_config = plain_config(run_config)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RUN_CONFIG_KEY] = self.run_config


class WandbRunId(Callback):
    """Store the W&B run id in every checkpoint (key ``wandb_run_id``) so a resume logs to the same W&B run."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        for logger in wandb_loggers(trainer, include_disabled=True):
            if logger.version is not None:
                checkpoint[WANDB_RUN_ID_KEY] = logger.version


class RandomState(Callback):
    """Save the global random generators in every checkpoint (key ``rng_states``) and restore them on resume.

    They are restored at ``on_train_start``, after the train loader was built, which is where an uninterrupted
    run's generators stood when it saved. Under DDP the states of the rank that saves (rank 0) are restored on
    every rank.
    """

    def __init__(self) -> None:
        self._states_to_restore: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._states_to_restore = checkpoint.get("rng_states")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        states, self._states_to_restore = self._states_to_restore, None
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        np.random.set_state(_numpy_state_from_plain(states["numpy"]))
        random.setstate(states["python"])


def _numpy_state_to_plain(state: tuple) -> dict[str, Any]:
    """numpy's legacy generator state with its key array as a tensor (a safe load rebuilds it)."""
    name, keys, position, has_gauss, cached_gaussian = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}  # fmt: skip


def _numpy_state_from_plain(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return state["name"], keys, state["position"], state["has_gauss"], state["cached_gaussian"]
