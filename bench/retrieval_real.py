"""Cross-modal retrieval (PD paper Application III) on real data, a paired-view proxy: top vs bottom image halves.

The paper matches speech2vec (audio) against word2vec (text) vectors of the same words, 1:5. Those vectors cannot be
downloaded here, so this benchmark makes two "modalities" out of real images instead: every image of MNIST or
CIFAR-10 is a "word" (``train_000123``: image 123 of the train split; ``test_000045``: image 45 of the test split),
its top half is the "audio" vector and its bottom half the "text" vector, each reduced to 100 dimensions by a PCA
(scikit-learn, ``svd_solver="full"``, no whitening) fitted on the selected train images only. Pixels are /255 and
flattened in (H, W, C) order: MNIST halves are 14 x 28 = 392 values, CIFAR-10 halves 16 x 32 x 3 = 1536.

Sizes are the paper's by default: ``--num-train 32605`` train images (a subset of the train split drawn by
``--subset-seed``) and ``--num-test 5000`` test images (of the test split, same seed), 37605 words in all. Only
those images are written, and the test words are given to pdrl as ``--data.test_words_file``: pdrl's own split
(``split_test_words``) would otherwise hold out 5000 words drawn from *all* the words, train-split images included,
on whose halves the PCA was fitted. The script checks, before and after training, that pdrl's test words are
exactly the test-split images and share no word with its training words.

Each run is ``pdrl.fit.main`` on ``configs/retrieval.yaml`` (MLPs 100-512-512-128, batch 512, Adam 1e-3, 1:5
matching with candidates seed 0) with only these overrides: the two ``.vec`` paths and the test-words file, the
epochs (the paper's 100), ``--seed_everything`` (model initialisation and batch order; the data, the split and the
trials are the same for every seed), the objective (``pc``: ``pcc`` with ``balanced: false``, the paper's PC;
``drf``: ``drfc``), and the plumbing: no logger (no W&B), no progress bar, the run folder. pdrl is not told that
the vectors come from images.

``--shuffle-pairs`` is the chance-level control: the bottom-half vectors are permuted among the words by a
derangement (one cycle over the train words and one over the test words, so every pair is broken and the test
"text" vectors stay test images'), which must give about 20% (1 in 5). Its rows are ``<data>_shuffled`` in the csv.

    nice -n 19 env OMP_NUM_THREADS=1 python bench/retrieval_real.py --root path/to/data --data mnist \\
        --objectives pc drf --seeds 0 1 2 --epochs 100
    nice -n 19 env OMP_NUM_THREADS=1 python bench/retrieval_real.py --root path/to/data --data mnist \\
        --objectives pc drf --seeds 0 --epochs 100 --shuffle-pairs
    python bench/retrieval_real.py write --root path/to/data --data cifar10     # only write the .vec files
    python bench/retrieval_real.py report                                         # the .md from the .csv

Every run appends a row ``data,objective,seed,epochs,top1`` to ``<results>/retrieval_real.csv`` and its wall time,
steps, load average, machine and command to ``<results>/retrieval_real.runs.jsonl``; ``report`` builds
``<results>/retrieval_real.md`` from those two files. The ``.vec`` files go to ``<work>/<data>[_shuffled]/`` and are
reused while their settings (recorded in ``manifest.json`` there) are the same.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: bench.machine from the repository root
from bench.retrieval_vectors import (  # noqa: E402
    DATASETS,
    PAPER_NUM_TEST,
    PAPER_NUM_TRAIN,
    SHUFFLED,
    write_vector_files,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "retrieval.yaml"
RESULTS = REPO / "bench" / "results"
CSV_FIELDS = ["data", "objective", "seed", "epochs", "top1"]
OBJECTIVES = {  # the objective names of configs/retrieval.yaml's header
    "pc": ["--model.objective", "pcc", "--model.objective_args", "{balanced: false}"],  # the paper's PC
    "drf": ["--model.objective", "drfc", "--model.objective_args", "{}"],  # D-RF
}
PAPER_TOP1 = {"pc": 96.24, "drf": 92.26}  # PD paper Table 2 context, speech2vec -> word2vec, 100 epochs


# ----------------------------------------------------------------------------------------------------------------------
# Runs


def fit_args(paths: dict[str, str], objective: str, seed: int, epochs: int, run_dir: str | os.PathLike) -> list[str]:
    """``pdrl.fit`` arguments: configs/retrieval.yaml with the data paths, epochs, seed, objective (and plumbing)."""
    return [
        "--config", str(CONFIG),
        "--data.audio_path", paths["audio"], "--data.text_path", paths["text"],
        "--data.test_words_file", paths["test_words"],
        "--trainer.max_epochs", str(epochs), "--seed_everything", str(seed), *OBJECTIVES[objective],
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(run_dir),
    ]  # fmt: skip


def check_split(words: list[str], train_rows, test_rows, num_test: int) -> None:
    """pdrl's split must be: the test words are exactly the test-split images, no word both train and test."""
    train_words = {words[int(row)] for row in train_rows}
    test_words = {words[int(row)] for row in test_rows}
    problems = []
    if train_words & test_words:
        problems.append(f"{len(train_words & test_words)} words both train and test")
    if not all(w.startswith("train_") for w in train_words):
        problems.append("a training word that is not a train-split image")
    if not all(w.startswith("test_") for w in test_words) or len(test_words) != num_test:
        problems.append(f"test words are not the {num_test} test-split images")
    if problems:
        raise RuntimeError("retrieval_real: pdrl's train/test split is wrong: " + "; ".join(problems))


