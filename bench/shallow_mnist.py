"""Benchmark: the shallow task on real MNIST (PD paper Sec. 5.2), its protocol and the fast path's parity.

``run`` trains ``configs/shallow_mnist.yaml`` (two 30-coupling RealNVPs, bilinear critic, Adam 1e-4, batch 128)
for one objective and seed, with the linear probe (the paper's saga protocol) at step 0 (the untrained encoder) and
every ``--probe-every`` steps, and writes the probe history and wall time to ``<out>/<tag>.json`` (by default
bench/results/shallow_runs/, committed, so the tables below can always be rebuilt from their data). ``--max-steps``
ends the run at a step; ``--minutes`` at a wall-time budget, whichever comes first.

``--solver lbfgs`` probes with pdrl's L-BFGS instead of the paper's saga (on a GPU, where saga's CPU fits would take
longer than the training). The run trains on a GPU where there is one (Lightning's ``accelerator: auto``); its JSON
names the device.

``parity`` tabulates the probe accuracy of the fast path against the float32 path (mean ± std over seeds);
``protocol`` tabulates and plots the full-protocol curves of CPC, PCC and D-RFC from the runs whose tag starts with
``--prefix`` (``protocol_``; ``bench/gpu_protocol.sh`` writes ``gpu_protocol_``) into ``<--report>.md`` and ``.png``.
Both read the runs in ``--out`` and write to its parent folder (by default bench/results/).

    python bench/shallow_mnist.py run --objective pcc --seed 0 --fast false --max-steps 2000 --probe-every 1000 \\
        --tag parity_fastfalse_seed0 --root path/to/data
    python bench/shallow_mnist.py parity
    python bench/shallow_mnist.py run --objective cpc --max-steps 21000 --probe-every 1000 --minutes 85 \\
        --tag protocol_cpc
    python bench/shallow_mnist.py protocol
    python bench/shallow_mnist.py protocol --prefix gpu_protocol_ --report shallow_mnist_gpu
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: bench.machine from the repository root
from bench.machine import describe  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CONFIG = Path(__file__).parents[1] / "configs" / "shallow_mnist.yaml"
PAPER_STEPS = 21000
EARLIER = "earlier"  # a subfolder of the runs' folder: protocol runs that a rerun replaced in the table
# runs from before the machine was recorded; bench/results/shallow_speed_avx512_bf16.md of the same days says which CPU
UNRECORDED_MACHINE = "not recorded (an AVX512-BF16 x86_64 CPU, 2 cores: shallow_speed_avx512_bf16.md of those days)"


def wall_time_budget(minutes: float) -> str:
    """``minutes`` as Lightning's ``max_time`` wants it, DD:HH:MM:SS (85 -> '00:01:25:00')."""
    hours, whole_minutes = divmod(int(minutes), 60)
    return f"00:{hours:02d}:{whole_minutes:02d}:00"


def run(args: argparse.Namespace) -> None:
    from pdrl.callbacks.linear_probe import LinearProbe
    from pdrl.fit import main

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    cli = main([
        "--config", str(CONFIG), "--seed_everything", str(args.seed),
        "--model.objective", args.objective, "--model.fast", args.fast,
        "--data.root", args.root, "--data.download", "false",
        "--trainer.max_steps", str(args.max_steps),
        "--trainer.max_time", wall_time_budget(args.minutes),
        "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(args.workdir / "logs"), "--trainer.logger.name", args.tag,
        "--trainer.default_root_dir", str(args.workdir / args.tag),
        "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks.init_args.every_n_steps", str(args.probe_every),
        "--trainer.callbacks.init_args.solver", args.solver,
    ])  # fmt: skip
    probe = next(callback for callback in cli.trainer.callbacks if isinstance(callback, LinearProbe))
    device = cli.trainer.strategy.root_device
    result = {
        "tag": args.tag, "objective": args.objective, "seed": args.seed, "fast": args.fast == "true",
        "steps": cli.trainer.global_step, "wall_seconds": time.perf_counter() - started, "threads": args.threads,
        "machine": describe(), "load_before": load_before, "load_after": os.getloadavg()[0], "solver": probe.solver,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "history": probe.history, "raw_pixel_accuracy": probe.raw_pixel_accuracy,
        "command": "python bench/shallow_mnist.py " + " ".join(sys.argv[1:]),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({key: value for key, value in result.items() if key != "history"}))


def load_runs(out: Path, prefix: str) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(out.glob(f"{prefix}*.json"))]


