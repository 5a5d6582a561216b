"""The MI benchmark's report: tables (mean ± std over seeds), figures and the generated findings.

Files written in the sweep folder:

- ``mi_table.csv``: one row per run (task, critic, data, estimator, seed) and MI level;
- ``mi_table_mean.csv``: mean and std over seeds of every statistic, with the number of seeds;
- ``mi_table.md``: the runs and their rerun commands, one section per task / critic / data with its figure
  and tables, and the findings of :mod:`bench.mi.mi_writeup`;
- ``figure_<task>_<critic>[_<data>].png``: :func:`bench.mi.mi_plots.plot_staircase`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.mi.mi_plots import plot_staircase
from bench.mi.mi_stats import aggregate_rows, group_key, load_runs, table_rows
from bench.mi.mi_writeup import findings

TABLES = (
    ("Bias of the MI estimate (nats)", "bias", "+.3f"),
    ("Variance of the MI estimate", "variance", ".4f"),
    ("MSE of the MI estimate", "mse", ".4f"),
    ("MSE / statistical floor d rho^2 / n", "mse_over_floor", ".2f"),
    ("Point-wise log-PD, joint pairs: RMSE", "joint_rmse", ".3f"),
    ("Point-wise log-PD, joint pairs: error std (RMSE up to a constant)", "joint_error_std", ".3f"),
    ("Point-wise log-PD, joint pairs: correlation with the truth", "joint_corr", ".3f"),
    ("Point-wise log-PD, marginal pairs: RMSE", "marginal_rmse", ".3f"),
    ("Point-wise log-PD, marginal pairs: error std", "marginal_error_std", ".3f"),
    ("Point-wise log-PD, marginal pairs: correlation with the truth", "marginal_corr", ".3f"),
)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["task"])
        writer.writeheader()
        for row in rows:
            writer.writerow({key: f"{value:.6g}" if isinstance(value, float) else value for key, value in row.items()})


def markdown_matrix(rows: list[dict[str, Any]], value: str, fmt: str) -> list[str]:
    """Estimators x levels; a cell is ``mean ± std`` over seeds where an estimator has several."""
    levels = sorted({row["true_mi"] for row in rows})
    estimators = list(dict.fromkeys(row["estimator"] for row in rows))
    lines = ["| estimator (seeds) | " + " | ".join(f"MI {level:g}" for level in levels) + " |"]
    lines.append("|---" * (len(levels) + 1) + "|")
    for estimator in estimators:
        cells = {row["true_mi"]: row for row in rows if row["estimator"] == estimator}
        seeds = max(row["seeds"] for row in cells.values())
        texts = []
        for level in levels:
            row = cells.get(level)
            if row is None:
                texts.append("-")
                continue
            text = format(row[value], fmt)
            if row["seeds"] > 1 and math.isfinite(row[f"{value}_std"]):
                text += " ± " + format(row[f"{value}_std"], fmt.lstrip("+"))
            texts.append(text)
        lines.append(f"| {estimator} ({seeds}) | " + " | ".join(texts) + " |")
    return lines


def figure_name(task: str, critic: str, data: str) -> str:
    suffix = "" if data == "standard" else "_" + "".join(ch if ch.isalnum() or ch == "." else "_" for ch in data)
    return f"figure_{task}_{critic}{suffix}.png"


def write_report(
    out: Path, window: int = 1000, use_wandb: bool = False, runs_from: Sequence[Path] = ()
) -> list[dict[str, Any]]:
    """Write the report files of the module docstring into ``out`` from the runs in ``out/runs`` and in the
    ``runs`` folder of each of ``runs_from`` (one report across sweeps, e.g. one per critic); returns the
    per-run rows."""
    runs = load_runs(out, *runs_from)
    rows = table_rows(runs, window)
    aggregated = aggregate_rows(rows)
    _write_csv(out / "mi_table.csv", rows)
    _write_csv(out / "mi_table_mean.csv", aggregated)
    lines = ["# MI estimation benchmark", ""]
    lines += [
        f"Statistics over the last {window} steps of each stage, per run, then mean ± std over seeds "
        "(std with ddof 0; the number of seeds is in brackets); floor = d rho^2 / n (PAPERS.md).",
        "Point-wise errors on held-out i.i.d. batches (scored like a training batch) at the end of each stage.",
        "Critics are named from their architecture: separable = 3 hidden layers of 256 -> 32 (the SMILE code's "
        "default), separable_2h = 2 hidden layers of 256 -> 32, joint = concat MLP 512-512 (PD paper Figure 1), "
        "joint_<widths> = a narrower joint critic.",
        "",
    ]
    lines += findings(aggregated, runs)
    header = "| run | critic | seed | steps | wall time (s) | steps/s | load average at end (1/5/15 min) | engine | "
    lines += ["## Runs", "", header + "diverged at step |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        diverged = run.get("diverged_at_step")
        load = "/".join(f"{value:.1f}" for value in run["load_average_at_end"]) if "load_average_at_end" in run else "-"
        lines.append(
            f"| {run['setting']['task']} {run['estimator']} | {run['critic_name']} | {run['seed']} | {run['steps']} | "
            f"{run['wall_s']} | {run['steps_per_s']} | {load} | {run['engine']} | "
            f"{'-' if diverged is None else diverged} |"
        )
    lines += [
        "",
        "Wall time of an ensemble run is that of the whole ensemble (all its estimators together). A load average "
        "above the run's torch threads means the CPU was shared and its timings are not speed figures. Load '-': "
        "not recorded (runs made before the benchmark recorded it); the wall times of those runs are records, not "
        "speed measurements.",
        "",
    ]
    machines = sorted({f"{run['machine']} (torch threads: {run['threads']})" for run in runs})
    lines += ["Machines:", "", *[f"- {value}" for value in machines], ""]
    lines += ["Commands (each reruns its runs with the engine that made them):", ""]
    lines += [f"- `{value}`" for value in sorted({run["command"] for run in runs})] + [""]
    settings = {
        json.dumps({k: v for k, v in run["setting"].items() if k not in ("task", "seed")}, sort_keys=True)
        for run in runs
    }
    lines += ["Settings (all but the task and seed):", "", *[f"- `{text}`" for text in sorted(settings)], ""]
    figures = []
    for key in dict.fromkeys(group_key(run) for run in runs):
        task, critic, data = key
        group = [row for row in aggregated if (row["task"], row["critic"], row["data"]) == key]
        path = out / figure_name(task, critic, data)
        plot_staircase([run for run in runs if group_key(run) == key], path)
        figures.append(path)
        lines += [f"## {task}, {critic} critic, {data} data", "", f"![staircase]({path.name})", ""]
        for title, value, fmt in TABLES:
            lines += [f"### {title} ({critic} critic)", "", *markdown_matrix(group, value, fmt), ""]
        floors = {row["true_mi"]: row["floor"] for row in group}
        lines += ["Floor d rho^2 / n: " + ", ".join(f"MI {mi:g}: {f:.4f}" for mi, f in sorted(floors.items())), ""]
    (out / "mi_table.md").write_text("\n".join(lines) + "\n")
    if use_wandb:
        import wandb

        with wandb.init(project="pdrl", name=f"mi-report-{out.name}", dir=str(out)) as run:
            columns = list(aggregated[0])
            run.log({"mi_table": wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in aggregated])})
            run.log({path.stem: wandb.Image(str(path)) for path in figures})
    return rows
