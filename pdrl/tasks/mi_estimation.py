"""MI estimation (PD paper Application I): train a critic on joint pairs, read the MI and the point-wise PD.

One step: ``scores[i, j] = critic(x_i, y_j)`` on a batch of joint pairs, ``loss = objective(scores)``,
``mi = objective.mi(scores)``. With the stream of :mod:`pdrl.data.gaussians` the true MI of every batch and
the true log-PD of held-out pairs are known, so the module logs the estimate's error and, at the end of
every stage, the point-wise error of ``objective.log_pd`` against the closed form.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from pytorch_lightning import LightningModule
from torch import nn

from pdrl.errors import ConfigError
from pdrl.heads import ConcatCritic, SeparableCritic
from pdrl.losses import build_objective
from pdrl.metrics import pointwise_errors
from pdrl.nets.mlp import MLP
from pdrl.tasks.names import ObjectiveName

CRITICS = ("separable", "concat")


class MIEstimation(LightningModule):
    """A critic and an objective trained on a stream of joint pairs.

    Critics (``critic_name``; the representation tasks take a critic module, ``critic``, instead):

    - ``"separable"``: two MLPs ``dim -> hidden_dims -> embed_dim`` and an inner product (SMILE code's
      default: hidden (256, 256, 256), i.e. three hidden layers, embed 32; the MICE paper states two).
    - ``"concat"``: the joint critic, one MLP on ``[x_i, y_j]`` for all n^2 pairs (PD code: hidden (512, 512)).

    ``spectral_norm="last"`` normalises the last layer of each MLP: the MICE critic.

    Args:
        objective: registry name of the estimator (``pdrl.losses.build_objective``).
        objective_args: its keyword arguments, e.g. ``{balanced: false}`` for the imbalanced PC.
        critic_name: ``"separable"`` or ``"concat"``.
        dim: dimension of x and y.
        hidden_dims: hidden widths of the critic's MLPs.
        embed_dim: embedding size of the separable critic.
        spectral_norm: ``"none"``, ``"last"`` or ``"all"`` layers spectrally normalised.
        lr: Adam learning rate (PD code 1e-3 at batch 128; SMILE code 5e-4 at batch 64).
    """

    def __init__(
        self,
        objective: ObjectiveName = "pcc",
        objective_args: dict[str, Any] | None = None,
        critic_name: str = "separable",
        dim: int = 20,
        hidden_dims: Sequence[int] = (256, 256, 256),
        embed_dim: int = 32,
        spectral_norm: str = "none",
        lr: float = 5e-4,
    ) -> None:
        super().__init__()
        if critic_name not in CRITICS:
            raise ConfigError(f"MIEstimation(critic_name={critic_name!r}) is unknown: choose one of {CRITICS}.")
        if not lr > 0:
            raise ConfigError(f"MIEstimation(lr={lr}) must be > 0, e.g. 5e-4.")
        self.save_hyperparameters()
        self.objective = build_objective(objective, **(objective_args or {}))
        hidden_dims = list(hidden_dims)
        if critic_name == "separable":
            self.encoder_x: nn.Module = MLP(dim, hidden_dims, embed_dim, spectral_norm=spectral_norm)
            self.encoder_y: nn.Module = MLP(dim, hidden_dims, embed_dim, spectral_norm=spectral_norm)
            self.head: nn.Module = SeparableCritic()
        else:
            self.encoder_x, self.encoder_y = nn.Identity(), nn.Identity()
            self.head = ConcatCritic(dim, dim, hidden_dims, spectral_norm=spectral_norm)
        self.lr = lr

    @property
    def objective_name(self) -> str:
        """The objective's registry name, as the config gives it (``pdrl.contracts.NamesObjective``)."""
        return self.hparams.objective

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The ``(n, n)`` score matrix ``critic(x_i, y_j)``."""
        return self.head(self.encoder_x(x), self.encoder_y(y))

    def estimate(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss (with gradient) and the MI readout (without) on one batch of joint pairs."""
        scores = self(batch["x"], batch["y"])
        loss = self.objective(scores)
        return loss, self.objective.mi(scores)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        loss, mi = self.estimate(batch)
        if self.loggers_write_this_step():
            self.log_dict(
                {"train/loss": loss, "train/mi": mi, "train/true_mi": batch["mi"], "train/mi_error": mi - batch["mi"]}
            )
        outputs: dict[str, Any] = {"loss": loss, "mi": mi}
        if "heldout_x" in batch:
            outputs["pointwise"] = self.heldout_errors(batch["heldout_x"], batch["heldout_y"], batch["heldout_log_pd"])
            self.log_dict({f"pointwise/{name}": value.float() for name, value in outputs["pointwise"].items()})
        return outputs

    def loggers_write_this_step(self) -> bool:
        """Whether this training step's metrics reach the loggers: every ``trainer.log_every_n_steps``-th step (as
        Lightning counts them), and the last step of the fit, so ``trainer.callback_metrics`` holds its values.

        ``training_step`` logs only then. Each ``self.log`` call validates and copies its value whether or not the
        step is written; on the small MI critic (0.3M parameters, a few ms per step on one CPU thread) a cProfile of
        the Lightning engine put four calls per step above the backward pass (``bench/results/mi_throughput.md``
        has the steps/s). The dashboards get the same metrics at the same steps either way
        (``tests/test_mi_estimation.py`` checks it)."""
        trainer = self.trainer
        step = trainer.global_step + 1  # Lightning's own test: the steps taken once this batch has stepped
        every = trainer.log_every_n_steps
        last = trainer.is_last_batch or step == trainer.max_steps or trainer.should_stop
        return last or (every > 0 and step % every == 0)

    @torch.no_grad()
    def heldout_errors(self, x: torch.Tensor, y: torch.Tensor, true_log_pd: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`pdrl.metrics.pointwise_errors` of the critic's log-PD on held-out batches ``(batches, n, dim)``.

        Each held-out batch is scored on its own, like a training batch, against its ``(n, n)`` true log-PD.
        """
        estimate = torch.stack(
            [self.objective.log_pd(self(x_batch, y_batch)) for x_batch, y_batch in zip(x, y, strict=True)]
        )
        return pointwise_errors(estimate, true_log_pd)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return lean_adam(self.parameters(), self.lr)


def lean_adam(parameters: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam (same update rule and defaults) without the per-step overheads that dominate a small critic.

    - ``fused=True`` on CPU and CUDA: one kernel for all tensors instead of ~8 Python-dispatched ops per
      tensor (on the 290k-parameter separable critic, 1 thread: 1.5 -> 0.5 ms per step).
    - On CPU parameters, the optimizer's CUDA-graph-capture health check is skipped: torch calls
      ``torch.cuda.is_available()`` on every ``Adam.step``, and on a CUDA build of torch without a GPU that
      loads NVML again every step (~0.5 ms). No CUDA graph can capture a step of CPU tensors, so the check
      has nothing to find there.
    """
    parameters = list(parameters)
    devices = {parameter.device.type for parameter in parameters}
    optimizer = torch.optim.Adam(parameters, lr=lr, fused=devices <= {"cpu", "cuda"} or None)
    if devices == {"cpu"}:
        optimizer._accelerator_graph_capture_health_check = lambda: None  # type: ignore[method-assign]
    return optimizer
