"""Figures for W&B, one per task where a picture says more than a scalar.

- ``ProbeCurvePlot``: after every linear probe, the accuracy curve so far as a W&B line plot (``probe/curve``,
  ``wandb.plot.line`` over a table of ``step, accuracy``) and as a PNG (``figures/probe_curve``), so even a
  killed run has its curve. ``log_probe_curve(trainer, history)`` does the logging for any caller.
- ``FeatureProjection``: at the end, a 2-D PCA of the encoder's features of the probe's test split, coloured
  by label (``figures/feature_pca``).
- ``MIStaircase``: the MI estimate of every step against the true MI staircase (``figures/mi_staircase``),
  logged at the end of every MI level and at the end of training.

Each logs to the run's ``WandbLogger`` at the trainer's step and does nothing when W&B is disabled. ``wandb`` is
imported only when there is a W&B logger to log to, so a run without one (``CSVLogger``, say) needs no ``wandb``.
``default_figure_callbacks`` picks those that fit a task and its data; ``pdrl.fit`` adds them.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files, never windows
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from pytorch_lightning import Callback, LightningDataModule, LightningModule, Trainer  # noqa: E402
from pytorch_lightning.loggers import WandbLogger  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from pdrl.callbacks.linear_probe import LinearProbe  # noqa: E402
from pdrl.contracts import Embedder, ProbeDataSource  # noqa: E402
from pdrl.tasks.mi_estimation import MIEstimation  # noqa: E402
from pdrl.wandb_setup import wandb_loggers  # noqa: E402


def _log(trainer: Trainer, loggers: list[WandbLogger], row: dict[str, Any]) -> None:
    for logger in loggers:
        logger.log_metrics(row, step=trainer.global_step)


def probe_curve_figure(history: list[dict[str, float]], baseline: float | None = None) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.plot([entry["step"] for entry in history], [entry["accuracy"] for entry in history], "o-", label="features")
    if baseline is not None:
        axes.axhline(baseline, color="grey", linestyle="--", label="raw inputs")
    axes.set(xlabel="step", ylabel="linear-probe test accuracy", title="Linear probe")
    axes.legend()
    figure.tight_layout()
    return figure


def log_probe_curve(trainer: Trainer, history: list[dict[str, float]], baseline: float | None = None) -> None:
    """Log the probe history (``[{"step", "accuracy"}, ...]``) as a W&B line plot and a PNG at the trainer's step."""
    loggers = wandb_loggers(trainer)
    if not loggers or not history:
        return
    import wandb

    table = wandb.Table(columns=["step", "accuracy"], data=[[entry["step"], entry["accuracy"]] for entry in history])
    figure = probe_curve_figure(history, baseline)
    plot = wandb.plot.line(table, "step", "accuracy", title="Linear-probe accuracy")
    _log(trainer, loggers, {"probe/curve": plot, "figures/probe_curve": wandb.Image(figure)})
    plt.close(figure)


