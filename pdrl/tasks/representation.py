"""Contrastive representation learning: encoders F and G, a critic head, and a PD objective."""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

import torch
from pytorch_lightning import LightningModule
from torch import nn

from pdrl.errors import ConfigError
from pdrl.hardware import FlushDenormalsDuringFit, bf16_is_fast
from pdrl.losses import build_objective
from pdrl.tasks.names import ObjectiveName

COSINE_NEEDS_AN_END = (
    "lr_schedule='cosine' decays the rate over the run's steps, but this run has no end: set trainer.max_steps (or a "
    "finite trainer.max_epochs)."
)
LrSchedule = Literal["constant", "cosine"]


def at_least_float32(features: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 features as float32 for the critic and the loss; float64 (``precision: 64-true``) stays float64."""
    return features if features.dtype == torch.float64 else features.float()


class RepresentationLearning(LightningModule):
    """Learn F and G so that the critic tells joint view pairs from marginal ones (PD paper Sec. 5.2)::

        scores[i, j] = critic(F(x1_i), G(x2_j))        joint pairs on the diagonal
        loss = objective(scores)                        CPC, PCC, D-RFC, ... by registry name

    Every part comes from the config: ``encoder_a`` (F, the representation that the linear probe
    evaluates), ``encoder_b`` (G) and ``critic`` as ``class_path``/``init_args``, the objective as a registry
    name (``objective: pcc``, overridden with ``--model.objective drfc``) with ``objective_args``.

    The fast path (``fast: true``, one key): the encoders run under bf16 autocast where the device multiplies
    bf16 natively (CUDA, or a CPU with AVX512-BF16/AMX; otherwise float32), their forward is compiled with
    ``torch.compile``, Adam is the fused kernel, and on a CPU denormal floats are flushed to zero on every torch
    thread while ``fit`` runs (``pdrl.hardware``: Adam's running means turn denormal in long runs, which made
    the fused Adam step 6x slower on the shallow task). Weights, optimizer state, the critic's scores and the loss stay
    float32 (float64 under ``--trainer.precision 64-true``). ``bench/shallow_speed.py`` measures it and
    ``bench/results/shallow_parity.md`` shows it learns what the float32 path learns. ``--model.fast false`` is
    plain float32 eager PyTorch.

    Args:
        encoder_a: F, applied to the first view (e.g. ``pdrl.nets.realnvp.RealNVP``).
        encoder_b: G, applied to the second view.
        critic: head giving the (n, m) score matrix (e.g. ``pdrl.heads.BilinearCritic``).
        objective: registry name of the objective (``pdrl.losses.OBJECTIVES``).
        objective_args: keyword arguments of the objective.
        lr: Adam learning rate (the paper: 1e-4).
        lr_schedule: ``"constant"`` (the paper) or ``"cosine"``: the rate decays over the run's steps ``T``
            (``trainer.max_steps``, or the steps that ``max_epochs`` make) as ``lr_t = lr * (1 + cos(pi * t / T)) / 2``,
            stepped every optimizer step. ``T`` is fixed when the run starts: a resume restores it with the
            scheduler's state, so resume with the same ``max_steps`` (past ``T`` the rate would climb again).
        fast: bf16 autocast (where native), ``torch.compile`` of the encoders and fused Adam.
    """

    def __init__(
        self,
        encoder_a: nn.Module,
        encoder_b: nn.Module,
        critic: nn.Module,
        objective: ObjectiveName = "pcc",
        objective_args: dict | None = None,
        lr: float = 1e-4,
        lr_schedule: LrSchedule = "constant",
        fast: bool = True,
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise ConfigError(f"lr={lr!r} must be > 0, e.g. 1e-4.")
        if lr_schedule not in get_args(LrSchedule):
            raise ConfigError(f"lr_schedule={lr_schedule!r} is unknown: choose one of {get_args(LrSchedule)}.")
        self.save_hyperparameters(ignore=["encoder_a", "encoder_b", "critic"])
        self.encoder_a = encoder_a
        self.encoder_b = encoder_b
        self.critic = critic
        self.objective = build_objective(objective, **(objective_args or {}))
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.fast = fast
        self._compiled_encode = None

    def configure_callbacks(self) -> list:
        return [FlushDenormalsDuringFit()] if self.fast else []

    def _use_bf16(self) -> bool:
        return self.fast and bf16_is_fast(self.device)

    def _encode(self, view_a: torch.Tensor, view_b: torch.Tensor | None, device_type: str, bf16: bool):
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            features_a = at_least_float32(self.encoder_a(view_a))
            features_b = None if view_b is None else at_least_float32(self.encoder_b(view_b))
        return features_a, features_b

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation F(x) that the linear probe evaluates (float32, float64 under ``precision: 64-true``)."""
        return self._encode(x, None, self.device.type, self._use_bf16())[0]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        view_a, view_b = batch
        encode = self._encode
        if self.fast:
            if self._compiled_encode is None:  # compiled once, on the training device
                self._compiled_encode = torch.compile(self._encode)
            encode = self._compiled_encode
        features_a, features_b = encode(view_a, view_b, self.device.type, self._use_bf16())
        scores = self.critic(features_a, features_b)
        loss = self.objective(scores)  # a non-finite loss is stopped or skipped by pdrl.callbacks.FiniteGuard
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/mi", self.objective.mi(scores.detach()), prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        fused = self.fast and self.device.type in ("cpu", "cuda")
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, fused=fused or None)
        if self.lr_schedule == "constant":
            return optimizer
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps):
            raise ConfigError(COSINE_NEEDS_AN_END)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}

    @property
    def objective_name(self) -> str:
        """The objective's registry name, as the config gives it (``pdrl.contracts.NamesObjective``)."""
        return self.hparams.objective
