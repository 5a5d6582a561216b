"""``python -m pdrl.fit --config configs/X.yaml``: train any pdrl task from a complete config.

Built on LightningCLI, so every constructor argument of the task (``model``), its data (``data``) and the
``trainer`` is a config key and a dotted command-line override (``--model.objective drfc``).
``--config`` may be given several times (later files override earlier ones), ``--print_config`` shows the
resolved config, and ``--ckpt_path`` (a path, or ``last``) resumes a run. The resolved config is saved
in the run's log folder as ``config.yaml`` and logged as hyper-parameters to every logger (W&B's run config).

Reliability (``pdrl.checkpointing``, ``pdrl.errors``, ``pdrl.callbacks.finite_guard``): checkpoints are written
atomically to ``<trainer.default_root_dir>/checkpoints``; ``--ckpt_path last`` resumes the newest ``last*.ckpt``
there and continues the same W&B run (its id is stored in every checkpoint, with the random generators); a
``FiniteGuard(action="raise")`` is added when the config has none; a user error ends in one line
``pdrl: error: ...`` and exit status 2.

Checks before anything is built, logged or trained: a resume reads the checkpoint safely (``weights_only``), and
stops unless it is of the same task class with the same model and data config (``--resume_with_changes true``
continues with changed values on purpose, with a warning listing them) and its weights fit the model; only then
is its W&B id taken. The run folder must be writable, and a ``LinearProbe`` needs a task with ``embed`` and a
datamodule whose ``probe_dataset`` gives labelled examples.

W&B works offline with ``WANDB_MODE=offline`` (sync later with ``wandb sync``); without W&B use
``--trainer.logger pytorch_lightning.loggers.CSVLogger --trainer.logger.save_dir runs`` (or
``pytorch_lightning.loggers.TensorBoardLogger``).
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import LightningDataModule, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from pdrl import checkpointing
from pdrl.callbacks.finite_guard import FiniteGuard
from pdrl.callbacks.linear_probe import LinearProbe
from pdrl.errors import ConfigError, run_command


class LoggedConfigCallback(SaveConfigCallback):
    """Save the resolved config to the log folder (Lightning's default) and log it to every logger."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.config.clone()
        config.pop("config", None)  # the paths of the --config files, not settings
        for logger in trainer.loggers:
            logger.log_hyperparams(config.as_dict())


class PdrlCLI(LightningCLI):
    """LightningCLI without subcommands: parsing the config is followed by ``trainer.fit``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to resume from, or 'last'")
        parser.add_argument(
            "--resume_with_changes",
            type=bool,
            default=False,
            help="resume although the model or data config differs from the checkpoint's (listed in a warning)",
        )

    def before_instantiate_classes(self) -> None:
        """Resolve ``--ckpt_path last`` in the run folder, check the checkpoint, and continue its W&B run."""
        ckpt_path = self.config.get("ckpt_path")
        if ckpt_path is None:
            return
        if ckpt_path == "last":
            ckpt_path = str(checkpointing.find_last_checkpoint(self.config.trainer.default_root_dir or "."))
            self.config.ckpt_path = ckpt_path
        checkpoint = checkpointing.read_checkpoint(ckpt_path)
        changes = checkpointing.check_resume(
            checkpoint, ckpt_path, self._run_config(), bool(self.config.get("resume_with_changes"))
        )
        if changes:
            warnings.warn(f"Resuming {ckpt_path} with a changed config: {'; '.join(changes)}.", stacklevel=1)
        self._resume_checkpoint = checkpoint
        run_id = checkpoint.get(checkpointing.WANDB_RUN_ID_KEY)
        logger = self.config.trainer.get("logger")
        if run_id is not None and logger is not None and str(logger.get("class_path", "")).endswith("WandbLogger"):
            logger.init_args.id = run_id
            logger.init_args.resume = "allow"

    def _run_config(self) -> dict[str, Any]:
        return {key: self.config[key].as_dict() if self.config.get(key) else None for key in ("model", "data")}

    def after_instantiate_classes(self) -> None:
        """Atomic checkpoints in ``<run folder>/checkpoints``, the W&B id in each, and a non-finite loss guard."""
        trainer = self.trainer
        checkpoint = getattr(self, "_resume_checkpoint", None)
        if checkpoint is not None:
            checkpointing.check_weights_fit(checkpoint, self.config.ckpt_path, self.model)
            self._resume_checkpoint = None
        trainer.strategy.checkpoint_io = checkpointing.AtomicCheckpointIO()
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(checkpointing.checkpoint_folder(trainer.default_root_dir))
        trainer.callbacks.extend([checkpointing.WandbRunId(), checkpointing.RandomState()])
        if not any(isinstance(callback, FiniteGuard) for callback in trainer.callbacks):
            trainer.callbacks.append(FiniteGuard(action="raise"))
        trainer.callbacks.append(checkpointing.RunConfig(self._run_config()))
        check_writable(trainer)
        check_probe_needs(trainer, self.model, self.datamodule)


def check_writable(trainer: Trainer) -> None:
    """Raise a ``ConfigError`` now when the run folder or a checkpoint folder cannot be written."""
    folders = {Path(trainer.default_root_dir)}
    folders.update(Path(callback.dirpath) for callback in trainer.checkpoint_callbacks if callback.dirpath)
    for folder in sorted(folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as error:
            raise ConfigError(
                f"Cannot write to {folder} ({error.strerror or error}): set trainer.default_root_dir to a folder you "
                "can write to."
            ) from error


def check_probe_needs(trainer: Trainer, model: LightningModule, datamodule: LightningDataModule | None) -> None:
    """Raise a ``ConfigError`` now when a LinearProbe callback could not run at its first evaluation."""
    if not any(isinstance(callback, LinearProbe) for callback in trainer.callbacks):
        return
    if not callable(getattr(model, "embed", None)):
        raise ConfigError(
            f"LinearProbe needs a task with embed(inputs), and {type(model).__name__} has none: remove the "
            "LinearProbe callback from trainer.callbacks."
        )
    if not callable(getattr(datamodule, "probe_dataset", None)):
        raise ConfigError(
            f"LinearProbe needs a datamodule with probe_dataset('train'/'test') (labelled examples), and "
            f"{type(datamodule).__name__} has none: use one of pdrl.data.images, or remove the LinearProbe callback."
        )
    for split in ("train", "test"):
        example = datamodule.probe_dataset(split)[0]
        if not (isinstance(example, tuple | list) and len(example) == 2 and torch.as_tensor(example[1]).numel() == 1):
            raise ConfigError(
                f"LinearProbe needs (input, label) examples, but {type(datamodule).__name__}.probe_dataset({split!r}) "
                "gives something else: give the probe a labelled dataset, or remove the LinearProbe callback."
            )


def main(args: list[str] | None = None) -> PdrlCLI:
    """Parse ``args`` (``sys.argv`` when None), build the task and fit it."""
    cli = PdrlCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LoggedConfigCallback,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False},
        run=False,
        args=args,
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    return cli


if __name__ == "__main__":
    sys.exit(run_command(main))
