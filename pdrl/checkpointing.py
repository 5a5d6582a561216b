"""Checkpoints a resume can trust: atomic writes, a clear error for a corrupt file, and finding a run's last one.

- ``AtomicCheckpointIO`` writes ``<name>.ckpt`` as ``.<name>.ckpt.tmp-<pid>`` in the same folder, flushes it
  to disk and renames it over the target with ``os.replace`` (atomic on POSIX), so a SIGKILL mid-write leaves
  the previous checkpoint intact and at most a temp file that nothing loads. Loading a file that is not a
  readable checkpoint raises ``CorruptCheckpointError`` naming the file.
- A run folder (``trainer.default_root_dir``) keeps its checkpoints in ``<run folder>/checkpoints``;
  ``find_last_checkpoint`` resolves ``--ckpt_path last`` there.
- ``WandbRunId`` stores the W&B run id in every checkpoint, so a resume continues the same W&B run.
- ``RandomState`` stores the global random generators (torch, CUDA, numpy, Python) in every checkpoint and puts
  them back when training resumes, so random augmentation or noise after a resume is that of an uninterrupted run.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.loggers import WandbLogger

from pdrl.errors import ConfigError, CorruptCheckpointError

CHECKPOINT_FOLDER = "checkpoints"
WANDB_RUN_ID_KEY = "wandb_run_id"


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load`` a Lightning checkpoint, or raise one clear error for a missing or unreadable file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist: give the path of a .ckpt file or --ckpt_path last.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        raise CorruptCheckpointError(
            f"Checkpoint {path} is corrupt or truncated ({type(error).__name__}: {str(error).splitlines()[0][:200]}): "
            "delete it and resume from an earlier checkpoint of the run, or start without --ckpt_path."
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CorruptCheckpointError(
            f"Checkpoint {path} is not a Lightning checkpoint (no 'state_dict'): give a .ckpt file saved by pdrl.fit."
        )
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Torch checkpoint I/O that never leaves a half-written ``.ckpt`` behind and names a corrupt file on load."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}.")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            with open(temporary, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        finally:
            if temporary.exists():
                temporary.unlink()

    def load_checkpoint(self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None):
        return read_checkpoint(path, map_location if map_location is not None else "cpu")


def checkpoint_folder(run_folder: str | os.PathLike) -> Path:
    """Where a run folder keeps its checkpoints."""
    return Path(run_folder) / CHECKPOINT_FOLDER


def find_last_checkpoint(run_folder: str | os.PathLike) -> Path:
    """The newest ``last*.ckpt`` in ``<run_folder>/checkpoints`` (temp files of interrupted writes never match)."""
    folder = checkpoint_folder(run_folder)
    candidates = sorted(folder.glob("last*.ckpt"), key=lambda path: path.stat().st_mtime) if folder.is_dir() else []
    if not candidates:
        raise ConfigError(
            f"--ckpt_path last found no last*.ckpt in {folder}: this run folder has no checkpoint to resume; start "
            "without --ckpt_path, set trainer.default_root_dir to the folder of the run to resume, or save checkpoints "
            "with ModelCheckpoint(save_last=True)."
        )
    return candidates[-1]


class WandbRunId(Callback):
    """Store the W&B run id in every checkpoint (key ``wandb_run_id``) so a resume logs to the same W&B run."""

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.version is not None:
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
            "numpy": np.random.get_state(),
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
        np.random.set_state(states["numpy"])
        random.setstate(states["python"])