def machines(runs: list[dict]) -> str:
    """The machines that the runs were made on (no GPU in any of them), as one phrase."""
    return "; ".join(sorted({entry.get("machine", UNRECORDED_MACHINE) for entry in runs})) + "; no GPU"


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def parity(args: argparse.Namespace) -> None:
    """One table per machine (bf16 products differ between CPUs): each path's accuracy as mean ± std over seeds."""
    runs = load_runs(args.out, "parity_")
    if not runs:
        raise SystemExit(f"No parity runs (parity_*.json) in {args.out}: run `bash bench/shallow_parity.sh` first.")
    lines = ["# Shallow MNIST: the fast path learns what the float32 path learns", ""]
    by_machine: dict[str, list[dict]] = {}
    for entry in runs:
        by_machine.setdefault(entry.get("machine", UNRECORDED_MACHINE), []).append(entry)
    for machine, group in by_machine.items():
        lines += [f"## {machine}", "", *parity_table(group)]
    (args.out.parent / "shallow_parity.md").write_text("\n".join(lines))
    print("\n".join(lines))


def parity_table(runs: list[dict]) -> list[str]:
    """The parity runs of one machine: the setting, a row per path, the runs and the raw-pixel baseline."""
    lengths = sorted({entry["steps"] for entry in runs})
    probed = sorted(set.intersection(*({h["step"] for h in entry["history"]} for entry in runs)))
    lines = [
        f"Machine: {machines(runs)}. Setting: `configs/shallow_mnist.yaml`, PCC, "
        f"{' / '.join(str(n) for n in lengths)} steps, probe (saga, the paper's protocol) at steps "
        f"{', '.join(str(step) for step in probed)}. `fast: true` is bf16 autocast (where the CPU has native bf16) + "
        "torch.compile + fused Adam; `fast: false` is float32 eager with the same Adam. Each seed sets the initial "
        "weights and the batch order of both paths. Accuracies: mean ± std over seeds.",
        "",
        "| path | seeds | threads | "
        + " | ".join(f"step {step}" + (" (untrained)" if step == 0 else "") for step in probed)
        + " | wall time per run (min) | load avg (before/after) |",
        "|---|---|---|" + "---|" * len(probed) + "---|---|",
    ]
    for fast in (False, True):
        group = [entry for entry in runs if entry["fast"] == fast]
        if not group:
            continue
        accuracies = [
            mean_std([next(h["accuracy"] for h in entry["history"] if h["step"] == step) for entry in group])
            for step in probed
        ]
        minutes = ", ".join(f"{entry['wall_seconds'] / 60:.1f}" for entry in group)
        loads = ", ".join(f"{entry['load_before']:.1f}/{entry['load_after']:.1f}" for entry in group)
        threads = ", ".join(sorted({str(entry["threads"]) for entry in group}))
        name = "fast" if fast else "float32"
        lines.append(
            f"| {name} | {', '.join(str(e['seed']) for e in group)} | {threads} | {' | '.join(accuracies)} | "
            f"{minutes} | {loads} |"
        )
    lines += ["", "Per run:", ""]
    lines += [f"- `{e['command']}`: {[(h['step'], round(h['accuracy'], 4)) for h in e['history']]}, "
              f"{e['steps']} steps, {e['wall_seconds']:.0f} s" for e in runs]  # fmt: skip
    raw = {e["raw_pixel_accuracy"] for e in runs}
    return [*lines, "", f"Raw top-half pixels, same protocol: {', '.join(f'{r:.4f}' for r in raw)}.", ""]


CSV_HEADER = ["objective", "seed", "step", "accuracy", "raw_pixels", "solver"]  # the shallow CIFAR-10 csv's


