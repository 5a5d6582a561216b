"""``python -m pdrl.fit --config NAME.yaml``: train any pdrl task from a complete config.

Built on LightningCLI, so every constructor argument of the task (``model``), its data (``data``) and the
``trainer`` is a config key and a dotted command-line override (``--model.objective drfc``).

- ``--config`` takes a path, or the bare name of a config shipped inside the package (``shallow_cifar.yaml``;
  ``configs/shallow_cifar.yaml`` also finds the shipped file when there is no such file in the working folder).
  It may be given several times (later files override earlier ones). ``--help`` starts with the shipped configs
  and the objective names; an unknown objective fails while parsing, with ``--print_config`` too.
- ``--ckpt_path`` (a path, or ``last``) resumes a run.

Reliability (``pdrl.checkpointing``, ``pdrl.callbacks.checkpoint_state``, ``pdrl.errors``,
``pdrl.callbacks.finite_guard``): checkpoints are written atomically to ``<trainer.default_root_dir>/checkpoints``;
``--ckpt_path last`` resumes the newest ``last*.ckpt`` there and continues the same W&B run (its id is stored in
every checkpoint, with the random generators); a ``FiniteGuard(action="raise")`` is added when the config has none;
a user error ends in one line ``pdrl: error: ...`` and exit status 2.

Checks before anything is built, logged or trained: a resume reads the checkpoint safely (``weights_only``), and
stops unless it is of the same task class with the same model and data config (``--resume_with_changes true``
continues with changed values on purpose, with a warning listing them) and its weights fit the model; only then
is its W&B id taken. The run folder must be writable, and a ``LinearProbe`` needs a task with ``embed`` and a
datamodule whose ``probe_dataset`` gives labelled examples.

W&B (``pdrl.wandb_setup``): without ``WANDB_MODE`` and without an API key, W&B logs offline and one line says
where and how to ``wandb sync`` it; a stock ``WandbLogger`` runs as ``pdrl.wandb_setup.WandbLogger`` (W&B's step
is the trainer's step, also after a resume); the run is named ``<name>-<objective>``; the resolved config is
written to the run's own folders (``<default_root_dir>/config.yaml``, and ``resolved_config.yaml`` in the W&B
run's files, or ``config.yaml`` in a CSV/TensorBoard version folder) and logged as the W&B run config; the
probe curve, the feature projection and the MI staircase are drawn by ``pdrl.callbacks.figures``.

CPU memory (``pdrl.hardware``): before training, glibc is told to keep freed memory in the process, so that
tensors above 32 MiB (the joint MI critic's activations on all n^2 pairs) are not mapped and page-faulted afresh
every step; same numbers. Measured in ``bench.mi``'s joint-critic ensemble: 2x faster on CPU
(``bench/results/mi_benchmark.md``); no change on the shallow MNIST step; not timed through ``pdrl.fit`` itself.

A quiet terminal (``quiet_lightning``, for the run of ``main`` only): a fit prints pdrl's own lines, the model
summary, the progress bar and real warnings. Lightning's "Tip" lines (litlogger, litmodels), its "GPU available" /
"TPU available" lines, its ``num_workers`` hint (pdrl's datamodules hold their tensors in memory and load with
``num_workers=0`` on purpose) and the ``LeafSpec`` deprecation that Lightning's own code triggers in torch are
dropped; every other Lightning line and warning stays.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from jsonargparse import DefaultHelpFormatter
from pytorch_lightning import LightningDataModule, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers import WandbLogger as LightningWandbLogger

from pdrl import checkpointing, tasks, wandb_setup
from pdrl.callbacks.checkpoint_state import RandomState, RunConfig, WandbRunId
from pdrl.callbacks.figures import default_figure_callbacks
from pdrl.callbacks.finite_guard import FiniteGuard
from pdrl.callbacks.linear_probe import LinearProbe
from pdrl.contracts import Embedder, ProbeDataSource
from pdrl.errors import ConfigError, run_command
from pdrl.hardware import keep_freed_memory
from pdrl.losses import OBJECTIVES
from pdrl.terminal import quiet_lightning

SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"
USAGE = "python -m pdrl.fit --config NAME.yaml [--config MORE.yaml] [--section.key value ...] [--print_config]"


def shipped_configs() -> list[str]:
    """The names of the configs shipped inside the package."""
    return sorted(path.name for path in SHIPPED_CONFIGS.glob("*.yaml"))


def resolve_config(value: str) -> str:
    """A ``--config`` value as a path: an existing file as given, else the shipped config of that name (the
    ``.yaml`` may be left out)."""
    path = Path(value).expanduser()
    if path.is_file():
        return value
    if path.parent in (Path("."), Path("configs")):
        for name in (path.name, f"{path.name}.yaml"):  # `shallow_cifar.yaml` or `shallow_cifar`
            if (SHIPPED_CONFIGS / name).is_file():
                return str(SHIPPED_CONFIGS / name)
    raise ConfigError(
        f"Config {value} does not exist, neither as a file nor as a shipped config: give the path of a YAML file "
        f"or one of the shipped names: {', '.join(shipped_configs())}."
    )


def resolve_config_args(args: list[str]) -> list[str]:
    """``args`` with each ``--config``/``-c`` value resolved by :func:`resolve_config`."""
    resolved, index = [], 0
    while index < len(args):
        argument = args[index]
        if argument in ("--config", "-c") and index + 1 < len(args):
            resolved += [argument, resolve_config(args[index + 1])]
            index += 2
            continue
        if argument.startswith("--config="):
            argument = "--config=" + resolve_config(argument.split("=", 1)[1])
        resolved.append(argument)
        index += 1
    return resolved


def help_description() -> str:
    """The first lines of ``--help``: the shipped configs and the objective names."""
    return (
        f"Shipped configs (--config NAME): {', '.join(shipped_configs())}.\n"
        f"Objectives (--model.objective NAME): {', '.join(OBJECTIVES)}.\n"
        "Override any key on the command line, e.g. --model.objective drfc --trainer.max_steps 100; "
        "--print_config shows the resolved config; --ckpt_path last resumes."
    )


KNOWN_SUBCLASSES = ", known subclasses: "
ANY_MODULE = "; or any torch.nn.Module by class_path, e.g. torch.nn.Identity or torchvision.models.ResNet"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the description's lines kept as written (one line per list).

    An ``nn.Module`` argument (an encoder, a critic) lists pdrl's networks and heads only, then says that any torch
    module is accepted: jsonargparse lists every installed module (torch.nn, torch.ao, torchvision, ...) for each
    such argument, 2000 lines for ``--model.help``. Only the help text changes, not what a config may name.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action)
        start = text.find(KNOWN_SUBCLASSES)
        if start < 0 or not text.endswith(")"):
            return text
        paths = text[start + len(KNOWN_SUBCLASSES) : -1].split(", ")
        if "torch.nn.Module" not in paths:
            return text  # not a module argument (callbacks, loggers, ...): the list is short and useful as it is
        ours = [path for path in paths if path.startswith(("pdrl.nets.", "pdrl.heads."))]
        listed = KNOWN_SUBCLASSES + ", ".join(ours) if ours else ""
        return text[:start] + listed + ANY_MODULE + ")"


class PdrlArgumentParser(LightningArgumentParser):
    """Lightning's parser with pdrl's help formatter, also in the parsers that ``--model.help CLASS`` creates."""

    def __init__(self, *args: Any, formatter_class: type = HelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def _section(config, key: str):
    """``config[key]`` when it is a class_path/init_args section, else None."""
    value = config.get(key) if config is not None else None
    return value if value is not None and hasattr(value, "get") and value.get("class_path") else None


class RunConfigCallback(SaveConfigCallback):
    """Write the resolved config to the run's own folders, log it to every logger, announce an offline W&B run."""

    def __init__(self, *args, wandb_offline_notice: bool = False, **kwargs) -> None:
        super().__init__(*args, save_to_log_dir=False, **kwargs)
        self.wandb_offline_notice = wandb_offline_notice

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = self.config.clone()
        config.pop("config", None)  # the paths of the --config files, not settings
        folders = [(Path(trainer.default_root_dir), "config.yaml")]
        for logger in trainer.loggers:
            if isinstance(logger, LightningWandbLogger) and logger.experiment.settings.mode != "disabled":
                folders.append((Path(logger.experiment.dir), "resolved_config.yaml"))
                if self.wandb_offline_notice and logger.experiment.settings.mode == "offline":
                    print(wandb_setup.offline_notice(logger.experiment), flush=True)
            elif isinstance(logger, (CSVLogger, TensorBoardLogger)):
                folders.append((Path(logger.log_dir), "config.yaml"))
            logger.log_hyperparams(config.as_dict())
        for folder, name in folders:
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(folder / name), overwrite=True, multifile=False)


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
        """Name the run after its objective; resolve ``--ckpt_path last``, check it, continue its W&B run."""
        logger = _section(self.config.trainer, "logger")
        if logger is not None and logger.class_path in wandb_setup.STOCK_WANDB_LOGGERS:
            logger.class_path = "pdrl.wandb_setup.WandbLogger"
        is_wandb = logger is not None and logger.class_path.endswith("WandbLogger")
        model = _section(self.config, "model")
        objective = model.init_args.get("objective") if model is not None else None
        if is_wandb and objective and not str(logger.init_args.get("name") or "").endswith(f"-{objective}"):
            configs = self.config.get("config") or []
            name = logger.init_args.get("name") or (Path(str(configs[-1])).stem if configs else "pdrl")
            logger.init_args.name = f"{name}-{objective}"
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
        if run_id is not None and is_wandb:
            logger.init_args.id = run_id
            logger.init_args.resume = "allow"

    def _run_config(self) -> dict[str, Any]:
        return {key: self.config[key].as_dict() if self.config.get(key) else None for key in ("model", "data")}

    def after_instantiate_classes(self) -> None:
        """Atomic checkpoints in ``<run folder>/checkpoints``, the W&B id in each, a non-finite loss guard, figures."""
        trainer = self.trainer
        checkpoint = getattr(self, "_resume_checkpoint", None)
        if checkpoint is not None:
            checkpointing.check_weights_fit(checkpoint, self.config.ckpt_path, self.model)
            self._resume_checkpoint = None
        trainer.strategy.checkpoint_io = checkpointing.AtomicCheckpointIO()
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(checkpointing.checkpoint_folder(trainer.default_root_dir))
        trainer.callbacks.extend([WandbRunId(), RandomState()])
        if not any(isinstance(callback, FiniteGuard) for callback in trainer.callbacks):
            trainer.callbacks.append(FiniteGuard(action="raise"))
        trainer.callbacks.extend(default_figure_callbacks(trainer, self.model, self.datamodule))
        trainer.callbacks.append(RunConfig(self._run_config()))
        check_run_has_an_end(trainer, self.model)  # every check that needs no folder comes before the first write
        check_data(self.datamodule)
        check_probe_needs(trainer, self.model, self.datamodule)
        check_writable(trainer)


