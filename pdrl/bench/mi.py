"""The MI estimation benchmark (PD paper Figure 1, MICE's within-batch extension), measured.

Three commands::

    python -m pdrl.bench.mi sweep --estimators all --tasks gaussian cubic --critic separable --out DIR
    python -m pdrl.bench.mi report --out DIR
    python -m pdrl.bench.mi throughput --steps 2000 --out FILE.md

``sweep`` trains every chosen estimator on every task through the MI staircase (2, 4, 6, 8, 10 nats,
4000 steps each), saves each run under ``DIR/runs/`` and then writes the report of all runs in ``DIR``
(several sweeps may fill one folder, one process each). ``report`` only rewrites the report:

- ``mi_table.csv`` / ``mi_table.md``: per estimator and MI level, over the last ``--window`` steps of the
  stage: bias, variance and MSE of the MI estimate, the statistical floor ``d rho^2 / n`` and MSE / floor;
  the point-wise error of the critic's log-PD against the closed form on held-out joint and marginal pairs
  (bias, RMSE, error std = RMSE up to a constant offset, Pearson correlation);
- ``figure_<task>_<critic>.png``: raw and EMA-200 smoothed estimates against the true staircase, with
  log(batch) drawn for CPC (its cap).

Engines: ``--engine lean`` runs :class:`pdrl.tasks.mi_estimation.MIEstimation` in a plain PyTorch loop
(the module's own ``estimate`` step and optimizer), one estimator after the other; ``--engine lightning``
runs the same module on a ``Trainer``; ``--engine ensemble`` (default, separable critic only) trains all
the chosen estimators side by side on the same data stream with their critics batched into one set of
``bmm`` calls (each follows the trajectory it would follow alone, see :func:`train_ensemble`).
``throughput`` measures Lightning against the plain loop.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from pdrl.data.gaussians import TASKS, MIStaircase, statistical_floor
from pdrl.tasks.mi_estimation import CRITICS, MIEstimation, pointwise_errors


class Estimator(NamedTuple):
    """A benchmarked estimator: a registry objective, its arguments and the critic's spectral norm."""

    objective: str
    objective_args: dict[str, Any]
    spectral_norm: str = "none"


ESTIMATORS: dict[str, Estimator] = {
    "cpc": Estimator("cpc", {}),
    "pcc": Estimator("pcc", {"balanced": False}),
    "drfc": Estimator("drfc", {"readout": "plugin"}),
    "drfc_selfnorm": Estimator("drfc", {"readout": "self_normalized"}),
    "nwj": Estimator("nwj", {}),
    "js": Estimator("js", {}),
    "dv": Estimator("dv", {}),
    "mine": Estimator("mine", {}),
    "smile_tau1": Estimator("smile", {"tau": 1.0}),
    "smile_tau5": Estimator("smile", {"tau": 5.0}),
    "variational": Estimator("variational", {}),
    "dm1": Estimator("dm1", {}),
    "dm2": Estimator("dm2", {}),
    "mice": Estimator("mice", {"partition_gradient": "full"}, "last"),
    "mice_blocked": Estimator("mice", {"partition_gradient": "blocked"}, "last"),
}
EMA_SPAN = 200
POINTWISE_COLUMNS = [
    f"{pairs}_{stat}" for pairs in ("joint", "marginal") for stat in ("bias", "rmse", "error_std", "corr")
]


@dataclass
class Setting:
    """Everything a run depends on besides the estimator (PD code: batch 128, lr 1e-3, concat 512-512;
    SMILE code: batch 64, lr 5e-4, separable 256-256 -> 32)."""

    task: str = "gaussian"
    critic: str = "separable"
    dim: int = 20
    batch_size: int = 64
    lr: float = 5e-4
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    embed_dim: int = 32
    mi_levels: list[float] = field(default_factory=lambda: [2.0, 4.0, 6.0, 8.0, 10.0])
    steps_per_level: int = 4000
    batch_correlation: float = 0.0
    batch_correlation_uniform: bool = False
    heldout_batches: int = 4
    seed: int = 0

    def stream(self) -> MIStaircase:
        return MIStaircase(
            self.dim,
            self.batch_size,
            self.mi_levels,
            self.steps_per_level,
            self.task,
            self.batch_correlation,
            self.batch_correlation_uniform,
            self.heldout_batches,
            self.seed,
        )

    def model(self, estimator: Estimator) -> MIEstimation:
        torch.manual_seed(self.seed)
        return MIEstimation(
            estimator.objective,
            estimator.objective_args,
            self.critic,
            self.dim,
            self.hidden_dims,
            self.embed_dim,
            estimator.spectral_norm,
            self.lr,
        )


