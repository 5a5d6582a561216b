"""Vanilla GAN vs GAN + MICE on 25 Gaussians, over several seeds, with the committed configs.

Each run is ``python -m pdrl.fit --config configs/<config>.yaml`` with only the seed (``seed_everything`` and
``data.seed``), the step budget and the logging switched; every evaluation (modes covered, high-quality share
on 2500 generated samples) is recorded. Lightning counts both optimizer steps of an iteration, so
``max_steps = 2 * iterations``.

    # one process per variant (1 thread each), then the summary:
    python bench/gan_25gaussians.py run --variant vanilla --seeds 0 1 2 &
    python bench/gan_25gaussians.py run --variant mice --seeds 0 1 2 &
    wait; python bench/gan_25gaussians.py summarize

Writes ``bench/results/gan_25gaussians_<variant>.csv`` (every evaluation), the final scatter plots
``bench/results/gan_25gaussians_<variant>_seed<k>.png`` and ``bench/results/gan_25gaussians.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import tempfile
import time

import torch

from pdrl.fit import main as fit

CONFIGS = {"vanilla": "configs/gan_25gaussians.yaml", "mice": "configs/gan_25gaussians_mice.yaml"}
RESULTS = "bench/results"
FIELDS = ["variant", "seed", "iteration", "modes_covered", "high_quality_share", "wall_s"]


def run(variant: str, seeds: list[int], max_steps: int) -> None:
    torch.set_num_threads(1)
    os.makedirs(RESULTS, exist_ok=True)
    csv_path = f"{RESULTS}/gan_25gaussians_{variant}.csv"
    with open(csv_path, "w", newline="") as file:
        csv.DictWriter(file, FIELDS).writeheader()
    for seed in seeds:
        with tempfile.TemporaryDirectory() as run_dir:
            csv_logger = {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": run_dir}}
            start = time.time()
            cli = fit(
                [
                    "--config",
                    CONFIGS[variant],
                    "--seed_everything",
                    str(seed),
                    "--data.seed",
                    str(seed),
                    *(["--trainer.max_steps", str(max_steps)] if max_steps else []),
                    "--trainer.logger",
                    json.dumps(csv_logger),
                    "--trainer.enable_checkpointing",
                    "false",
                    "--trainer.enable_progress_bar",
                    "false",
                    "--trainer.default_root_dir",
                    run_dir,
                ]
            )
            wall = time.time() - start
            shutil.copy(
                os.path.join(run_dir, f"samples_step{cli.trainer.global_step}.png"),
                f"{RESULTS}/gan_25gaussians_{variant}_seed{seed}.png",
            )
            with open(os.path.join(cli.trainer.logger.log_dir, "metrics.csv"), newline="") as file:
                evaluations = [row for row in csv.DictReader(file) if row.get("val/modes_covered")]
        rows = [
            {
                "variant": variant,
                "seed": seed,
                "iteration": int(row["step"]) + 1,  # the logging step counts iterations from 0
                "modes_covered": int(float(row["val/modes_covered"])),
                "high_quality_share": round(float(row["val/high_quality_share"]), 4),
                "wall_s": round(wall, 1),
            }
            for row in evaluations
        ]
        with open(csv_path, "a", newline="") as file:
            csv.DictWriter(file, FIELDS).writerows(rows)
        print(rows[-1], flush=True)


def summarize() -> None:
    rows = []
    for variant in CONFIGS:
        with open(f"{RESULTS}/gan_25gaussians_{variant}.csv", newline="") as file:
            rows += list(csv.DictReader(file))
    lines = [
        "# Vanilla GAN vs GAN + MICE on 25 Gaussians",
        "",
        f"Machine: 2-core CPU shared with other jobs, no GPU ({platform.processor() or platform.machine()}), "
        "1 torch thread per process, the two variants run as two processes side by side.",
        "",
        "Command: `python bench/gan_25gaussians.py run --variant vanilla --seeds 0 1 2 & "
        "python bench/gan_25gaussians.py run --variant mice --seeds 0 1 2 & wait; "
        "python bench/gan_25gaussians.py summarize` (configs `configs/gan_25gaussians.yaml` and "
        "`configs/gan_25gaussians_mice.yaml`, only the seed changed).",
        "",
        "Data: 5 x 5 grid, spacing 2 (centres in {-4, -2, 0, 2, 4}^2), std 0.05. Metrics on 2500 generated samples: "
        "a sample is high quality within 3 std (0.15) of its nearest centre; a mode is covered when at least 20 "
        "high-quality samples fall on it.",
        "",
        "## Final evaluation per seed",
        "",
        "| variant | seed | iterations | modes covered (of 25) | high-quality share | wall time of the run (s) |",
        "|---|---|---|---|---|---|",
    ]
    finals = {}
    for variant in CONFIGS:
        for seed in sorted({row["seed"] for row in rows if row["variant"] == variant}, key=int):
            run_rows = [row for row in rows if row["variant"] == variant and row["seed"] == seed]
            final = run_rows[-1]
            finals.setdefault(variant, []).append(final)
            lines.append(
                f"| {variant} | {seed} | {final['iteration']} | {final['modes_covered']} | "
                f"{float(final['high_quality_share']):.3f} | {final['wall_s']} |"
            )
    lines += ["", "## Mean (std) over seeds", "", "| variant | modes covered | high-quality share |", "|---|---|---|"]
    for variant, variant_finals in finals.items():
        modes = [float(row["modes_covered"]) for row in variant_finals]
        quality = [float(row["high_quality_share"]) for row in variant_finals]
        lines.append(
            f"| {variant} | {statistics.mean(modes):.1f} ({_std(modes):.1f}) | "
            f"{statistics.mean(quality):.3f} ({_std(quality):.3f}) |"
        )
    lines += [
        "",
        "Every evaluation (every 500 iterations) is in `gan_25gaussians_<variant>.csv`; the final samples of each run "
        "are in `gan_25gaussians_<variant>_seed<k>.png`.",
        "",
        "Steps: 4000 iterations of batch 256 per run (Lightning's `max_steps: 8000` counts the D and the G step). "
        "Wall times reflect the shared machine (load average 10-16 from the other engineers' jobs), not the cost of "
        "the runs: about 1-2 CPU-minutes each (the vanilla process used 3.9 CPU-minutes for its 3 runs).",
    ]
    if os.path.exists(f"{RESULTS}/gan_25gaussians_notes.md"):
        with open(f"{RESULTS}/gan_25gaussians_notes.md") as file:
            lines += ["", file.read().strip()]
    with open(f"{RESULTS}/gan_25gaussians.md", "w") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "summarize"])
    parser.add_argument("--variant", choices=sorted(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--max_steps", type=int, default=None, help="optimizer steps (2 per iteration); default: the config's"
    )
    arguments = parser.parse_args()
    if arguments.command == "run":
        if arguments.variant is None:
            parser.error("run needs --variant vanilla or --variant mice")
        run(arguments.variant, arguments.seeds, arguments.max_steps)
    else:
        summarize()
