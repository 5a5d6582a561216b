"""The MI benchmark's training loops: lean (plain PyTorch), ensemble (stacked critics), Lightning, and the
plain reference loop that the ``throughput`` mode measures them against."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.mi.mi_stacked import stack_critics
from pdrl.data.gaussians import MIStaircase, rho_from_mi, sample_pairs
from pdrl.metrics import pointwise_errors
from pdrl.tasks.mi_estimation import MIEstimation, lean_adam


@dataclass
class RunResult:
    """The per-step MI estimates of one run and the point-wise errors at the end of every stage."""

    estimates: np.ndarray
    true_mi: np.ndarray
    pointwise: list[dict[str, float]]
    wall_s: float
    diverged_at: int | None = None


def to_floats(errors: dict[str, torch.Tensor], mi: float) -> dict[str, float]:
    return {"true_mi": mi, **{name: float(value) for name, value in errors.items()}}


def _true_mi(stream: MIStaircase) -> np.ndarray:
    return np.repeat(np.asarray(stream.settings.mi_levels, dtype=np.float64), stream.settings.steps_per_level)


def train_lean(
    model: MIEstimation,
    stream: MIStaircase,
    device: str = "cpu",
    wandb_run: Any = None,
    progress_every: int = 0,
) -> RunResult:
    """Train ``model`` on ``stream`` in a plain loop: the module's ``estimate`` step, Adam, no Trainer.

    The per-step work is the data, forward, backward and Adam step alone: the estimates go into a
    preallocated tensor on the device (no ``.item()`` sync per step), the batch is moved only when the
    device is not the CPU, the gradients are freed rather than zeroed, and Adam is
    :func:`~pdrl.tasks.mi_estimation.lean_adam` (fused, no per-step CUDA probe on CPU). A non-finite loss ends the run
    (the estimates from there on are NaN); it is checked once a stage and at the end, not every step.
    Prints the estimate every ``progress_every`` steps (0: never).
    """
    model.to(device).train()
    optimizer = model.configure_optimizers()
    estimates = torch.full((stream.settings.total_steps,), math.nan, device=device)
    losses = torch.zeros(stream.settings.total_steps, device=device)
    true_mi = _true_mi(stream)
    pointwise: list[dict[str, float]] = []
    move = device != "cpu"
    diverged_at = None
    start = time.perf_counter()
    for step, batch in enumerate(stream):
        if move:
            batch = {name: value.to(device, non_blocking=True) for name, value in batch.items()}
        loss, mi = model.estimate(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        estimates[step] = mi
        losses[step] = loss.detach()
        if "heldout_x" in batch:
            diverged_at = _first_non_finite(losses[: step + 1])
            if diverged_at is not None:
                break
            errors = model.heldout_errors(batch["heldout_x"], batch["heldout_y"], batch["heldout_log_pd"])
            pointwise.append(to_floats(errors, true_mi[step]))
            if wandb_run is not None:
                wandb_run.log({f"pointwise/{name}": value for name, value in pointwise[-1].items()}, step=step)
        if progress_every and (step + 1) % progress_every == 0:
            print(f"  step {step + 1}: estimate {mi.item():.3f}, true {true_mi[step]:g}", flush=True)
        if wandb_run is not None and step % 50 == 0:
            wandb_run.log({"train/mi": mi.item(), "train/true_mi": true_mi[step], "train/loss": loss.item()}, step=step)
    if diverged_at is None:
        diverged_at = _first_non_finite(losses)
    wall_s = time.perf_counter() - start
    values = estimates.cpu().numpy()
    if diverged_at is not None:
        values[diverged_at:] = math.nan
    return RunResult(values, true_mi, pointwise, wall_s, diverged_at)


def _first_non_finite(losses: torch.Tensor) -> int | None:
    bad = torch.nonzero(~torch.isfinite(losses))
    return int(bad[0, 0]) if len(bad) else None


def train_plain(model: MIEstimation, stream: MIStaircase) -> float:
    """The reference loop of the throughput mode; returns its wall time in seconds.

    What the public reference code does per step, on ``model``'s critic and objective: draw a batch with
    ``torch.randn`` (no stream object, no dict), score it, step Adam, and read the estimate back to the
    host (``.item()``), as the reference's ``mi.detach().cpu().numpy()`` does. No held-out check.
    """
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=model.lr)
    settings = stream.settings
    generator = torch.Generator().manual_seed(settings.seed)
    rhos = [rho_from_mi(level, settings.dim) for level in settings.mi_levels]
    estimates = []
    start = time.perf_counter()
    for step in range(settings.total_steps):
        x, y = sample_pairs(
            settings.batch_size, settings.dim, rhos[step // settings.steps_per_level], settings.task, 0.0, generator
        )
        scores = model(x, y)
        loss = model.objective(scores)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        estimates.append(model.objective.mi(scores).item())
    return time.perf_counter() - start


def train_ensemble(
    models: list[MIEstimation],
    stream: MIStaircase,
    device: str = "cpu",
    progress_every: int = 0,
    compile_critics: bool = False,
) -> list[RunResult]:
    """Train several estimators side by side on the *same* stream, their critics batched.

    Works for separable and joint (concat) critics alike (:func:`bench.mi.mi_stacked.stack_critics`).
    The loss is the sum of every model's objective on its own slice of the stacked scores; the slices share
    no parameter and Adam acts element-wise, so each model follows exactly the trajectory it would follow
    alone (``tests/test_mi_estimation.py`` checks it against :func:`train_lean`) while the per-step Python
    overhead is paid once. An estimator whose loss turns non-finite is dropped from the sum from then on
    (its estimates become NaN) and the others go on.

    ``compile_critics`` runs the stacked critics through ``torch.compile``, which fuses the joint critic's
    broadcast add and ReLUs with their backward (1.4x faster at hidden 128-128, 7 estimators, 2 threads): the
    same float32 operations, summed in another order, so a run drifts from the eager one by rounding only.
    """
    critics = stack_critics(models).to(device)
    score = torch.compile(critics) if compile_critics else critics
    objectives = [model.objective.to(device) for model in models]
    optimizer = lean_adam(critics.parameters(), models[0].lr)
    count = len(models)
    estimates = torch.full((stream.settings.total_steps, count), math.nan, device=device)
    true_mi = _true_mi(stream)
    pointwise: list[list[dict[str, float]]] = [[] for _ in models]
    diverged_at: list[int | None] = [None] * count
    start = time.perf_counter()
    for step, batch in enumerate(stream):
        batch = {name: value.to(device) for name, value in batch.items()}
        scores = score(batch["x"], batch["y"])
        losses = []
        for index, objective in enumerate(objectives):
            if diverged_at[index] is not None:
                continue
            loss = objective(scores[index])
            if not torch.isfinite(loss):
                diverged_at[index] = step
                continue
            losses.append(loss)
            estimates[step, index] = objective.mi(scores[index])
        if not losses:
            break
        optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        optimizer.step()
        if "heldout_x" in batch:
            with torch.no_grad():
                heldout = torch.stack(
                    [score(x, y) for x, y in zip(batch["heldout_x"], batch["heldout_y"], strict=True)]
                )
            for index, objective in enumerate(objectives):
                if diverged_at[index] is None:
                    errors = pointwise_errors(objective.log_pd(heldout[:, index]), batch["heldout_log_pd"])
                    pointwise[index].append(to_floats(errors, true_mi[step]))
        if progress_every and (step + 1) % progress_every == 0:
            print(
                f"  step {step + 1}: estimates {np.round(estimates[step].cpu().numpy(), 2)}, true {true_mi[step]:g}",
                flush=True,
            )
    wall_s = time.perf_counter() - start
    values = estimates.cpu().numpy()
    return [
        RunResult(values[:, index], true_mi, pointwise[index], wall_s, diverged_at[index]) for index in range(count)
    ]


def train_lightning(
    model: MIEstimation,
    stream: MIStaircase,
    accelerator: str = "cpu",
    logger: Any = False,
    callbacks: tuple = (),
) -> RunResult:
    """Train ``model`` on ``stream`` with a Lightning ``Trainer`` (no checkpoints, bar or summary), plus
    any extra ``callbacks``."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    class Recorder(pl.Callback):
        def __init__(self) -> None:
            self.estimates: list[torch.Tensor] = []
            self.pointwise: list[dict[str, float]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            self.estimates.append(outputs["mi"])
            if "pointwise" in outputs:
                self.pointwise.append(to_floats(outputs["pointwise"], float(batch["mi"])))

    recorder = Recorder()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator=accelerator,
        devices=1,
        logger=logger,
        callbacks=[recorder, *callbacks],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=50,
    )
    start = time.perf_counter()
    trainer.fit(model, DataLoader(stream, batch_size=None, num_workers=0))
    wall_s = time.perf_counter() - start
    return RunResult(torch.stack(recorder.estimates).cpu().numpy(), _true_mi(stream), recorder.pointwise, wall_s)