def check_run_has_an_end(trainer: Trainer, model: LightningModule) -> None:
    """Raise a ``ConfigError`` now when a cosine schedule would meet a run without end at ``configure_optimizers``."""
    if getattr(model, "lr_schedule", None) == "cosine" and trainer.max_steps == -1 and trainer.max_epochs == -1:
        raise ConfigError(tasks.representation.COSINE_NEEDS_AN_END)


def check_data(datamodule: LightningDataModule | None) -> None:
    """Load and check the data now, so that a bad folder or file, or a batch larger than the train split, ends the
    start before anything is written. pdrl's datamodules keep what ``setup`` loaded, so Lightning's own call is free.
    """
    if datamodule is not None:
        datamodule.setup("fit")


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
    if not isinstance(model, Embedder):
        raise ConfigError(
            f"LinearProbe needs a task with embed(inputs), and {type(model).__name__} has none: remove the "
            "LinearProbe callback from trainer.callbacks."
        )
    if not isinstance(datamodule, ProbeDataSource):
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
    if args is None:  # resolve in place: LightningCLI warns when given both args and a command line
        sys.argv[1:] = resolve_config_args(sys.argv[1:])
    offline = wandb_setup.choose_wandb_mode()
    with quiet_lightning():
        cli = build_cli(args, wandb_offline_notice=offline)
        keep_freed_memory()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    return cli


