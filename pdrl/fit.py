"""``python -m pdrl.fit --config configs/X.yaml``: train any pdrl task from a complete config.

Built on LightningCLI, so every constructor argument of the task (``model``), its data (``data``) and the
``trainer`` is a config key and a dotted command-line override (``--model.objective drfc``).
``--config`` may be given several times (later files override earlier ones), ``--print_config`` shows the
resolved config, and ``--ckpt_path`` (a path, or ``last``) resumes a run. The resolved config is saved
in the run's log folder as ``config.yaml`` and logged as hyper-parameters to every logger (W&B's run config).

W&B works offline with ``WANDB_MODE=offline`` (sync later with ``wandb sync``); without W&B use
``--trainer.logger pytorch_lightning.loggers.CSVLogger --trainer.logger.save_dir runs`` (or
``pytorch_lightning.loggers.TensorBoardLogger``).
"""

from __future__ import annotations

from pytorch_lightning import LightningDataModule, LightningModule, Trainer
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback


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


def main(args: list[str] | None = None) -> PdrlCLI:
    """Parse ``args`` (``sys.argv`` when None), build the task and fit it."""
    cli = PdrlCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LoggedConfigCallback,
        save_config_kwargs={"overwrite": True},
        run=False,
        args=args,
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    return cli


if __name__ == "__main__":
    main()