def write_csv(runs: list[dict], path: Path) -> None:
    """One row per probe of every run (step 0 is the untrained encoder), the header of the shallow CIFAR-10 csv."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_HEADER)
        for entry in runs:
            for h in entry["history"]:
                writer.writerow([entry["objective"], entry["seed"], h["step"], f"{h['accuracy']:.4f}",
                                 f"{entry['raw_pixel_accuracy']:.4f}", entry.get("solver", "saga")])  # fmt: skip


def protocol(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs(args.out, args.prefix)
    devices = sorted({entry.get("device", "cpu") for entry in runs})
    on = " and ".join("2-core CPU" if device == "cpu" else device for device in devices)
    figure, axes = plt.subplots(figsize=(6, 4))
    lines = [
        f"# Shallow MNIST: the PD paper's protocol, CPC vs PCC vs D-RFC, on {on}",
        "",
        "Machine: per run, in the table (the device trained on: "
        + ", ".join(f"`{device}`" for device in devices)
        + "). Setting: `configs/shallow_mnist.yaml` (two 30-coupling RealNVPs 512-512, init std 1e-4, bilinear "
        "critic, Adam 1e-4, batch 128, the default fast path), seed 0, probe (C = 10; solver per run: saga is the "
        "paper's protocol, lbfgs pdrl's fit to the optimum) at step 0 (the untrained encoder) and every 1000 steps.",
        "",
        "| objective | steps | wall time (min) | threads | probe | machine | load (before/after) | step 0 | last "
        "| best | curve |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in runs:
        steps = [h["step"] for h in entry["history"]]
        accuracy = [h["accuracy"] for h in entry["history"]]
        axes.plot(steps, accuracy, marker=".", label=entry["objective"].upper())
        curve = ", ".join(f"{s}: {a:.4f}" for s, a in zip(steps, accuracy, strict=True))
        lines.append(
            f"| {entry['objective'].upper()} | {entry['steps']} | {entry['wall_seconds'] / 60:.1f} "
            f"| {entry['threads']} | {entry.get('solver', 'saga')} | {entry.get('machine', UNRECORDED_MACHINE)} "
            f"| {entry['load_before']:.1f}/{entry['load_after']:.1f} | {accuracy[0]:.4f} | {accuracy[-1]:.4f} | "
            f"{max(accuracy):.4f} | {curve} |"
        )
    raw = runs[0]["raw_pixel_accuracy"] if runs else float("nan")
    axes.axhline(raw, color="grey", linestyle="--", label=f"raw top half {raw:.4f}")
    axes.set(xlabel="training step", ylabel="linear probe test accuracy", title=f"Shallow MNIST, {on}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(args.out.parent / f"{args.report}.png", dpi=120)
    write_csv(runs, args.out.parent / f"{args.report}.csv")
    lines += [
        "",
        f"Raw top-half pixels: {raw:.4f}. Curve: `{args.report}.png`; every probe: `{args.report}.csv`. Commands:",
        "",
    ]
    lines += [f"- `{entry['command']}`" for entry in runs]
    lines += ["", "How each run ended:", ""]
    for entry in runs:
        ended = (
            f"stopped at its wall-time budget at step {entry['steps']} of {PAPER_STEPS}"
            if entry["steps"] < PAPER_STEPS
            else f"ran all {PAPER_STEPS} steps"
        )
        note = f"; {entry['provenance']}" if "provenance" in entry else ""
        lines.append(f"- {entry['objective'].upper()}: {ended}{note}.")
    earlier = load_runs(args.out / EARLIER, args.prefix)
    if earlier:
        folder = f"{args.out.name}/{EARLIER}/"
        lines += ["", f"Earlier runs of the same protocol, replaced above by reruns (data in `{folder}`):", ""]
        lines += [
            f"- {entry['objective'].upper()}: {entry['steps']} steps in {entry['wall_seconds'] / 60:.1f} min on "
            f"{entry.get('machine', UNRECORDED_MACHINE)}; probe at step 0 / 1000 / last: "
            + " / ".join(f"{entry['history'][i]['accuracy']:.4f}" for i in (0, 1, -1))
            + (f"; {entry['provenance']}" if "provenance" in entry else "")
            for entry in earlier
        ]
    (args.out.parent / f"{args.report}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "parity", "protocol"))
    parser.add_argument("--objective", default="pcc", choices=("cpc", "pcc", "drfc"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", default="true", choices=("true", "false"))
    parser.add_argument("--max-steps", type=int, default=21000)
    parser.add_argument("--minutes", type=float, default=59.0, help="wall-time budget of the training")
    parser.add_argument("--probe-every", type=int, default=1000)
    parser.add_argument("--root", default="data", help="folder holding MNIST/raw")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS / "shallow_runs",
        help="folder of the runs' JSON files; the reports (parity, protocol) go to its parent folder",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("runs/bench_shallow"),
        help="folder of the runs' checkpoints and CSV logs (not committed; kept apart from --out)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default=None)
    parser.add_argument("--solver", default="saga", choices=("saga", "lbfgs"), help="the linear probe's solver")
    parser.add_argument("--prefix", default="protocol_", help="protocol: the runs whose tag starts with this")
    parser.add_argument("--report", default="shallow_mnist", help="protocol: the report's file name, no suffix")
    arguments = parser.parse_args()
    arguments.tag = arguments.tag or f"{arguments.objective}_seed{arguments.seed}_fast{arguments.fast}"
    {"run": run, "parity": parity, "protocol": protocol}[arguments.action](arguments)
