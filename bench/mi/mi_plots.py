"""The MI benchmark's figure: PD paper Figure 1, one panel per estimator, with the spread over seeds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bench.mi.mi_stats import EMA_SPAN, ema


def plot_staircase(runs: list[dict[str, Any]], path: Path) -> None:
    """One panel per estimator: the raw estimate of the first seed, the EMA-200 mean over seeds, a band of
    +- one std of the EMA over seeds (when there are several), and the true staircase; CPC's log(batch) cap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_estimator: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_estimator.setdefault(run["estimator"], []).append(run)
    count = len(by_estimator)
    columns = min(5, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), sharex=True, squeeze=False)
    top = max(float(np.max(run["true_mi_trace"])) for run in runs) * 1.4
    for axis, (estimator, group) in zip(axes.flat, by_estimator.items(), strict=False):
        steps = np.arange(len(group[0]["estimates"]))
        smoothed = np.stack([ema(run["estimates"]) for run in group])
        mean = smoothed.mean(axis=0)
        axis.plot(steps, group[0]["estimates"], color="tab:blue", alpha=0.3, linewidth=0.5, label="estimate (seed 0)")
        axis.plot(steps, mean, color="tab:blue", linewidth=1.2, label=f"EMA-{EMA_SPAN}, mean of seeds")
        if len(group) > 1:
            spread = smoothed.std(axis=0)
            axis.fill_between(
                steps, mean - spread, mean + spread, color="tab:orange", alpha=0.5, label="+- std over seeds"
            )
        axis.plot(steps, group[0]["true_mi_trace"], color="black", linewidth=1.0, label="true MI")
        if group[0]["objective"] == "cpc":
            cap = math.log(group[0]["setting"]["batch_size"])
            axis.axhline(cap, color="tab:red", linestyle="--", linewidth=1.0, label="log(batch)")
        axis.set_ylim(-1.0, top)
        axis.set_title(f"{estimator} ({len(group)} seed{'s' if len(group) > 1 else ''})", fontsize=9)
    for axis in axes.flat[count:]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=6, loc="upper left")
    setting = runs[0]["setting"]
    figure.suptitle(
        f"{setting['task']}, {runs[0]['critic_name']} critic (hidden {setting['hidden_dims']}), "
        f"batch {setting['batch_size']}, {runs[0]['data']} data",
        fontsize=10,
    )
    figure.supxlabel("step", fontsize=9)
    figure.supylabel("MI (nats)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
