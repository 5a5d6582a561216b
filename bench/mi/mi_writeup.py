"""The MI benchmark's findings, generated from the aggregated table: every claim names its critic.

Three kinds of claim, each computed, none typed by hand:

- per task, critic and level: the best estimator (lowest mean MSE over seeds) and its MSE as a multiple
  of the floor d rho^2 / n, with the spread over seeds;
- per task and critic: the lowest-variance estimator among the low-bias ones (|mean bias| below
  ``LOW_BIAS`` nats) from MI 6 up, the estimators that diverged (a non-finite loss) and those off the scale
  (a finite mean estimate below 0 or above twice the true MI at some level, e.g. MICE's blocked form at -5e12);
- across critics: whether each of those answers is the same for every critic, or flips.
"""

from __future__ import annotations

import math
from typing import Any

LOW_BIAS = 0.5  # nats: an estimator counts as low-bias where |mean bias| is below this


def _fmt(value: float, spread: float, seeds: int, fmt: str) -> str:
    text = format(value, fmt)
    return f"{text} ± {format(spread, fmt)}" if seeds > 1 and math.isfinite(spread) else text


def best_per_level(aggregated: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """``(task, critic, data, level) -> row`` of the estimator with the lowest finite mean MSE."""
    best: dict[tuple, dict[str, Any]] = {}
    for row in aggregated:
        if not math.isfinite(row["mse"]):
            continue
        key = (row["task"], row["critic"], row["data"], row["true_mi"])
        if key not in best or row["mse"] < best[key]["mse"]:
            best[key] = row
    return best


def lowest_variance_low_bias(rows: list[dict[str, Any]], from_mi: float = 6.0) -> str | None:
    """The estimator with the lowest mean variance over levels >= ``from_mi`` among those whose |mean bias|
    stays below :data:`LOW_BIAS` at every such level (None if no estimator qualifies)."""
    candidates: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["true_mi"] >= from_mi:
            candidates.setdefault(row["estimator"], []).append(row)
    qualified = {
        name: sum(row["variance"] for row in group) / len(group)
        for name, group in candidates.items()
        if all(math.isfinite(row["mse"]) and abs(row["bias"]) < LOW_BIAS for row in group)
    }
    return min(qualified, key=qualified.get) if qualified else None


def off_the_scale(rows: list[dict[str, Any]]) -> list[str]:
    """``estimator (MI level)`` at the first level where its mean estimate (true MI + mean bias) leaves
    [0, 2 x true MI]: an estimate there says nothing about the MI, though its loss stayed finite."""
    first: dict[str, float] = {}
    for row in sorted(rows, key=lambda row: row["true_mi"]):
        if abs(row["bias"]) > row["true_mi"] and row["estimator"] not in first:  # NaN compares False
            first[row["estimator"]] = row["true_mi"]
    return [f"{name} (from MI {level:g})" for name, level in sorted(first.items())]


def findings(aggregated: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of the findings section."""
    lines = ["## Findings (generated; each holds for the critic it names)", ""]
    lines += [
        f"Best = lowest mean MSE over the seeds; multiples of the floor d rho^2 / n are mean ± std over seeds where "
        f"there are several. Low-bias = |mean bias| < {LOW_BIAS} nats at every level from MI 6.",
        "",
    ]
    best = best_per_level(aggregated)
    groups = sorted({(row["task"], row["critic"], row["data"]) for row in aggregated})
    levels = sorted({row["true_mi"] for row in aggregated})
    lines += ["### Best estimator's MSE / floor, per level", ""]
    lines += ["| task | critic | data | " + " | ".join(f"MI {level:g}" for level in levels) + " |"]
    lines.append("|---" * (len(levels) + 3) + "|")
    for task, critic, data in groups:
        cells = []
        for level in levels:
            row = best.get((task, critic, data, level))
            cells.append(
                "-" if row is None else
                f"{row['estimator']}: {_fmt(row['mse_over_floor'], row['mse_over_floor_std'], row['seeds'], '.2f')}x"
            )  # fmt: skip
        lines.append(f"| {task} | {critic} | {data} | " + " | ".join(cells) + " |")
    lines.append("")
    for task, critic, data in groups:
        group = [row for row in aggregated if (row["task"], row["critic"], row["data"]) == (task, critic, data)]
        within = [
            level for level in levels
            if (task, critic, data, level) in best and best[(task, critic, data, level)]["mse_over_floor"] <= 1.5
        ]  # fmt: skip
        steady = lowest_variance_low_bias(group)
        diverged = sorted(
            {f"{run['estimator']} (seed {run['seed']}, step {run['diverged_at_step']})" for run in runs
             if (run["setting"]["task"], run["critic_name"], run["data"]) == (task, critic, data)
             and run.get("diverged_at_step") is not None}
        )  # fmt: skip
        off = off_the_scale(group)
        lines += [
            f"- **{task}, {critic} critic, {data} data**: the best estimator is within 1.5x of the floor at "
            + (", ".join(f"MI {level:g}" for level in within) if within else "no level")
            + f"; lowest variance among the low-bias estimators from MI 6: {steady or 'none is low-bias'}; "
            + f"diverged: {', '.join(diverged) if diverged else 'none'}; "
            + f"mean estimate off the scale (below 0 or above 2x the true MI): {', '.join(off) if off else 'none'}."
        ]
    lines += ["", "### Across critics", ""]
    by_task_data: dict[tuple, list[str]] = {}
    for task, critic, data in groups:
        by_task_data.setdefault((task, data), []).append(critic)
    for (task, data), critics in sorted(by_task_data.items()):
        if len(critics) < 2:
            continue
        for level in levels:
            answers = {c: best[(task, c, data, level)]["estimator"] for c in critics if (task, c, data, level) in best}
            verdict = "the same for every critic" if len(set(answers.values())) == 1 else "**flips between critics**"
            lines.append(
                f"- {task}, MI {level:g}: best estimator "
                + ", ".join(f"{critic}: {name}" for critic, name in answers.items())
                + f" ({verdict})."
            )
        steady = {
            c: lowest_variance_low_bias(
                [r for r in aggregated if (r["task"], r["critic"], r["data"]) == (task, c, data)]
            )
            for c in critics
        }
        verdict = "the same for every critic" if len(set(steady.values())) == 1 else "**flips between critics**"
        lines.append(
            f"- {task}: lowest variance among the low-bias estimators from MI 6: "
            + ", ".join(f"{critic}: {name or 'none'}" for critic, name in steady.items())
            + f" ({verdict})."
        )
    lines.append("")
    return lines