@dataclass
class RunResult:
    """The per-step MI estimates of one run and the point-wise errors at the end of every stage."""

    estimates: np.ndarray
    true_mi: np.ndarray
    pointwise: list[dict[str, float]]
    wall_s: float
    diverged_at: int | None = None


def _to_floats(errors: dict[str, torch.Tensor], mi: float) -> dict[str, float]:
    return {"true_mi": mi, **{name: float(value) for name, value in errors.items()}}


def train_lean(
    model: MIEstimation,
    stream: MIStaircase,
    device: str = "cpu",
    wandb_run: Any = None,
    progress_every: int = 0,
) -> RunResult:
    """Train ``model`` on ``stream`` in a plain loop: the module's ``estimate`` step, Adam, no Trainer.

    Prints the estimate every ``progress_every`` steps (0: never).
    """
    model.to(device).train()
    optimizer = model.configure_optimizers()
    estimates = torch.empty(stream.total_steps, device=device)
    true_mi = np.array([stream.true_mi(step) for step in range(stream.total_steps)])
    pointwise = []
    start = time.perf_counter()
    diverged_at = None
    for step, batch in enumerate(stream):
        batch = {name: value.to(device) for name, value in batch.items()}
        try:
            loss, mi = model.estimate(batch)
        except FloatingPointError:
            diverged_at = step
            estimates[step:] = math.nan
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        estimates[step] = mi
        if "heldout_x" in batch:
            errors = model.heldout_errors(batch["heldout_x"], batch["heldout_y"], batch["heldout_log_pd"])
            pointwise.append(_to_floats(errors, true_mi[step]))
            if wandb_run is not None:
                wandb_run.log(
                    {f"pointwise/{name}": value for name, value in pointwise[-1].items()},
                    step=step,
                )
        if progress_every and (step + 1) % progress_every == 0:
            print(
                f"  step {step + 1}: estimate {mi.item():.3f}, true {true_mi[step]:g}",
                flush=True,
            )
        if wandb_run is not None and step % 50 == 0:
            wandb_run.log(
                {
                    "train/mi": mi.item(),
                    "train/true_mi": true_mi[step],
                    "train/loss": loss.item(),
                },
                step=step,
            )
    wall_s = time.perf_counter() - start
    return RunResult(estimates.cpu().numpy(), true_mi, pointwise, wall_s, diverged_at)


class StackedLinear(nn.Module):
    """The same ``nn.Linear`` layer of E models as one batched layer: ``(E, n, in) -> (E, n, out)``.

    Built from the models' own layers (weights copied), so every slice starts where its model starts.
    Where a model's layer is spectrally normalised, its slice is divided by sigma = u^T W v after one power
    iteration per forward, exactly as ``torch.nn.utils.parametrizations.spectral_norm`` does it.
    """

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        weights, normalised, left, right = [], [], [], []
        for layer in layers:
            if parametrize.is_parametrized(layer, "weight"):
                norm = layer.parametrizations.weight[0]
                weights.append(layer.parametrizations.weight.original.detach())
                normalised.append(True)
                left.append(norm._u.detach())
                right.append(norm._v.detach())
            else:
                weights.append(layer.weight.detach())
                normalised.append(False)
                left.append(torch.ones(layer.out_features))
                right.append(torch.ones(layer.in_features))
        self.weight = nn.Parameter(torch.stack(weights).clone())
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]).clone())
        self.register_buffer("normalised", torch.tensor(normalised))
        self.register_buffer("left", torch.stack(left).clone())
        self.register_buffer("right", torch.stack(right).clone())
        self.any_normalised = any(normalised)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self.any_normalised:
            with torch.no_grad():
                self.left.copy_(
                    F.normalize(
                        torch.bmm(weight, self.right[:, :, None])[:, :, 0],
                        dim=1,
                        eps=1e-12,
                    )
                )
                self.right.copy_(
                    F.normalize(
                        torch.bmm(self.left[:, None, :], weight)[:, 0, :],
                        dim=1,
                        eps=1e-12,
                    )
                )
            sigma = torch.einsum("eo,eoi,ei->e", self.left.clone(), weight, self.right.clone())
            weight = weight / torch.where(self.normalised, sigma, torch.ones_like(sigma))[:, None, None]
        return torch.baddbmm(self.bias[:, None, :], inputs, weight.transpose(1, 2))


