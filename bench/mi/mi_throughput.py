"""Throughput of the MI benchmark's engines against a plain reference loop, in one process, interleaved.

Every round trains a fresh copy of the same model (same critic, estimator, seed, threads) for ``steps``
steps in each of three loops, in a rotating order so that no loop always runs first or last:

- ``plain``: :func:`bench.mi.mi_engines.train_plain`, what the public reference code does per step;
- ``lean``: :func:`bench.mi.mi_engines.train_lean` on the benchmark's stream (no held-out batches);
- ``lightning``: :func:`bench.mi.mi_engines.train_lightning`; its steps/s are timed from the end of the
  first tenth of the steps to the end (steady state, the Trainer's one-off setup left out; the setup,
  from the call of ``train_lightning`` (the Trainer built, then ``fit``) to the start of the first batch, is
  reported apart).

The report gives every round, the median steps/s of each loop, the ratios to the plain loop and the load
average before and after each round (on a shared machine other jobs move wall-clock numbers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.mi.mi_engines import train_lean, train_lightning, train_plain
from bench.mi.mi_runs import machine_description
from bench.mi.mi_settings import ESTIMATORS, Setting
from bench.timing import interleaved_rounds

LOOPS = ("plain", "lean", "lightning")


class _SteadyTimer:
    """A Lightning callback: wall time from the start of batch ``first`` to the end of the last batch, and the
    ``perf_counter`` time at the start of batch 0 (``first_batch_at``)."""

    def __new__(cls, first: int) -> Any:
        import pytorch_lightning as pl

        class Timer(pl.Callback):
            def __init__(self) -> None:
                self.first, self.first_batch_at, self.start, self.end = first, 0.0, 0.0, 0.0

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
                if batch_idx == 0:
                    self.first_batch_at = time.perf_counter()
                if batch_idx == self.first:
                    self.start = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
                self.end = time.perf_counter()

        return Timer()


def loops_of(estimator: str, setting: Setting, lightning_setup_s: list[float]) -> dict[str, Callable[[int], float]]:
    """Each loop as a variant of :func:`bench.timing.interleaved_rounds`: it trains a fresh model and returns its
    steps/s; the Lightning loop also appends its setup seconds to ``lightning_setup_s``."""
    steps = setting.total_steps

    def plain(_round: int) -> float:
        return steps / train_plain(setting.model(ESTIMATORS[estimator]), setting.stream())

    def lean(_round: int) -> float:
        return steps / train_lean(setting.model(ESTIMATORS[estimator]), setting.stream()).wall_s

    def lightning(_round: int) -> float:
        model = setting.model(ESTIMATORS[estimator])
        first = steps // 10
        timer = _SteadyTimer(first)
        called_at = time.perf_counter()
        train_lightning(model, setting.stream(), callbacks=(timer,))
        lightning_setup_s.append(timer.first_batch_at - called_at)
        return (steps - first) / (timer.end - timer.start)

    return {"plain": plain, "lean": lean, "lightning": lightning}


def run_throughput(path: Path, estimator: str, setting: Setting, rounds: int, command: str) -> list[dict[str, float]]:
    """Measure ``rounds`` interleaved rounds, print them and write the Markdown report to ``path``."""
    lightning_setup_s: list[float] = []
    timed = interleaved_rounds(
        loops_of(estimator, setting, lightning_setup_s), rounds, order="rotate", measure="returned"
    )
    measurements = [
        {"load_before": timed.load_before[index], **{loop: timed.values[loop][index] for loop in LOOPS},
         "lightning_setup_s": lightning_setup_s[index], "load_after": timed.load_after[index]}
        for index in range(rounds)
    ]  # fmt: skip
    for index, (order, row) in enumerate(zip(timed.orders, measurements, strict=True)):
        print(
            f"round {index} ({' -> '.join(order)}): "
            + ", ".join(f"{loop} {row[loop]:.1f} steps/s" for loop in LOOPS)
            + f"; lean/plain {row['lean'] / row['plain']:.3f}, lightning/plain {row['lightning'] / row['plain']:.3f}"
            + f"; load {row['load_before']:.2f} -> {row['load_after']:.2f}",
            flush=True,
        )
    median = timed.medians()
    steps = setting.total_steps
    lines = [
        "# MI benchmark throughput: pdrl's lean loop and Lightning engine against a plain reference loop",
        "",
        f"Machine: {machine_description('cpu')}; torch threads: {torch.get_num_threads()}; one process, "
        f"{rounds} interleaved rounds of {steps} steps per loop (order rotated every round).",
        f"Command: `{command}`",
        f"Model and data: `{estimator}` on the {setting.task} task, {setting.critic_label} critic "
        f"(hidden {setting.hidden_dims}), batch {setting.batch_size}. Plain: the reference code's step "
        "(randn batch, forward, backward, Adam, `.item()` of the estimate). Lean: pdrl's benchmark loop on its "
        "data stream. Lightning: the same module on a `Trainer`, steady state (its first tenth of the steps and "
        "the Trainer's setup left out; the setup, from building the `Trainer` to the start of its first batch, "
        "is in its own column).",
        "",
        "| round | order | plain steps/s | lean steps/s | Lightning steps/s | lean / plain | Lightning / plain "
        "| Lightning setup (s) | load before | load after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, (order, row) in enumerate(zip(timed.orders, measurements, strict=True)):
        lines.append(
            f"| {index} | {' -> '.join(order)} | {row['plain']:.1f} | {row['lean']:.1f} | {row['lightning']:.1f} | "
            f"{row['lean'] / row['plain']:.3f} | {row['lightning'] / row['plain']:.3f} | "
            f"{row['lightning_setup_s']:.2f} | {row['load_before']:.2f} | {row['load_after']:.2f} |"
        )
    lines += [
        "",
        f"Median over rounds: plain {median['plain']:.1f}, lean {median['lean']:.1f}, Lightning "
        f"{median['lightning']:.1f} steps/s; lean / plain {median['lean'] / median['plain']:.3f}, "
        f"Lightning / plain {median['lightning'] / median['plain']:.3f}.",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return measurements
