"""Run estimators under a :class:`~bench.mi.mi_settings.Setting` with one engine and save each run.

Every saved run stores the command that reruns it: every option spelled out (engine, critic, widths,
batch, lr, staircase, data, seed, task, estimators), so a later change of a default cannot make a stored
command rerun another engine or setting.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bench.mi.mi_engines import RunResult, train_ensemble, train_lean, train_lightning
from bench.mi.mi_settings import ESTIMATORS, Setting, run_name

ENGINES = ("ensemble", "lean", "lightning")


def rerun_command(
    setting: Setting,
    estimators: list[str],
    engine: str,
    out: Path,
    device: str,
    window: int = 1000,
    compile_critics: bool = False,
) -> str:
    """The ``python -m bench.mi sweep`` command that trains exactly these runs again (and reports them
    over the last ``window`` steps of each stage)."""
    words = ["python", "-m", "bench.mi", "sweep", "--engine", engine, *(["--compile"] if compile_critics else [])]
    words += ["--critic", "joint" if setting.critic == "concat" else "separable"]
    words += ["--hidden-dims", *map(str, setting.hidden_dims), "--embed-dim", str(setting.embed_dim)]
    words += ["--batch-size", str(setting.batch_size), "--lr", f"{setting.lr:g}", "--dim", str(setting.dim)]
    words += ["--mi-levels", *(f"{level:g}" for level in setting.mi_levels)]
    words += ["--steps-per-level", str(setting.steps_per_level), "--heldout-batches", str(setting.heldout_batches)]
    words += ["--batch-correlation", f"{setting.batch_correlation:g}"]
    if setting.batch_correlation_uniform:
        words.append("--batch-correlation-uniform")
    words += ["--seeds", str(setting.seed), "--tasks", setting.task, "--estimators", *estimators]
    words += ["--device", device, "--threads", str(torch.get_num_threads())]
    words += ["--window", str(window), "--out", str(out)]
    return shlex.join(words)


def run_one(
    estimator: str, setting: Setting, out: Path, engine: str, device: str, use_wandb: bool, window: int = 1000
) -> RunResult:
    """Train one estimator under ``setting`` (engine ``lean`` or ``lightning``) and save it in ``out/runs``."""
    if engine not in ("lean", "lightning"):
        raise ValueError(f"run_one runs engine 'lean' or 'lightning', got {engine!r}; use run_ensemble.")
    name = run_name(setting, estimator)
    stream, model = setting.stream(), setting.model(ESTIMATORS[estimator])
    wandb_run = None
    if use_wandb:
        import wandb

        wandb_run = wandb.init(project="pdrl", name=f"mi-{name}", dir=str(out), config=asdict(setting), reinit=True)
    if engine == "lean":
        result = train_lean(model, stream, device, wandb_run, progress_every=setting.steps_per_level)
    else:
        from pytorch_lightning.loggers import WandbLogger

        logger = WandbLogger(project="pdrl", name=f"mi-{name}", save_dir=str(out)) if use_wandb else False
        result = train_lightning(model, stream, "gpu" if device.startswith("cuda") else "cpu", logger)
    if wandb_run is not None:
        wandb_run.finish()
    save_run(
        out,
        estimator,
        setting,
        result,
        engine,
        device,
        rerun_command(setting, [estimator], engine, out, device, window),
    )
    return result


def run_ensemble(
    estimators: list[str],
    setting: Setting,
    out: Path,
    device: str,
    use_wandb: bool,
    window: int = 1000,
    compile_critics: bool = False,
) -> list[RunResult]:
    """Train ``estimators`` side by side (:func:`train_ensemble`) and save each run in ``out/runs``."""
    models = [setting.model(ESTIMATORS[estimator]) for estimator in estimators]
    results = train_ensemble(
        models, setting.stream(), device, progress_every=setting.steps_per_level, compile_critics=compile_critics
    )
    command = rerun_command(setting, estimators, "ensemble", out, device, window, compile_critics)
    engine = f"ensemble of {len(estimators)}{', compiled' if compile_critics else ''}"
    for estimator, result in zip(estimators, results, strict=True):
        save_run(out, estimator, setting, result, engine, device, command)
        if use_wandb:
            import wandb

            name = run_name(setting, estimator)
            with wandb.init(project="pdrl", name=f"mi-{name}", dir=str(out), config=asdict(setting)) as run:
                for step in range(0, len(result.estimates), 50):
                    run.log(
                        {"train/mi": float(result.estimates[step]), "train/true_mi": result.true_mi[step]}, step=step
                    )
    return results


def save_run(
    out: Path, estimator: str, setting: Setting, result: RunResult, engine: str, device: str, command: str
) -> None:
    """``runs/<run name>.npz`` (the per-step trace) and ``.json`` (everything else)."""
    name = run_name(setting, estimator)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(runs / f"{name}.npz", estimates=result.estimates.astype(np.float32), true_mi=result.true_mi)
    meta = {
        "estimator": estimator,
        **ESTIMATORS[estimator]._asdict(),
        "setting": asdict(setting),
        "critic_name": setting.critic_label,
        "engine": engine,
        "device": device,
        "threads": torch.get_num_threads(),
        "machine": machine_description(device),
        "command": command,
        "steps": int(len(result.estimates)),
        "wall_s": round(result.wall_s, 2),
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],  # 1, 5, 15 min: was the CPU shared?
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