class StackedSeparableCritics(nn.Module):
    """The separable critics of E models (same architecture) as one batched computation.

    ``forward(x, y)`` gives the ``(E, n, n)`` score matrices, slice e equal to ``models[e](x, y)``.
    """

    def __init__(self, models: list[MIEstimation]) -> None:
        super().__init__()
        if any(model.hparams.critic != "separable" for model in models):
            raise ValueError(
                "The ensemble engine stacks separable critics only; use --engine lean for the concat critic."
            )
        self.count = len(models)
        self.encoders = nn.ModuleList()
        for side in ("encoder_x", "encoder_y"):
            per_model = [
                [layer for layer in getattr(model, side) if not isinstance(layer, nn.ReLU)] for model in models
            ]
            self.encoders.append(nn.ModuleList(StackedLinear(list(layers)) for layers in zip(*per_model, strict=True)))

    def embed(self, encoder: nn.ModuleList, inputs: torch.Tensor) -> torch.Tensor:
        hidden = inputs.expand(self.count, *inputs.shape)
        for index, layer in enumerate(encoder):
            hidden = layer(hidden)
            if index < len(encoder) - 1:
                hidden = torch.relu(hidden)
        return hidden

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.bmm(
            self.embed(self.encoders[0], x),
            self.embed(self.encoders[1], y).transpose(1, 2),
        )


