"""Statistics of saved MI benchmark runs: per run and stage, then mean and std over seeds."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.mi.mi_settings import ESTIMATORS, critic_label
from pdrl.data.gaussians import statistical_floor

EMA_SPAN = 200
POINTWISE_COLUMNS = [
    f"{pairs}_{stat}" for pairs in ("joint", "marginal") for stat in ("bias", "rmse", "error_std", "corr")
]
STATISTICS = ["bias", "variance", "mse", "mse_over_floor", *POINTWISE_COLUMNS]


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


def data_label(setting: dict[str, Any]) -> str:
    correlation = setting.get("batch_correlation", 0.0)
    if not correlation:
        return "standard"
    return f"chained {'U[0, c]' if setting.get('batch_correlation_uniform') else 'c'} = {correlation:g}"


def load_runs(*folders: Path) -> list[dict[str, Any]]:
    """Every run saved under ``<folder>/runs`` of each folder, with its critic named from its architecture and
    its seed; a run saved in two folders counts once."""
    runs, seen = [], set()
    for meta_path in sorted(path for folder in folders for path in (folder / "runs").glob("*.json")):
        if meta_path.name in seen:
            continue
        seen.add(meta_path.name)
        meta = json.loads(meta_path.read_text())
        arrays = np.load(meta_path.with_suffix(".npz"))
        meta["estimates"], meta["true_mi_trace"] = arrays["estimates"], arrays["true_mi"]
        setting = meta["setting"]
        meta["critic_name"] = critic_label(setting["critic"], setting["hidden_dims"], setting["embed_dim"])
        meta["data"] = data_label(setting)
        meta["seed"] = setting.get("seed", 0)
        runs.append(meta)
    if not runs:
        where = ", ".join(str(folder / "runs") for folder in folders)
        raise FileNotFoundError(f"No runs under {where}: run `python -m bench.mi sweep --out {folders[0]}` first.")
    order = list(ESTIMATORS)
    runs.sort(key=lambda run: (run["setting"]["task"], run["critic_name"], order.index(run["estimator"]), run["seed"]))
    return runs


def group_key(run: dict[str, Any]) -> tuple[str, str, str]:
    """Runs of one table and figure: same task, critic and data."""
    return run["setting"]["task"], run["critic_name"], run["data"]


def table_rows(runs: list[dict[str, Any]], window: int) -> list[dict[str, Any]]:
    """One row per run and MI level (every seed its own row)."""
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
                    "critic": run["critic_name"],
                    "data": run["data"],
                    "estimator": run["estimator"],
                    "seed": run["seed"],
                    **stat,
                    **{column: errors.get(column, math.nan) for column in POINTWISE_COLUMNS},
                }
            )
    return rows


def aggregate_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std (over seeds, ``ddof=0``) of every statistic per task, critic, data, estimator and level.

    ``seeds`` counts the runs; a statistic that is NaN in some seed (a diverged run) is NaN in the mean.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["critic"], row["data"], row["estimator"], row["true_mi"]), []).append(row)
    aggregated = []
    for (task, critic, data, estimator, mi), members in groups.items():
        entry: dict[str, Any] = {
            "task": task, "critic": critic, "data": data, "estimator": estimator, "true_mi": mi,
            "seeds": len(members), "floor": members[0]["floor"],
        }  # fmt: skip
        for name in STATISTICS:
            values = np.array([member[name] for member in members], dtype=np.float64)
            entry[name] = float(values.mean())
            entry[f"{name}_std"] = float(values.std())
        aggregated.append(entry)
    return aggregated