def run(args: argparse.Namespace) -> None:
    import torch

    from bench.machine import describe
    from pdrl.data.word_vectors import read_word_vectors, split_test_words
    from pdrl.fit import main as fit

    torch.set_num_threads(args.threads)
    name = args.data + (SHUFFLED if args.shuffle_pairs else "")
    paths = write_vector_files(
        args.root, args.data, Path(args.work) / name, dim=args.dim, num_train=args.num_train, num_test=args.num_test,
        subset_seed=args.subset_seed, shuffle_pairs=args.shuffle_pairs, cifar_folder_path=args.cifar_folder,
    )  # fmt: skip
    num_test = json.loads(Path(paths["manifest"]).read_text())["num_test_words"]
    words, _ = read_word_vectors(paths["audio"])
    check_split(words, *split_test_words(words, num_test, 0, paths["test_words"]), num_test)  # before training

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    csv_path, log_path = results / "retrieval_real.csv", results / "retrieval_real.runs.jsonl"
    if not csv_path.is_file():
        with open(csv_path, "w", newline="") as file:
            csv.DictWriter(file, CSV_FIELDS).writeheader()
    command = shlex.join(["python", "bench/retrieval_real.py", *sys.argv[1:]])
    for objective in args.objectives:
        for seed in args.seeds:
            run_dir = Path(args.work) / "runs" / f"{name}_{objective}_seed{seed}_{args.epochs}ep"
            arguments = fit_args(paths, objective, seed, args.epochs, run_dir)
            load_before, start = os.getloadavg(), time.time()
            argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when given args beside a command line
            try:
                cli = fit(arguments)
            finally:
                sys.argv = argv
            wall = time.time() - start
            datamodule = cli.datamodule
            check_split(datamodule.words, datamodule.train_rows, datamodule.test_rows, num_test)  # what it used
            top1 = float(cli.trainer.callback_metrics["val/top1_accuracy"])
            row = {"data": name, "objective": objective, "seed": seed, "epochs": args.epochs, "top1": round(top1, 4)}
            with open(csv_path, "a", newline="") as file:
                csv.DictWriter(file, CSV_FIELDS).writerow(row)
            record = {
                **row, "steps": cli.trainer.global_step, "wall_s": round(wall, 1),
                "s_per_step": round(wall / max(cli.trainer.global_step, 1), 4),
                "train_words": len(datamodule.train_rows), "test_words": len(datamodule.test_rows),
                "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
                "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "nice": os.nice(0), "machine": describe(), "command": command,
                "pdrl_fit": shlex.join(["python", "-m", "pdrl.fit", *arguments]),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            }  # fmt: skip
            with open(log_path, "a") as file:
                file.write(json.dumps(record) + "\n")
            print(f"retrieval_real: {record}", flush=True)
    report(results)


# ----------------------------------------------------------------------------------------------------------------------
# Report


