"""Benchmark: does a run's state change the speed of the shallow MNIST step?

A long run can slow down for reasons a fresh-model benchmark never sees (denormal floats in Adam's running means made
the fused Adam step 6x slower by step 2000 before ``pdrl.hardware``). This times ``pdrl.fit``'s default path of
``configs/shallow_mnist.yaml`` from a fresh model and from each given checkpoint (weights and Adam state of a
``pdrl.fit`` run of the same model), interleaved in one process, so that a difference between them is the state's
and not the machine's. A checkpoint's objective does not matter: every variant trains the config's objective, or
each of ``--objectives`` in turn (every start with every objective), so that one objective's run can be told apart
from the machine's speed on the day it ran.

    python bench/shallow_state_speed.py --threads 2 CKPT [CKPT ...]     # bench/results/shallow_state_speed_<CPU>.md
    python bench/shallow_state_speed.py --threads 2 --objectives cpc pcc drfc CKPT
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: bench.machine from the repository root
from bench.machine import cpu_tag, describe  # noqa: E402
from bench.report_file import write_markdown  # noqa: E402
from bench.shallow_fit_runner import pdrl_fit_runner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", type=Path, nargs="*")
    parser.add_argument("--objectives", nargs="+", default=[None], help="default: the config's objective")
    parser.add_argument("--root", default="data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.out = args.out or Path(__file__).parent / "results" / f"shallow_state_speed_{cpu_tag()}.md"
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    starts = {"fresh model (step 0)": (None, 0)}
    for checkpoint in args.checkpoints:
        step = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)["global_step"]  # no full read
        starts[f"`{checkpoint.name}` (step {step})"] = (checkpoint, step)
    runners = {}
    for start, (checkpoint, step) in starts.items():
        for objective in args.objectives:
            name = start if objective is None else f"{start}, {objective}"
            runners[name] = pdrl_fit_runner(args.root, checkpoint, step, objective)[0]
    for run in runners.values():
        run(5)  # the first call compiles
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(args.rounds):
        for name in list(runners) if round_index % 2 == 0 else list(reversed(runners)):
            begin = time.perf_counter()
            runners[name](args.steps)
            times[name].append((time.perf_counter() - begin) / args.steps * 1000)
    first = statistics.median(next(iter(times.values())))
    lines = [
        "# Shallow MNIST: ms per step of pdrl.fit's default path, from a fresh model and from long runs' states",
        "",
        f"Machine: {describe()}. Load average before: {load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min); "
        f"after: {os.getloadavg()[0]:.2f}. Date: {time.strftime('%Y-%m-%d %H:%M')}. Threads: {args.threads}.",
        "",
        f"Command: `python {' '.join(['bench/shallow_state_speed.py', *sys.argv[1:]])}`",
        "",
        f"{args.rounds} interleaved rounds of {args.steps} steps per variant (each round one `Trainer.fit` call, so "
        "the fit's start is in every figure); the median round is reported.",
        "",
        "| start | ms per step | against the first row | every round |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{value:.1f}" for value in values)
        lines.append(f"| {name} | {median:.1f} | {median / first:.2f} | {rounds} |")
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