class ProbeCurvePlot(Callback):
    """After each new entry in the ``LinearProbe``'s history, log the whole curve (it must come after the probe)."""

    def __init__(self) -> None:
        self._logged = 0

    def _probe(self, trainer: Trainer) -> LinearProbe | None:
        return next((callback for callback in trainer.callbacks if isinstance(callback, LinearProbe)), None)

    def _update(self, trainer: Trainer) -> None:
        probe = self._probe(trainer)
        if probe is not None and len(probe.history) != self._logged:
            log_probe_curve(trainer, probe.history, probe.raw_pixel_accuracy)
            self._logged = len(probe.history)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        probe = self._probe(trainer)
        if trainer.global_step == 0:
            self._update(trainer)  # the probe of the untrained encoder (LinearProbe(at_start=True)), at step 0
        elif probe is not None:  # a resume: the restored history was logged by the interrupted run
            self._logged = len(probe.history)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        self._update(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._update(trainer)


class FeatureProjection(Callback):
    """At the end of training, a 2-D PCA of ``embed`` on (up to ``max_points`` of) the probe's test split.

    Args:
        max_points: the first this many test examples are drawn.
        batch_size: examples per encoder call.
    """

    def __init__(self, max_points: int = 2000, batch_size: int = 1000) -> None:
        self.max_points = max_points
        self.batch_size = batch_size

    @torch.no_grad()
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loggers = wandb_loggers(trainer)
        datamodule = trainer.datamodule
        if not loggers or not isinstance(pl_module, Embedder) or not isinstance(datamodule, ProbeDataSource):
            return
        dataset = datamodule.probe_dataset("test")
        indices = range(min(self.max_points, len(dataset)))
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=self.batch_size)
        was_training = pl_module.training
        pl_module.eval()
        features, labels = [], []
        for inputs, targets in loader:
            features.append(pl_module.embed(inputs.to(pl_module.device)).float().flatten(1).cpu())
            labels.append(targets)
        pl_module.train(was_training)
        import wandb

        points = PCA(n_components=2).fit_transform(torch.cat(features).numpy())
        figure, axes = plt.subplots(figsize=(5, 4.5))
        scatter = axes.scatter(points[:, 0], points[:, 1], c=torch.cat(labels).numpy(), cmap="tab10", s=6)
        axes.legend(*scatter.legend_elements(), title="label", fontsize="small", loc="best")
        axes.set(xlabel="PC 1", ylabel="PC 2", title=f"Features at step {trainer.global_step} (PCA)")
        figure.tight_layout()
        _log(trainer, loggers, {"figures/feature_pca": wandb.Image(figure)})
        plt.close(figure)


class MIStaircase(Callback):
    """Record the MI estimate (``outputs["mi"]``) and the true MI (``batch["mi"]``) of every step; draw them.

    The record is part of the checkpoint, so a resumed run draws the whole staircase.
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.estimates: list[float] = []
        self.truths: list[float] = []

    def state_dict(self) -> dict[str, list]:
        return {"steps": self.steps, "estimates": self.estimates, "truths": self.truths}

    def load_state_dict(self, state_dict: dict[str, list]) -> None:
        self.steps, self.estimates, self.truths = state_dict["steps"], state_dict["estimates"], state_dict["truths"]

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if not isinstance(outputs, dict) or "mi" not in outputs or not isinstance(batch, dict) or "mi" not in batch:
            return
        truth = float(batch["mi"])
        level_ended = bool(self.truths) and truth != self.truths[-1]
        if level_ended:
            self.log_figure(trainer)
        self.steps.append(trainer.global_step)
        self.estimates.append(float(outputs["mi"]))
        self.truths.append(truth)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_figure(trainer)

    def log_figure(self, trainer: Trainer) -> None:
        loggers = wandb_loggers(trainer)
        if not loggers or not self.steps:
            return
        import wandb

        estimates = torch.tensor(self.estimates)
        window = max(1, min(200, len(estimates) // 20))
        smoothed = torch.nn.functional.avg_pool1d(estimates[None, None], window, stride=1).flatten()
        figure, axes = plt.subplots(figsize=(6, 3.5))
        axes.plot(self.steps, self.estimates, color="tab:blue", alpha=0.25, linewidth=0.5, label="estimate")
        axes.plot(self.steps[window - 1 :], smoothed.tolist(), color="tab:blue", label=f"estimate, mean of {window}")
        axes.plot(self.steps, self.truths, color="black", label="true MI")
        axes.set(xlabel="step", ylabel="MI (nats)", title="MI estimate against the true staircase")
        axes.legend(fontsize="small")
        figure.tight_layout()
        _log(trainer, loggers, {"figures/mi_staircase": wandb.Image(figure)})
        plt.close(figure)


def default_figure_callbacks(
    trainer: Trainer, model: LightningModule, datamodule: LightningDataModule | None
) -> list[Callback]:
    """The figure callbacks that fit this run: none without a W&B logger or when the config already has them."""
    if not any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        return []
    present = {type(callback) for callback in trainer.callbacks}
    callbacks: list[Callback] = []
    if LinearProbe in present and ProbeCurvePlot not in present:
        callbacks.append(ProbeCurvePlot())
    if isinstance(model, Embedder) and isinstance(datamodule, ProbeDataSource) and FeatureProjection not in present:
        callbacks.append(FeatureProjection())
    if isinstance(model, MIEstimation) and MIStaircase not in present:
        callbacks.append(MIStaircase())
    return callbacks