def read_rows(results: Path) -> list[dict]:
    """The csv's rows, the last one of each (data, objective, seed, epochs) kept."""
    with open(results / "retrieval_real.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows or list(rows[0]) != CSV_FIELDS:
        raise SystemExit(
            f"retrieval_real: {results / 'retrieval_real.csv'} has no rows or not the header {CSV_FIELDS}."
        )
    latest = {}
    for row in rows:
        latest[(row["data"], row["objective"], int(row["seed"]), int(row["epochs"]))] = float(row["top1"])
    return [dict(zip(CSV_FIELDS, (*key, value), strict=True)) for key, value in latest.items()]


def synthetic_top1(results: Path) -> dict[str, str]:
    """The synthetic benchmark's top-1 per objective, at its most epochs (bench/results/retrieval_synthetic.csv)."""
    path = results / "retrieval_synthetic.csv"
    if not path.is_file():
        path = RESULTS / "retrieval_synthetic.csv"
    best: dict[str, tuple[int, float]] = {}
    if path.is_file():
        with open(path, newline="") as file:
            for row in csv.DictReader(file):
                epochs, top1 = int(row["epochs"]), float(row["top1_accuracy"])
                if row["objective"] not in best or epochs >= best[row["objective"]][0]:
                    best[row["objective"]] = (epochs, top1)
    return {name: f"{100 * top1:.2f}% ({epochs} ep)" for name, (epochs, top1) in best.items()}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def report(results: str | os.PathLike = RESULTS) -> str:
    """Write ``retrieval_real.md`` from ``retrieval_real.csv`` (and the runs' log, for times, load and commands)."""
    results = Path(results)
    rows = read_rows(results)
    records = []
    log_path = results / "retrieval_real.runs.jsonl"
    if log_path.is_file():
        records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    synthetic = synthetic_top1(results)
    groups: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    for row in rows:
        groups.setdefault((row["data"], row["objective"], row["epochs"]), []).append((row["seed"], row["top1"]))

    lines = [
        "# Cross-modal retrieval on real images, a paired-view proxy (1:5 matching, top-1 accuracy)",
        "",
        'Each image is a "word": its top half (100-d PCA) is the "audio" vector, its bottom half (100-d PCA) the '
        '"text" vector; the PCA is fitted on the train images only. 32605 train images (a seeded subset of the '
        "train split) and 5000 test images (of the test split) by default, the paper's 37605 words and 5000 held "
        "out; the test words are exactly the test images. `configs/retrieval.yaml` (MLPs 100-512-512-128, batch "
        "512, Adam 1e-3) through `pdrl.fit`, only the data paths, epochs, seed and objective changed (and no "
        "logger). Chance is 20%; `_shuffled` rows are the control with every pair broken (the bottom halves "
        "permuted by a derangement), which must sit at 20% (5000 trials: one binomial standard deviation is 0.57 "
        "points). Data generation, split and trials are fixed; seeds change the initialisation and batch order. "
        "How the vectors are made: the docstring of `bench/retrieval_real.py`.",
        "",
        "The paper's numbers are on speech2vec -> word2vec vectors and the synthetic ones on generated vectors "
        "(`retrieval_synthetic.md`); neither is the same data as these rows, they are there for scale.",
        "",
        "| data | objective | epochs | seeds | top-1 per seed | mean ± std | paper (speech2vec, 100 ep) | synthetic |",
        "|---|---|---|---|---|---|---|---|",
    ]
    synthetic_name = {"pc": "pc", "drf": "drf"}
    for (data, objective, epochs), values in sorted(groups.items()):
        values.sort()
        mean, std = mean_std([v for _, v in values])
        control = data.endswith(SHUFFLED)
        seeds = ", ".join(str(seed) for seed, _ in values)
        per_seed = ", ".join(f"{100 * value:.2f}%" for _, value in values)
        spread = "" if math.isnan(std) else f" ± {100 * std:.2f}"
        paper = "20% (chance)" if control else f"{PAPER_TOP1[objective]:.2f}%" if objective in PAPER_TOP1 else ""
        generated = "" if control else synthetic.get(synthetic_name.get(objective, objective), "")
        lines.append(
            f"| {data} | {objective} | {epochs} | {seeds} | {per_seed} | {100 * mean:.2f}%{spread} | {paper} | "
            f"{generated} |"
        )
    lines += ["", "## Does PC beat D-RF, as in the paper (96.24% vs 92.26%)?", ""]
    answered = False
    for data in sorted({d for d, _, _ in groups if not d.endswith(SHUFFLED)}):
        for epochs in sorted({e for d, _, e in groups if d == data}):
            pc, drf = groups.get((data, "pc", epochs)), groups.get((data, "drf", epochs))
            if not pc or not drf:
                continue
            answered = True
            (pc_mean, pc_std), (drf_mean, drf_std) = mean_std([v for _, v in pc]), mean_std([v for _, v in drf])
            spread = max(s for s in (pc_std, drf_std) if not math.isnan(s)) if len(pc) > 1 or len(drf) > 1 else 0.0
            if pc_mean > drf_mean:
                verdict = "Yes: PC beats D-RF, as in the paper"
            elif pc_mean < drf_mean:
                verdict = "No: D-RF beats PC, unlike the paper"
            else:
                verdict = "No: PC and D-RF tie"
            size = "more" if abs(pc_mean - drf_mean) > spread else "not more"
            lines.append(
                f"- {data}, {epochs} epochs: {verdict} ({100 * pc_mean:.2f}% vs {100 * drf_mean:.2f}%, "
                f"{len(pc)} and {len(drf)} seeds; the gap, {100 * abs(pc_mean - drf_mean):.2f} points, is {size} "
                f"than the larger seed standard deviation, {100 * spread:.2f})."
            )
    if not answered:
        lines.append("- No data set has both PC and D-RF runs yet.")
    controls = [(key, values) for key, values in sorted(groups.items()) if key[0].endswith(SHUFFLED)]
    if controls:
        lines += ["", "## Chance-level control", ""]
        for (data, objective, epochs), values in controls:
            worst = max(abs(value - 0.2) for _, value in values)
            verdict = (
                "at chance (within 4 binomial standard deviations, 2.3 points, of 20%)" if worst < 0.023
                else "NOT at chance: something leaks or the model collapsed"
            )  # fmt: skip
            per_seed = ", ".join(f"{100 * value:.2f}%" for _, value in values)
            lines.append(f"- {data}, {objective}, {epochs} epochs: {per_seed}: {verdict}.")
    lines += ["", "## Runs", ""]
    if records:
        machines = sorted({r["machine"] for r in records})
        lines += [f"Machine{'s' if len(machines) > 1 else ''}: " + "; ".join(machines) + ".", ""]
        lines += [
            "| data | objective | seed | epochs | top-1 | steps | wall (min) | s/step | load avg before / after "
            "(1 min) | threads | finished | command |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in records:
            lines.append(
                f"| {r['data']} | {r['objective']} | {r['seed']} | {r['epochs']} | {100 * r['top1']:.2f}% | "
                f"{r['steps']} | {r['wall_s'] / 60:.1f} | {r['s_per_step']} | {r['load_before'][0]} / "
                f"{r['load_after'][0]} | {r['torch_threads']} | {r['finished']} | `{r['command']}` |"
            )
        lines += ["", "The `pdrl.fit` command of each run is in `retrieval_real.runs.jsonl` (`pdrl_fit`)."]
    else:
        lines.append("No run log (`retrieval_real.runs.jsonl`): machine, load and commands unknown.")
    text = "\n".join(lines) + "\n"
    (results / "retrieval_real.md").write_text(text)
    print(text)
    return text


# ----------------------------------------------------------------------------------------------------------------------
# Command line


def number_or_all(value: str) -> int | None:
    return None if value == "all" else int(value)


def data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="folder holding MNIST/raw/ and/or CIFAR-10-images/")
    parser.add_argument("--data", choices=DATASETS, required=True)
    parser.add_argument("--cifar-folder", default=None, help="the CIFAR-10 image folder, if not ROOT/CIFAR-10-images")
    parser.add_argument("--work", default="runs/retrieval_real", help="where the .vec files and run folders go")
    parser.add_argument("--dim", type=int, default=100, help="PCA dimensions (configs/retrieval.yaml needs 100)")
    parser.add_argument("--num-train", type=number_or_all, default=PAPER_NUM_TRAIN, help="train images, or 'all'")
    parser.add_argument("--num-test", type=number_or_all, default=PAPER_NUM_TEST, help="test images, or 'all'")
    parser.add_argument("--subset-seed", type=int, default=0, help="draws the train and test subsets")
    parser.add_argument("--shuffle-pairs", action="store_true", help="chance control: break every pair")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        parser = argparse.ArgumentParser(prog="retrieval_real.py report", description="the .md from the .csv")
        parser.add_argument("--results", default=str(RESULTS))
        report(parser.parse_args(argv[1:]).results)
        return
    if argv[:1] == ["write"]:
        parser = argparse.ArgumentParser(prog="retrieval_real.py write", description="only write the .vec files")
        data_arguments(parser)
        args = parser.parse_args(argv[1:])
        name = args.data + (SHUFFLED if args.shuffle_pairs else "")
        write_vector_files(
            args.root, args.data, Path(args.work) / name, dim=args.dim, num_train=args.num_train,
            num_test=args.num_test, subset_seed=args.subset_seed, shuffle_pairs=args.shuffle_pairs,
            cifar_folder_path=args.cifar_folder,
        )  # fmt: skip
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="also: `report`, `write`")
    data_arguments(parser)
    parser.add_argument("--objectives", nargs="+", choices=sorted(OBJECTIVES), default=["pc", "drf"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100, help="the paper's 100")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--results", default=str(RESULTS), help="where the csv, the run log and the md go")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
