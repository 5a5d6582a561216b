"""Benchmark: where ``pdrl.fit``'s shallow MNIST step spends its time, by kind of work.

``bench/shallow_speed.py`` times the whole step against a bare float32 loop and against a floor built from the step's
parts timed alone. This one profiles the real step (``configs/shallow_mnist.yaml`` through ``pdrl.fit``, its default
fast path, logger, checkpoints and probe off, as there) with ``torch.profiler`` and sums the ops' own (self) time
into kinds:

- ``matrix products``: ``aten::mm`` / ``addmm`` / ``bmm`` (oneDNN's bf16 GEMMs under autocast);
- ``compiled kernels``: the code that ``torch.compile`` generated for the encoders (every op of their graphs that is
  not a matrix product: autocast's float32 -> bf16 weight copies and bf16 -> float32 gradient copies, ReLU, adds,
  concatenations, permutations, bias gradients), the self time of inductor's ``CompiledFxGraph`` calls;
- ``Adam``: the fused Adam step (``aten::_fused_adam_``);
- ``everything else``: the critic, the loss, the non-finite guard, autograd's engine and Lightning's loop.

Profiling adds its own cost, so the step's unprofiled time is given beside the profiled one. Each thread count in
``--threads`` runs in a process of its own, one after the other (the compiled kernels keep the thread count they were
compiled with); the Markdown report names the machine, the load and the command.

    python bench/shallow_step_profile.py --root path/to/data --threads 1 2
    # writes bench/results/shallow_step_profile_<CPU kind>.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: bench.machine from the repository root
from bench.machine import cpu_tag, describe  # noqa: E402
from bench.report_file import write_markdown  # noqa: E402
from bench.shallow_fit_runner import pdrl_fit_runner  # noqa: E402

KINDS = ("matrix products", "compiled kernels", "Adam", "everything else")
MATRIX_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
COMPILED_GRAPH = "## Call CompiledFxGraph"  # inductor's record_function name for one call of a compiled graph


def kind_of(op_name: str) -> str:
    """The kind of work (one of ``KINDS``) that a profiler event of this name does."""
    if op_name in MATRIX_PRODUCTS:
        return "matrix products"
    if op_name.startswith(COMPILED_GRAPH):
        return "compiled kernels"
    if op_name.startswith("aten::_fused_adam"):
        return "Adam"
    return "everything else"


def self_time_by_kind(events: list[tuple[str, float]]) -> dict[str, float]:
    """Sum ``(op name, self time)`` pairs by kind; every kind is present, so the sum is the total self time."""
    totals = dict.fromkeys(KINDS, 0.0)
    for name, self_time in events:
        totals[kind_of(name)] += self_time
    return totals


def profile_steps(run, steps: int) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """ms per step of each kind over ``steps`` steps of ``run`` (already compiled and warm), under the profiler; and
    the five ops of ``everything else`` with the most self time, with their ms per step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        run(steps)
    events = [(event.key, event.self_cpu_time_total / 1000 / steps) for event in profiler.key_averages()]
    others = sorted((event for event in events if kind_of(event[0]) == "everything else"), key=lambda e: -e[1])
    return self_time_by_kind(events), others[:5]


def measure(root: str, threads: int, steps: int) -> dict:
    """One thread count, in this process: the step's unprofiled ms and its profiled ms per kind of work."""
    torch.set_num_threads(threads)
    run, _ = pdrl_fit_runner(root)
    run(5)  # the first call compiles
    begin = time.perf_counter()
    run(steps)
    unprofiled = (time.perf_counter() - begin) / steps * 1000
    kinds, others = profile_steps(run, steps)
    return {"threads": threads, "unprofiled": unprofiled, "kinds": kinds, "others": others}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=20, help="steps timed, and steps profiled, per thread count")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process of one count
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.root, args.one, args.steps)))
        return
    args.out = args.out or Path(__file__).parent / "results" / f"shallow_step_profile_{cpu_tag()}.md"
    load_before = os.getloadavg()
    rows = []
    for threads in args.threads:
        child = [sys.executable, __file__, "--root", args.root, "--steps", str(args.steps), "--one", str(threads)]
        result = subprocess.run(child, capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    lines = [
        "# Shallow MNIST: where pdrl.fit's training step spends its time",
        "",
        f"Machine: {describe()}. Load average before: {load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min); "
        f"after: {os.getloadavg()[0]:.2f}. Date: {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"Command: `python {' '.join(['bench/shallow_step_profile.py', *sys.argv[1:]])}`",
        "",
        "`configs/shallow_mnist.yaml` (two 30-coupling RealNVPs, bilinear critic, PCC, batch 128) through `pdrl.fit`, "
        f"default fast path, a fresh model; {args.steps} steps timed, then {args.steps} steps profiled with "
        "`torch.profiler`, per thread count. ms per step of each kind of work (ops' self time; see the script's "
        "docstring for what each kind holds):",
        "",
        "| threads | step, unprofiled | step, profiled | " + " | ".join(KINDS) + " |",
        "|---|---|---|" + "---|" * len(KINDS),
    ]
    for row in rows:
        profiled = sum(row["kinds"].values())
        shares = " | ".join(f"{row['kinds'][kind]:.1f} ({row['kinds'][kind] / profiled:.0%})" for kind in KINDS)
        lines.append(f"| {row['threads']} | {row['unprofiled']:.1f} | {profiled:.1f} | {shares} |")
    lines += ["", "The largest ops in `everything else` (ms per step):", ""]
    for row in rows:
        largest = ", ".join(f"`{name}` {ms:.1f}" for name, ms in row["others"])
        lines.append(f"- {row['threads']} thread(s): {largest}")
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