def train_ensemble(
    models: list[MIEstimation],
    stream: MIStaircase,
    device: str = "cpu",
    progress_every: int = 0,
) -> list[RunResult]:
    """Train several estimators side by side on the *same* stream, their separable critics batched.

    The loss is the sum of every model's objective on its own slice of the stacked scores; the slices share
    no parameter and Adam acts element-wise, so each model follows exactly the trajectory it would follow
    alone (``tests/test_mi_estimation.py`` checks it against :func:`train_lean`) while the per-step Python
    overhead is paid once. An estimator whose loss turns non-finite is dropped from the sum from then on
    (its estimates become NaN) and the others go on.
    """
    critics = StackedSeparableCritics(models).to(device)
    objectives = [model.objective.to(device) for model in models]
    optimizer = torch.optim.Adam(critics.parameters(), lr=models[0].lr)
    count = len(models)
    estimates = torch.full((stream.total_steps, count), math.nan, device=device)
    true_mi = np.array([stream.true_mi(step) for step in range(stream.total_steps)])
    pointwise: list[list[dict[str, float]]] = [[] for _ in models]
    diverged_at: list[int | None] = [None] * count
    start = time.perf_counter()
    for step, batch in enumerate(stream):
        batch = {name: value.to(device) for name, value in batch.items()}
        scores = critics(batch["x"], batch["y"])
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
                    [critics(x, y) for x, y in zip(batch["heldout_x"], batch["heldout_y"], strict=True)]
                )
            for index, objective in enumerate(objectives):
                if diverged_at[index] is None:
                    errors = pointwise_errors(objective.log_pd(heldout[:, index]), batch["heldout_log_pd"])
                    pointwise[index].append(_to_floats(errors, true_mi[step]))
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
) -> RunResult:
    """Train ``model`` on ``stream`` with a Lightning ``Trainer`` (no checkpoints, bar or summary)."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    class Recorder(pl.Callback):
        def __init__(self) -> None:
            self.estimates: list[torch.Tensor] = []
            self.pointwise: list[dict[str, float]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            self.estimates.append(outputs["mi"])
            if "pointwise" in outputs:
                self.pointwise.append(_to_floats(outputs["pointwise"], float(batch["mi"])))

    recorder = Recorder()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator=accelerator,
        devices=1,
        logger=logger,
        callbacks=[recorder],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=50,
    )
    start = time.perf_counter()
    trainer.fit(model, DataLoader(stream, batch_size=None, num_workers=0))
    wall_s = time.perf_counter() - start
    true_mi = np.array([stream.true_mi(step) for step in range(stream.total_steps)])
    return RunResult(
        torch.stack(recorder.estimates).cpu().numpy(),
        true_mi,
        recorder.pointwise,
        wall_s,
    )


def run_name(setting: Setting, estimator: str) -> str:
    return f"{setting.task}__{setting.critic}__{estimator}"


def run_one(
    estimator: str,
    setting: Setting,
    out: Path,
    engine: str,
    device: str,
    use_wandb: bool,
    command: str,
) -> RunResult:
    """Train one estimator under ``setting`` (engine ``lean`` or ``lightning``) and save it in ``out/runs``."""
    name = run_name(setting, estimator)
    stream, model = setting.stream(), setting.model(ESTIMATORS[estimator])
    wandb_run = None
    if use_wandb:
        import wandb

        wandb_run = wandb.init(
            project="pdrl",
            name=f"mi-{name}",
            dir=str(out),
            config=asdict(setting),
            reinit=True,
        )
    if engine == "lean":
        result = train_lean(model, stream, device, wandb_run, progress_every=setting.steps_per_level)
    else:
        from pytorch_lightning.loggers import WandbLogger

        logger = WandbLogger(project="pdrl", name=f"mi-{name}", save_dir=str(out)) if use_wandb else False
        result = train_lightning(model, stream, "gpu" if device.startswith("cuda") else "cpu", logger)
    if wandb_run is not None:
        wandb_run.finish()
    save_run(out, estimator, setting, result, engine, device, command)
    return result


def run_ensemble(
    estimators: list[str],
    setting: Setting,
    out: Path,
    device: str,
    use_wandb: bool,
    command: str,
) -> list[RunResult]:
    """Train ``estimators`` side by side (:func:`train_ensemble`) and save each run in ``out/runs``."""
    models = [setting.model(ESTIMATORS[estimator]) for estimator in estimators]
    results = train_ensemble(models, setting.stream(), device, progress_every=setting.steps_per_level)
    for estimator, result in zip(estimators, results, strict=True):
        save_run(
            out,
            estimator,
            setting,
            result,
            f"ensemble of {len(estimators)}",
            device,
            command,
        )
        if use_wandb:
            import wandb

            name = run_name(setting, estimator)
            with wandb.init(project="pdrl", name=f"mi-{name}", dir=str(out), config=asdict(setting)) as run:
                for step in range(0, len(result.estimates), 50):
                    run.log(
                        {
                            "train/mi": float(result.estimates[step]),
                            "train/true_mi": result.true_mi[step],
                        },
                        step=step,
                    )
    return results


def save_run(
    out: Path,
    estimator: str,
    setting: Setting,
    result: RunResult,
    engine: str,
    device: str,
    command: str,
) -> None:
    """``runs/<task>__<critic>__<estimator>.npz`` (the per-step trace) and ``.json`` (everything else)."""
    name = run_name(setting, estimator)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        runs / f"{name}.npz",
        estimates=result.estimates.astype(np.float32),
        true_mi=result.true_mi,
    )
    meta = {
        "estimator": estimator,
        **ESTIMATORS[estimator]._asdict(),
        "setting": asdict(setting),
        "engine": engine,
        "device": device,
        "threads": torch.get_num_threads(),
        "machine": machine_description(device),
        "command": command,
        "steps": int(len(result.estimates)),
        "wall_s": round(result.wall_s, 2),
        "steps_per_s": round(len(result.estimates) / result.wall_s, 1),
        "diverged_at_step": result.diverged_at,
        "pointwise": result.pointwise,
    }
    (runs / f"{name}.json").write_text(json.dumps(meta, indent=1))


def machine_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} GPU"
    gpu = "GPU present but unused" if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core CPU ({platform.machine()}), {gpu}"


# ---------------------------------------------------------------- statistics and report


def ema(values: np.ndarray, span: int = EMA_SPAN) -> np.ndarray:
    """Exponential moving average with ``alpha = 2 / (span + 1)`` (pandas' ``ewm(span, adjust=False)``)."""
    alpha = 2.0 / (span + 1.0)
    smoothed = np.empty_like(values, dtype=np.float64)
    running = float(values[0])
    for index, value in enumerate(values):
        running = running + alpha * (float(value) - running)
        smoothed[index] = running
    return smoothed


def stage_statistics(
    estimates: np.ndarray,
    mi_levels: Sequence[float],
    steps_per_level: int,
    window: int,
    dim: int,
    batch_size: int,
) -> list[dict[str, float]]:
    """Bias, variance and MSE of the estimate over the last ``window`` steps of every stage, with the floor."""
    if not 0 < window <= steps_per_level:
        raise ValueError(f"window must be in [1, steps_per_level={steps_per_level}], got {window}.")
    rows = []
    for index, mi in enumerate(mi_levels):
        end = (index + 1) * steps_per_level
        segment = estimates[end - window : end].astype(np.float64)
        if len(segment) < window:
            break
        floor = statistical_floor(mi, dim, batch_size)
        mse = float(np.mean((segment - mi) ** 2))
        rows.append(
            {
                "true_mi": mi,
                "bias": float(segment.mean() - mi),
                "variance": float(segment.var()),
                "mse": mse,
                "floor": floor,
                "mse_over_floor": mse / floor,
            }
        )
    return rows


def load_runs(out: Path) -> list[dict[str, Any]]:
    runs = []
    for meta_path in sorted((out / "runs").glob("*.json")):
        meta = json.loads(meta_path.read_text())
        arrays = np.load(meta_path.with_suffix(".npz"))
        meta["estimates"], meta["true_mi_trace"] = (
            arrays["estimates"],
            arrays["true_mi"],
        )
        runs.append(meta)
    if not runs:
        raise FileNotFoundError(f"No runs under {out / 'runs'}: run `python -m pdrl.bench.mi sweep --out {out}` first.")
    order = list(ESTIMATORS)
    runs.sort(
        key=lambda run: (
            run["setting"]["task"],
            run["setting"]["critic"],
            order.index(run["estimator"]),
        )
    )
    return runs


def table_rows(runs: list[dict[str, Any]], window: int) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        setting = run["setting"]
        stats = stage_statistics(
            run["estimates"],
            setting["mi_levels"],
            setting["steps_per_level"],
            window,
            setting["dim"],
            setting["batch_size"],
        )
        pointwise = {entry["true_mi"]: entry for entry in run["pointwise"]}
        for stat in stats:
            errors = pointwise.get(stat["true_mi"], {})
            rows.append(
                {
                    "task": setting["task"],
                    "critic": setting["critic"],
                    "estimator": run["estimator"],
                    **stat,
                    **{column: errors.get(column, math.nan) for column in POINTWISE_COLUMNS},
                }
            )
    return rows


def _markdown_matrix(rows: list[dict[str, Any]], value: str, fmt: str) -> list[str]:
    levels = sorted({row["true_mi"] for row in rows})
    estimators = list(dict.fromkeys(row["estimator"] for row in rows))
    lines = ["| estimator | " + " | ".join(f"MI {level:g}" for level in levels) + " |"]
    lines.append("|---" * (len(levels) + 1) + "|")
    for estimator in estimators:
        cells = {row["true_mi"]: row[value] for row in rows if row["estimator"] == estimator}
        lines.append(
            f"| {estimator} | " + " | ".join(format(cells.get(level, math.nan), fmt) for level in levels) + " |"
        )
    return lines


def write_report(out: Path, window: int = 1000, use_wandb: bool = False) -> list[dict[str, Any]]:
    """Write ``mi_table.csv``, ``mi_table.md`` and one figure per task and critic from ``out/runs``."""
    runs = load_runs(out)
    rows = table_rows(runs, window)
    columns = list(rows[0]) if rows else ["task", "critic", "estimator"]
    with open(out / "mi_table.csv", "w") as handle:
        handle.write(",".join(columns) + "\n")
        for row in rows:
            handle.write(
                ",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in columns) + "\n"
            )
    lines = ["# MI estimation benchmark", ""]
    lines += [f"Statistics over the last {window} steps of each stage; floor = d rho^2 / n (PAPERS.md)."]
    lines += [
        "Point-wise errors on held-out i.i.d. batches (scored like a training batch) at the end of each stage.",
        "",
    ]
    lines += [
        "| run | steps | wall time (s) | steps/s | engine | diverged at step |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        diverged = run.get("diverged_at_step")
        lines.append(
            f"| {run_name_of(run)} | {run['steps']} | {run['wall_s']} | {run['steps_per_s']} | {run['engine']} | "
            f"{'-' if diverged is None else diverged} |"
        )
    lines += ["", "Wall time of an ensemble run is that of the whole ensemble (all its estimators together).", ""]
    for title, key in (("Machines", "machine"), ("Commands", "command")):
        values = sorted(
            {f"{run[key]} (torch threads: {run['threads']})" if key == "machine" else run[key] for run in runs}
        )
        lines += [f"{title}:", "", *[f"- `{value}`" if key == "command" else f"- {value}" for value in values], ""]
    settings = {json.dumps({k: v for k, v in run["setting"].items() if k != "task"}, sort_keys=True) for run in runs}
    lines += ["Settings (all but the task):", "", *[f"- `{text}`" for text in sorted(settings)], ""]
    figures = []
    for task, critic in dict.fromkeys((run["setting"]["task"], run["setting"]["critic"]) for run in runs):
        group = [row for row in rows if row["task"] == task and row["critic"] == critic]
        group_runs = [run for run in runs if run["setting"]["task"] == task and run["setting"]["critic"] == critic]
        figure_path = out / f"figure_{task}_{critic}.png"
        plot_staircase(group_runs, figure_path)
        figures.append(figure_path)
        lines += [
            f"## {task}, {critic} critic",
            "",
            f"![staircase]({figure_path.name})",
            "",
        ]
        for title, value, fmt in (
            ("Bias of the MI estimate (nats)", "bias", "+.3f"),
            ("Variance of the MI estimate", "variance", ".4f"),
            ("MSE of the MI estimate", "mse", ".4f"),
            ("MSE / statistical floor d rho^2 / n", "mse_over_floor", ".2f"),
            ("Point-wise log-PD, joint pairs: RMSE", "joint_rmse", ".3f"),
            (
                "Point-wise log-PD, joint pairs: error std (RMSE up to a constant)",
                "joint_error_std",
                ".3f",
            ),
            (
                "Point-wise log-PD, joint pairs: correlation with the truth",
                "joint_corr",
                ".3f",
            ),
            ("Point-wise log-PD, marginal pairs: RMSE", "marginal_rmse", ".3f"),
            (
                "Point-wise log-PD, marginal pairs: error std",
                "marginal_error_std",
                ".3f",
            ),
            (
                "Point-wise log-PD, marginal pairs: correlation with the truth",
                "marginal_corr",
                ".3f",
            ),
        ):
            lines += [f"### {title}", "", *_markdown_matrix(group, value, fmt), ""]
        floors = {row["true_mi"]: row["floor"] for row in group}
        lines += [
            "Floor d rho^2 / n: " + ", ".join(f"MI {mi:g}: {floor:.4f}" for mi, floor in sorted(floors.items())),
            "",
        ]
    (out / "mi_table.md").write_text("\n".join(lines) + "\n")
    if use_wandb:
        import wandb

        with wandb.init(project="pdrl", name=f"mi-report-{out.name}", dir=str(out)) as run:
            run.log(
                {
                    "mi_table": wandb.Table(
                        columns=columns,
                        data=[[row[c] for c in columns] for row in rows],
                    )
                }
            )
            run.log({path.stem: wandb.Image(str(path)) for path in figures})
    return rows


def run_name_of(run: dict[str, Any]) -> str:
    return f"{run['setting']['task']}__{run['setting']['critic']}__{run['estimator']}"


def plot_staircase(runs: list[dict[str, Any]], path: Path) -> None:
    """Figure 1 of the PD paper: one panel per estimator, raw and EMA-200 estimates, the true staircase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(5, len(runs))
    rows = math.ceil(len(runs) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), sharex=True, squeeze=False)
    top = max(float(np.max(run["true_mi_trace"])) for run in runs) * 1.4
    for axis, run in zip(axes.flat, runs, strict=False):
        steps = np.arange(len(run["estimates"]))
        axis.plot(
            steps,
            run["estimates"],
            color="tab:blue",
            alpha=0.3,
            linewidth=0.5,
            label="estimate",
        )
        axis.plot(
            steps,
            ema(run["estimates"]),
            color="tab:blue",
            linewidth=1.2,
            label=f"EMA-{EMA_SPAN}",
        )
        axis.plot(steps, run["true_mi_trace"], color="black", linewidth=1.0, label="true MI")
        if run["objective"] == "cpc":
            cap = math.log(run["setting"]["batch_size"])
            axis.axhline(cap, color="tab:red", linestyle="--", linewidth=1.0, label="log(batch)")
        axis.set_ylim(-1.0, top)
        axis.set_title(run["estimator"], fontsize=9)
    for axis in axes.flat[len(runs) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=6, loc="upper left")
    setting = runs[0]["setting"]
    figure.suptitle(
        f"{setting['task']}, {setting['critic']} critic, batch {setting['batch_size']}",
        fontsize=10,
    )
    figure.supxlabel("step", fontsize=9)
    figure.supylabel("MI (nats)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------- throughput


def measure_throughput(estimator: str, setting: Setting, device: str) -> dict[str, float]:
    """Steps per second (wall clock) and CPU milliseconds per step of the same model and data through a
    Lightning ``Trainer`` and through the plain loop. On a shared machine the CPU time is the steadier measure."""
    accelerator = "cpu" if device == "cpu" else "gpu"
    cpu_start = time.process_time()
    lightning = train_lightning(setting.model(ESTIMATORS[estimator]), setting.stream(), accelerator)
    lightning_cpu = time.process_time() - cpu_start
    cpu_start = time.process_time()
    plain = train_lean(setting.model(ESTIMATORS[estimator]), setting.stream(), device)
    plain_cpu = time.process_time() - cpu_start
    steps = setting.stream().total_steps
    return {
        "steps": steps,
        "lightning_steps_per_s": steps / lightning.wall_s,
        "plain_steps_per_s": steps / plain.wall_s,
        "lightning_cpu_ms_per_step": 1000.0 * lightning_cpu / steps,
        "plain_cpu_ms_per_step": 1000.0 * plain_cpu / steps,
    }


def write_throughput(
    path: Path, estimator: str, setting: Setting, device: str, repeats: int, command: str
) -> list[dict[str, float]]:
    load = os.getloadavg()[0]
    measurements = [measure_throughput(estimator, setting, device) for _ in range(repeats)]
    lines = [
        "# MI benchmark throughput: Lightning Trainer vs plain PyTorch loop",
        "",
        f"Machine: {machine_description(device)}; torch threads: {torch.get_num_threads()}; "
        f"load average at start: {load:.2f}, at end: {os.getloadavg()[0]:.2f} (the machine is shared, so wall-clock "
        "steps/s depend on the other jobs; CPU ms per step, the process's own CPU time, is the steadier measure).",
        f"Command: `{command}`",
        f"Model and data: `{estimator}` on the {setting.task} task, {setting.critic} critic, "
        f"batch {setting.batch_size}, hidden {setting.hidden_dims} -> {setting.embed_dim}, "
        f"{measurements[0]['steps']} steps per measurement (data generation, forward, backward, Adam step and "
        "MI readout in both; the Trainer also logs 4 values per step; its CPU time includes building the Trainer).",
        "",
        "| repeat | Lightning steps/s | plain loop steps/s | Lightning CPU ms/step | plain loop CPU ms/step |",
        "|---|---|---|---|---|",
    ]
    for index, row in enumerate(measurements):
        lines.append(
            f"| {index} | {row['lightning_steps_per_s']:.1f} | {row['plain_steps_per_s']:.1f} | "
            f"{row['lightning_cpu_ms_per_step']:.2f} | {row['plain_cpu_ms_per_step']:.2f} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return measurements


# ---------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pdrl.bench.mi", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def add_setting(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--critic", choices=CRITICS, default="separable")
        sub.add_argument("--dim", type=int, default=20)
        sub.add_argument("--batch-size", type=int, default=64)
        sub.add_argument("--lr", type=float, default=5e-4)
        sub.add_argument("--hidden-dims", type=int, nargs="+", default=[256, 256])
        sub.add_argument("--embed-dim", type=int, default=32)
        sub.add_argument("--mi-levels", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0, 10.0])
        sub.add_argument("--steps-per-level", type=int, default=4000)
        sub.add_argument(
            "--batch-correlation",
            type=float,
            default=0.0,
            help="MICE's within-batch chain c",
        )
        sub.add_argument(
            "--batch-correlation-uniform",
            action="store_true",
            help="c ~ U[0, --batch-correlation]",
        )
        sub.add_argument("--heldout-batches", type=int, default=4)
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--device", default="cpu", help="cpu or cuda")
        sub.add_argument("--threads", type=int, default=1, help="torch CPU threads")

    sweep = commands.add_parser("sweep", help="train estimators x tasks, save the runs, write the report")
    sweep.add_argument(
        "--estimators",
        nargs="+",
        default=["all"],
        help=f"'all' or some of {', '.join(ESTIMATORS)}",
    )
    sweep.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    sweep.add_argument(
        "--engine",
        choices=("ensemble", "lean", "lightning"),
        default="ensemble",
        help="ensemble: all estimators side by side, separable critics batched; lean: one plain loop each",
    )
    sweep.add_argument("--skip-existing", action="store_true", help="keep runs already saved in --out")
    sweep.add_argument(
        "--window",
        type=int,
        default=1000,
        help="last steps of each stage in the statistics",
    )
    sweep.add_argument("--wandb", action="store_true", help="log runs and report to W&B (project pdrl)")
    sweep.add_argument("--out", type=Path, required=True)
    add_setting(sweep)

    report = commands.add_parser("report", help="rewrite the tables and figures from the runs in --out")
    report.add_argument("--window", type=int, default=1000)
    report.add_argument("--wandb", action="store_true")
    report.add_argument("--out", type=Path, required=True)

    throughput = commands.add_parser("throughput", help="steps/s of Lightning vs a plain loop")
    throughput.add_argument("--estimator", default="smile_tau1", choices=list(ESTIMATORS))
    throughput.add_argument("--steps", type=int, default=2000)
    throughput.add_argument("--repeats", type=int, default=2)
    throughput.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    add_setting(throughput)
    return parser


def _setting(args: argparse.Namespace, task: str) -> Setting:
    return Setting(
        task=task,
        critic=args.critic,
        dim=args.dim,
        batch_size=args.batch_size,
        lr=args.lr,
        hidden_dims=list(args.hidden_dims),
        embed_dim=args.embed_dim,
        mi_levels=list(args.mi_levels),
        steps_per_level=args.steps_per_level,
        batch_correlation=args.batch_correlation,
        batch_correlation_uniform=args.batch_correlation_uniform,
        heldout_batches=args.heldout_batches,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> Any:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    command = "python -m pdrl.bench.mi " + " ".join(argv)
    if args.command == "report":
        return write_report(args.out, args.window, args.wandb)
    torch.set_num_threads(args.threads)
    if args.command == "throughput":
        setting = _setting(args, "gaussian")
        setting.mi_levels, setting.steps_per_level, setting.heldout_batches = (
            [setting.mi_levels[0]],
            args.steps,
            0,
        )
        return write_throughput(args.out, args.estimator, setting, args.device, args.repeats, command)
    estimators = list(ESTIMATORS) if args.estimators == ["all"] else args.estimators
    unknown = [name for name in estimators if name not in ESTIMATORS]
    if unknown:
        raise SystemExit(f"Unknown estimator(s) {', '.join(unknown)}: choose 'all' or some of {', '.join(ESTIMATORS)}.")
    args.out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        setting = _setting(args, task)
        todo = [
            estimator
            for estimator in estimators
            if not (args.skip_existing and (args.out / "runs" / f"{run_name(setting, estimator)}.json").exists())
        ]
        if args.engine == "ensemble" and todo:
            results = run_ensemble(todo, setting, args.out, args.device, args.wandb, command)
        else:
            results = [
                run_one(
                    name,
                    setting,
                    args.out,
                    args.engine,
                    args.device,
                    args.wandb,
                    command,
                )
                for name in todo
            ]
        for estimator, result in zip(todo, results, strict=True):
            tail = result.estimates[-min(100, len(result.estimates)) :].mean()
            print(
                f"{run_name(setting, estimator)}: {result.wall_s:.1f} s, last-100 mean {tail:.3f}",
                flush=True,
            )
    return write_report(args.out, args.window, args.wandb)


if __name__ == "__main__":
    main()
