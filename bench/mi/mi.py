"""The MI estimation benchmark (PD paper Figure 1, MICE's within-batch extension), measured.

Three commands::

    python -m bench.mi sweep --estimators all --tasks gaussian cubic --critic separable --seeds 0 --out DIR
    python -m bench.mi report --out DIR [--runs-from DIR_A DIR_B ...]
    python -m bench.mi throughput --steps 2000 --rounds 3 --out FILE.md

``sweep`` trains every chosen estimator (``all``, ``headline`` or names) on every task and seed through the
MI staircase (2, 4, 6, 8, 10 nats, 4000 steps each), saves each run under ``DIR/runs/`` and writes the
report of all runs in ``DIR`` (several sweeps, e.g. one per critic, may fill one folder, one process each).
``report`` only rewrites the report (:mod:`bench.mi.mi_report`); ``report --runs-from DIR ...`` writes one
report across several sweep folders (e.g. one per critic) into ``--out`` without copying their runs.
``throughput`` measures the lean loop and the Lightning engine against a plain reference loop
(:mod:`bench.mi.mi_throughput`).

Critics (``--critic``, :mod:`bench.mi.mi_settings`): ``separable`` (the SMILE code's default, three hidden
layers of 256), ``separable_2h`` (two hidden layers), ``joint`` (PD paper Figure 1: concat 512-512, batch
128, lr 1e-3); ``--hidden-dims``, ``--batch-size`` and ``--lr`` override a critic's own values.
Data (``--data``): ``standard`` or ``mice_extension`` (MICE paper Section 5.2: c = 0.1, full staircase).

Engines: ``--engine ensemble`` (default) trains the chosen estimators side by side on one data stream with
their critics (separable or joint) stacked into one set of ``bmm`` calls; ``lean`` runs each estimator in
a plain PyTorch loop; ``lightning`` on a ``Trainer``. Each saved run stores the command that reruns it with
its own engine.

The modules: settings (:mod:`~bench.mi.mi_settings`), stacked critics (:mod:`~bench.mi.mi_stacked`),
training loops (:mod:`~bench.mi.mi_engines`), runs and provenance (:mod:`~bench.mi.mi_runs`),
statistics (:mod:`~bench.mi.mi_stats`), report, figures and findings (:mod:`~bench.mi.mi_report`,
:mod:`~bench.mi.mi_plots`, :mod:`~bench.mi.mi_writeup`), throughput (:mod:`~bench.mi.mi_throughput`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bench.mi.mi_engines import RunResult, train_ensemble, train_lean, train_lightning, train_plain
from bench.mi.mi_report import write_report
from bench.mi.mi_runs import ENGINES, run_ensemble, run_one
from bench.mi.mi_settings import CRITIC_PRESETS, DATA_SETTINGS, ESTIMATORS, HEADLINE, Estimator, Setting, run_name
from bench.mi.mi_stats import ema, stage_statistics
from bench.mi.mi_throughput import run_throughput
from pdrl.data.gaussians import TASKS
from pdrl.hardware import keep_freed_memory

__all__ = [
    "CRITIC_PRESETS", "DATA_SETTINGS", "ESTIMATORS", "HEADLINE", "Estimator", "RunResult", "Setting", "ema",
    "main", "stage_statistics", "train_ensemble", "train_lean", "train_lightning", "train_plain",
]  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.mi", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def add_setting(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--critic", choices=list(CRITIC_PRESETS), default="separable", help="a named critic")
        sub.add_argument("--hidden-dims", type=int, nargs="+", default=None, help="override the critic's widths")
        sub.add_argument("--embed-dim", type=int, default=None)
        sub.add_argument("--batch-size", type=int, default=None, help="default: the critic's (64 or 128)")
        sub.add_argument("--lr", type=float, default=None, help="default: the critic's (5e-4 or 1e-3)")
        sub.add_argument("--dim", type=int, default=20)
        sub.add_argument("--mi-levels", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0, 10.0])
        sub.add_argument("--steps-per-level", type=int, default=4000)
        sub.add_argument("--data", choices=list(DATA_SETTINGS), default="standard", help="a named data setting")
        sub.add_argument("--batch-correlation", type=float, default=None, help="MICE's within-batch chain c")
        sub.add_argument("--batch-correlation-uniform", action="store_true", help="c ~ U[0, --batch-correlation]")
        sub.add_argument("--heldout-batches", type=int, default=4)
        sub.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (data and init)")
        sub.add_argument("--device", default="cpu", help="cpu or cuda")
        sub.add_argument("--threads", type=int, default=1, help="torch CPU threads")

    sweep = commands.add_parser("sweep", help="train estimators x tasks x seeds, save the runs, write the report")
    sweep.add_argument(
        "--estimators", nargs="+", default=["all"],
        help=f"'all', 'headline' ({' '.join(HEADLINE)}) or some of {', '.join(ESTIMATORS)}",
    )  # fmt: skip
    sweep.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    sweep.add_argument(
        "--engine", choices=ENGINES, default="ensemble",
        help="ensemble: all estimators side by side, critics stacked; lean: one plain loop each; lightning: Trainer",
    )  # fmt: skip
    sweep.add_argument(
        "--compile", action="store_true", help="ensemble engine: torch.compile the stacked critics (same float32 math)"
    )
    sweep.add_argument("--skip-existing", action="store_true", help="keep runs already saved in --out")
    sweep.add_argument("--window", type=int, default=1000, help="last steps of each stage in the statistics")
    sweep.add_argument("--wandb", action="store_true", help="log runs and report to W&B (project pdrl)")
    sweep.add_argument("--out", type=Path, required=True)
    add_setting(sweep)

    report = commands.add_parser("report", help="rewrite the tables, figures and findings from the runs in --out")
    report.add_argument("--window", type=int, default=1000)
    report.add_argument("--wandb", action="store_true")
    report.add_argument("--out", type=Path, required=True)
    report.add_argument(
        "--runs-from", type=Path, nargs="+", default=[], help="also the runs of these folders: one report across them"
    )

    throughput = commands.add_parser("throughput", help="steps/s of the lean loop and Lightning vs a plain loop")
    throughput.add_argument("--estimator", default="smile_tau1", choices=list(ESTIMATORS))
    throughput.add_argument("--steps", type=int, default=2000)
    throughput.add_argument("--rounds", type=int, default=3)
    throughput.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    add_setting(throughput)
    return parser


def _setting(args: argparse.Namespace, task: str, seed: int) -> Setting:
    data = dict(DATA_SETTINGS[args.data])
    if args.batch_correlation is not None:
        data = {
            "batch_correlation": args.batch_correlation,
            "batch_correlation_uniform": args.batch_correlation_uniform,
        }
    return Setting.from_preset(
        args.critic,
        task=task,
        dim=args.dim,
        batch_size=args.batch_size,
        lr=args.lr,
        hidden_dims=None if args.hidden_dims is None else list(args.hidden_dims),
        embed_dim=args.embed_dim,
        mi_levels=list(args.mi_levels),
        steps_per_level=args.steps_per_level,
        heldout_batches=args.heldout_batches,
        seed=seed,
        **data,
    )


def _estimators(names: list[str]) -> list[str]:
    chosen = list(ESTIMATORS) if names == ["all"] else HEADLINE if names == ["headline"] else names
    unknown = [name for name in chosen if name not in ESTIMATORS]
    if unknown:
        raise SystemExit(
            f"Unknown estimator(s) {', '.join(unknown)}: choose 'all', 'headline' or some of {', '.join(ESTIMATORS)}."
        )
    return chosen


def main(argv: Sequence[str] | None = None) -> Any:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "report":
        args.out.mkdir(parents=True, exist_ok=True)
        return write_report(args.out, args.window, args.wandb, args.runs_from)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # the joint critic's >32 MiB activations: 2x faster on CPU, same numbers
    if args.command == "throughput":
        setting = _setting(args, "gaussian", args.seeds[0])
        setting = replace(setting, mi_levels=setting.mi_levels[:1], steps_per_level=args.steps, heldout_batches=0)
        command = shlex.join(["python", "-m", "bench.mi", *argv])
        return run_throughput(args.out, args.estimator, setting, args.rounds, command)
    estimators = _estimators(args.estimators)
    if args.compile and args.engine != "ensemble":
        raise SystemExit(
            f"--compile compiles the ensemble engine's stacked critics; drop it for --engine {args.engine}."
        )
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for task in args.tasks:
            setting = _setting(args, task, seed)
            todo = [
                name for name in estimators
                if not (args.skip_existing and (args.out / "runs" / f"{run_name(setting, name)}.json").exists())
            ]  # fmt: skip
            if args.engine == "ensemble":
                results = (
                    run_ensemble(todo, setting, args.out, args.device, args.wandb, args.window, args.compile)
                    if todo
                    else []
                )
            else:
                results = [
                    run_one(name, setting, args.out, args.engine, args.device, args.wandb, args.window) for name in todo
                ]
            for name, result in zip(todo, results, strict=True):
                tail = result.estimates[-min(100, len(result.estimates)) :].mean()
                print(f"{run_name(setting, name)}: {result.wall_s:.1f} s, last-100 mean {tail:.3f}", flush=True)
    return write_report(args.out, args.window, args.wandb)
