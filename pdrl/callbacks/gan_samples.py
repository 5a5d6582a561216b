"""Scatter plots of a GAN's samples over the true modes (the MICE paper's 25-Gaussians figures).

``GANSamplesPlot`` draws, after every validation batch of a GAN (``pdrl.tasks.gan.GAN``, whose
``validation_step`` returns ``{"real", "generated", "metrics"}``), the generated samples over the real ones and the
mode centres, writes ``<default_root_dir>/samples_step<k>.png`` and, with a W&B logger, logs it as ``val/samples``.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib.pyplot as plt
import torch
from pytorch_lightning import Callback, LightningModule, Trainer

from pdrl.errors import ConfigError
from pdrl.wandb_setup import wandb_loggers


def scatter_figure(real: torch.Tensor, generated: torch.Tensor, centres: torch.Tensor, title: str) -> plt.Figure:
    """Generated samples (blue) over real samples (grey) and the mode centres (red crosses)."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.scatter(real[:, 0], real[:, 1], s=2, c="0.7", label="real")
    axis.scatter(generated[:, 0], generated[:, 1], s=2, c="tab:blue", alpha=0.6, label="generated")
    axis.scatter(centres[:, 0], centres[:, 1], s=30, c="tab:red", marker="x", label="mode centre")
    limit = float(centres.abs().max()) * 1.5
    axis.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", title=title)
    axis.legend(loc="upper right", fontsize=7, markerscale=3)
    figure.tight_layout()
    return figure


class GANSamplesPlot(Callback):
    """Save a scatter plot of the generated samples after each validation batch (not during the sanity check)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not hasattr(trainer.datamodule, "centres"):
            raise ConfigError(
                "GANSamplesPlot draws the mode centres and needs a datamodule with `centres`, "
                "e.g. pdrl.data.gaussian_grid.GaussianGridDataModule."
            )

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or not isinstance(outputs, dict) or "generated" not in outputs:
            return
        metrics = outputs["metrics"]
        title = (
            f"step {trainer.global_step}, beta {pl_module.hparams.beta}: {metrics['modes_covered']:.0f} modes, "
            f"{100 * metrics['high_quality_share']:.1f}% high quality"
        )
        figure = scatter_figure(outputs["real"].cpu(), outputs["generated"].cpu(), trainer.datamodule.centres, title)
        os.makedirs(trainer.default_root_dir, exist_ok=True)
        path = os.path.join(trainer.default_root_dir, f"samples_step{trainer.global_step}.png")
        figure.savefig(path, dpi=100)
        plt.close(figure)
        for logger in wandb_loggers(trainer):
            logger.log_image("val/samples", [path], step=trainer.global_step)