def build_cli(
    args: list[str] | None = None, *, wandb_offline_notice: bool = False, save_config: bool = True
) -> PdrlCLI:
    """The ``python -m pdrl.fit`` command for ``args`` (``sys.argv`` when None), parsed and built, not fitted.

    ``cli.model``, ``cli.datamodule`` and ``cli.trainer`` are ready for ``cli.trainer.fit(...)``, with pdrl's checks
    and callbacks (``main`` then only calls ``keep_freed_memory`` and fits, in ``quiet_lightning``). The ``--config``
    values in ``args`` are resolved like the command line's (shipped names). ``wandb_offline_notice``: print the
    offline W&B line (``main`` passes whether it chose offline); ``save_config=False`` writes no resolved config.
    """
    if args is not None:
        args = resolve_config_args(list(args))
    return PdrlCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfigCallback if save_config else None,
        save_config_kwargs={"overwrite": True, "wandb_offline_notice": wandb_offline_notice},
        parser_kwargs={
            "exit_on_error": False,
            "usage": USAGE,
            "description": help_description(),
        },
        parser_class=PdrlArgumentParser,
        run=False,
        args=args,
    )


def console_main() -> int:
    """The ``pdrl`` console script: ``python -m pdrl.fit`` under another name (one-line errors, exit status 2)."""
    return run_command(main)


if __name__ == "__main__":
    sys.exit(console_main())
