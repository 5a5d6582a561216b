"""Contrastive representation learning: encoders F and G, a critic head, and a PD objective."""

from __future__ import annotations

import torch
from pytorch_lightning import LightningModule
from torch import nn

from pdrl.errors import ConfigError
from pdrl.losses import build_objective


class RepresentationLearning(LightningModule):
    """Learn F and G so that the critic tells joint view pairs from marginal ones (PD paper Sec. 5.2)::

        scores[i, j] = critic(F(x1_i), G(x2_j))        joint pairs on the diagonal
        loss = objective(scores)                        CPC, PCC, D-RFC, ... by registry name

    Every part comes from the config: ``encoder_a`` (F, the representation that the linear probe
    evaluates), ``encoder_b`` (G) and ``critic`` as ``class_path``/``init_args``, the objective as a registry
    name (``objective: pcc``, overridden with ``--model.objective drfc``) with ``objective_args``.

    Args:
        encoder_a: F, applied to the first view (e.g. ``pdrl.nets.realnvp.RealNVP``).
        encoder_b: G, applied to the second view.
        critic: head giving the (n, m) score matrix (e.g. ``pdrl.heads.BilinearCritic``).
        objective: registry name of the objective (``pdrl.losses.OBJECTIVES``).
        objective_args: keyword arguments of the objective.
        lr: Adam learning rate (the paper: 1e-4).
    """

    def __init__(
        self,
        encoder_a: nn.Module,
        encoder_b: nn.Module,
        critic: nn.Module,
        objective: str = "pcc",
        objective_args: dict | None = None,
        lr: float = 1e-4,
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise ConfigError(f"lr={lr!r} must be > 0, e.g. 1e-4.")
        self.save_hyperparameters(ignore=["encoder_a", "encoder_b", "critic"])
        self.encoder_a = encoder_a
        self.encoder_b = encoder_b
        self.critic = critic
        self.objective = build_objective(objective, **(objective_args or {}))
        self.lr = lr

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation F(x) that the linear probe evaluates."""
        return self.encoder_a(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        view_a, view_b = batch
        scores = self.critic(self.encoder_a(view_a), self.encoder_b(view_b))
        loss = self.objective(scores)  # a non-finite loss is stopped or skipped by pdrl.callbacks.FiniteGuard
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/mi", self.objective.mi(scores), prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)
