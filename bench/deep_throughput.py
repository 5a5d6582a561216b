"""Training throughput (images per second) of the deep task, and the model FLOPs per image.

Measures full optimisation steps of ``DeepRepresentation`` (batched augmentation, encoder on both views,
six multi-location score tensors, per-location losses, score penalty, probe, backward, gradient value
clipping, Adam) on synthetic uint8 images, after a warm-up; the Lightning Trainer loop is not included.
It also counts, with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no compute), the
matmul/convolution FLOPs of one training step (forward + backward) per image at any width, so that model
FLOPs utilisation can be computed for any measured throughput::

    MFU = images_per_second * flops_per_image / peak_flops_of_the_device

``--compare-loss-calls`` instead times the two ways of evaluating the 198 location losses side by side in
one process: ``batched_loss=True`` (one objective call per step) and ``batched_loss=False`` (one call per
location matrix), alternating a step of each so that both see the same machine load, and writes a table
with the speed-up::

    python bench/deep_throughput.py --compare-loss-calls --steps 40 --threads 1 --objective drfc \
        --out bench/results/deep_loss_calls_cpu.md

Usage::

    python bench/deep_throughput.py --ndf 16 --n-rkhs 128 --depth 2 --batch 64 --steps 20 --threads 2 \
        --device cpu --precision 32 --out bench/results/deep_throughput_cpu.md
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: bench.timing from the repository root
from bench.timing import Rounds, interleaved_rounds  # noqa: E402
from pdrl.tasks.deep_representation import DeepRepresentation  # noqa: E402

PAPER_WIDTH = dict(ndf=192, n_rkhs=1536, depth=8)


def model_flops_per_image(ndf: int, n_rkhs: int, depth: int, batch: int) -> float:
    """Matmul/conv FLOPs of one training step (encoder on 2 views, 6 score tensors, backward) per image."""
    with torch.device("meta"):
        task = DeepRepresentation(ndf=ndf, n_rkhs=n_rkhs, depth=depth)
        views = torch.randn(2 * batch, 3, 32, 32)
    counter = FlopCounterMode(display=False)
    with counter:
        features = task.encoder(views)
        first, second = (type(features)(*halves) for halves in zip(*(f.chunk(2) for f in features), strict=True))
        scores = task.score_pairings(first, second)
        total = sum(direction.sum() for pair in scores.values() for direction in pair)
        total.backward()
    return counter.get_total_flops() / batch


def breakdown(args: argparse.Namespace, repeats: int = 5) -> dict[str, float]:
    """Median seconds of each part of one training step (CPU timing; the parts are separated by detaching)."""
    torch.manual_seed(0)
    task = DeepRepresentation(objective=args.objective, ndf=args.ndf, n_rkhs=args.n_rkhs, depth=args.depth)
    images = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8)
    parts: dict[str, list[float]] = {}
    for _ in range(repeats):
        clock = [time.perf_counter()]
        view1, view2 = task.augmentation(images)
        clock.append(time.perf_counter())
        features = task.encoder(torch.cat([view1, view2]))
        clock.append(time.perf_counter())
        leaves = [feature.detach().requires_grad_() for feature in features]
        first, second = (type(features)(*halves) for halves in zip(*(f.chunk(2) for f in leaves), strict=True))
        raw = task.raw_score_pairings(first, second)
        clock.append(time.perf_counter())
        total = task.dependency_loss(raw)["loss"]
        clock.append(time.perf_counter())
        total.backward()
        clock.append(time.perf_counter())
        torch.autograd.backward(list(features), [leaf.grad for leaf in leaves])
        clock.append(time.perf_counter())
        names = (
            "augmentation",
            "encoder forward",
            "critic forward",
            "198 location losses forward (one call unless the objective has state) and penalty",
            "critic + losses backward",
            "encoder backward",
        )
        for name, begin, end in zip(names, clock[:-1], clock[1:], strict=True):
            parts.setdefault(name, []).append(end - begin)
    return {name: statistics.median(values) for name, values in parts.items()}


def make_step(args: argparse.Namespace, batched_loss: bool = True, cpc_negatives: str = "pooled"):
    """A function running one full optimisation step of a fresh task on fixed synthetic images."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    task = DeepRepresentation(
        objective=args.objective,
        cpc_negatives=cpc_negatives,
        batched_loss=batched_loss,
        ndf=args.ndf,
        n_rkhs=args.n_rkhs,
        depth=args.depth,
    ).to(device)
    (optimizer,), _ = task.configure_optimizers()
    images = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    def step(index: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=args.precision == "bf16"):
            loss = task.training_step((images, labels), index)
        loss.backward()
        torch.nn.utils.clip_grad_value_(task.parameters(), 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def make_loss_stage(args: argparse.Namespace, batched_loss: bool):
    """A function running the loss stage alone: fixed raw scores -> 198 location losses + penalty -> score gradients.

    The scores come from one forward pass of the critic on fixed synthetic images; they are leaves, so the timed
    work is exactly what the two ways of evaluating the location losses differ in (forward and backward).
    """
    torch.manual_seed(0)
    task = DeepRepresentation(
        objective=args.objective,
        cpc_negatives="per_location",
        batched_loss=batched_loss,
        ndf=args.ndf,
        n_rkhs=args.n_rkhs,
        depth=args.depth,
    ).to(args.device)
    images = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8, device=args.device)
    with torch.no_grad():
        features = task.encoder(torch.cat(task.augmentation(images)))
        first, second = (type(features)(*halves) for halves in zip(*(f.chunk(2) for f in features), strict=True))
        pairings = task.raw_score_pairings(first, second)
    leaves = {name: [raw.clone().requires_grad_() for raw in pair] for name, pair in pairings.items()}

    def stage(index: int) -> None:
        terms = task.dependency_loss(leaves)
        (terms["loss"] + task.hparams.score_penalty * terms["penalty"]).backward()
        for pair in leaves.values():
            for raw in pair:
                raw.grad = None
        if args.device == "cuda":
            torch.cuda.synchronize()

    return stage


def compare_loss_calls(args: argparse.Namespace) -> tuple[Rounds, Rounds]:
    """Seconds of the batched and the per-location loss: the loss stage alone, then whole steps, each pair timed
    call by call in alternating order (``args.warmup`` calls of each first, not recorded)."""
    # CPC per location, so that both evaluate the same loss whatever the objective
    stages = {
        "loss stage, one call": make_loss_stage(args, batched_loss=True),
        "loss stage, 198 calls": make_loss_stage(args, batched_loss=False),
    }
    steps = {
        "whole step, one call": make_step(args, batched_loss=True, cpc_negatives="per_location"),
        "whole step, 198 calls": make_step(args, batched_loss=False, cpc_negatives="per_location"),
    }
    return (
        interleaved_rounds(stages, args.steps, warmup_rounds=args.warmup),
        interleaved_rounds(steps, args.steps, warmup_rounds=args.warmup),
    )


def comparison_table(args: argparse.Namespace, timed: tuple[Rounds, Rounds], load: float) -> str:
    means = {name: mean for rounds in timed for name, mean in rounds.means().items()}
    medians = {name: median for rounds in timed for name, median in rounds.medians().items()}
    rows = [
        f"| {name} | {args.batch / means[name]:.1f} | {args.batch / median:.1f} | {1000 * median:.1f} |"
        for name, median in medians.items()
    ]

    def speedup(part: str) -> float:
        return medians[f"{part}, 198 calls"] / medians[f"{part}, one call"]

    return "\n".join(
        [
            "# Deep task: one batched loss call against 198 per-location calls",
            "",
            f"- machine: {os.cpu_count()}-core {platform.machine()}, device `{args.device}`, {args.threads} torch"
            f" threads, torch {torch.__version__}; 1-minute load average {load:.1f} at the start",
            f"- width: ndf {args.ndf}, n_rkhs {args.n_rkhs}, depth {args.depth}; batch {args.batch};"
            f" objective {args.objective}; precision {args.precision}; {args.steps} timed calls of each after"
            f" {args.warmup} warm-up calls, the two ways alternating in one process",
            "- loss stage: the fixed raw scores of one batch (leaves) -> the 198 location losses and the score"
            " penalty -> their gradients, i.e. the work the two ways differ in; whole step: augmentation, encoder,"
            " critic, losses, backward and Adam",
            "",
            "| what is timed | images/s (all calls) | images/s (median call) | median call (ms) |",
            "|---|---|---|---|",
            *rows,
            "",
            f"**Speed-up of the loss stage: {speedup('loss stage'):.2f}x; of the whole step:"
            f" {speedup('whole step'):.2f}x** (median calls).",
            "",
            *command_block(args),
            "",
        ]
    )


def command_block(args: argparse.Namespace) -> list[str]:
    """The Markdown lines that give the command reproducing a report."""
    return ["Command:", "", "```", "PYTHONPATH=$PWD python bench/deep_throughput.py " + command_line(args), "```"]


def measure(args: argparse.Namespace) -> dict[str, float]:
    step = make_step(args)
    for index in range(args.warmup):
        step(index)
    step_seconds = []
    for index in range(args.steps):
        start = time.perf_counter()
        step(index)
        step_seconds.append(time.perf_counter() - start)
    seconds, median = sum(step_seconds), statistics.median(step_seconds)
    return {
        "seconds": seconds,
        "images_per_second": args.batch * args.steps / seconds,
        "median_images_per_second": args.batch / median,
        "best_images_per_second": args.batch / min(step_seconds),
    }


def command_line(args: argparse.Namespace) -> str:
    """The options of this run as they are typed (``--breakdown`` alone for the flag)."""
    words = []
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value is not None and value is not False:
            words.append(f"{flag} {value}")
    return " ".join(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ndf", type=int, default=16)
    parser.add_argument("--n-rkhs", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--objective", default="drfc")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("32", "bf16"), default="32")
    parser.add_argument("--paper-batch", type=int, default=480, help="batch for the paper-width FLOP count")
    parser.add_argument("--out", default=None, help="Markdown file to write the results to")
    parser.add_argument("--csv", default=None, help="CSV file to append this run's numbers to")
    parser.add_argument("--breakdown", action="store_true", help="also time each part of a step (CPU only)")
    parser.add_argument(
        "--compare-loss-calls", action="store_true", help="time one batched loss call against 198 calls, interleaved"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="You are trying to `self.log")
    if args.compare_loss_calls:
        load = os.getloadavg()[0]
        text = comparison_table(args, compare_loss_calls(args), load)
        print(text)
        if args.out:
            with open(args.out, "w") as handle:
                handle.write(text)
        return

    flops_measured = model_flops_per_image(args.ndf, args.n_rkhs, args.depth, args.batch)
    flops_paper = model_flops_per_image(**PAPER_WIDTH, batch=args.paper_batch)
    load_before = os.getloadavg()[0]
    result = measure(args)
    achieved = result["images_per_second"] * flops_measured
    lines = [
        "# Deep task training throughput",
        "",
        f"- machine: {os.cpu_count()}-core {platform.machine()} CPU"
        f"{', ' + torch.cuda.get_device_name() if args.device.startswith('cuda') else ', no GPU'};"
        f" device `{args.device}`, {args.threads} torch threads; torch {torch.__version__};"
        f" 1-minute load average {load_before:.1f} when the run started (the CPU is shared)",
        f"- width: ndf {args.ndf}, n_rkhs {args.n_rkhs}, depth {args.depth}; batch {args.batch};"
        f" objective {args.objective}; precision {args.precision}",
        f"- {args.steps} timed steps after {args.warmup} warm-up steps: {result['seconds']:.1f} s",
        f"- **throughput: {result['images_per_second']:.1f} images/s** over all timed steps"
        f" (median step: {result['median_images_per_second']:.1f},"
        f" fastest step: {result['best_images_per_second']:.1f});"
        f" {flops_measured / 1e9:.3f} GFLOP per image per step at this width, so {achieved / 1e9:.1f} GFLOP/s",
        f"- model FLOPs per image per training step at the paper's width (ndf 192, n_rkhs 1536, depth 8, batch"
        f" {args.paper_batch}; forward + backward, matmuls and convolutions): **{flops_paper / 1e9:.2f} GFLOP**",
        "",
        "No GPU was lent to this task: the full-width bf16 throughput on a GPU, and its MFU, are not measured here;"
        " run this script with `--device cuda --precision bf16 --ndf 192 --n-rkhs 1536 --depth 8 --batch 480`.",
        "",
        "Model FLOPs utilisation of a measured run: `MFU = images/s * GFLOP per image / peak GFLOP/s of the device`"
        " (e.g. an H100 SXM's dense bf16 peak is 989 TFLOP/s).",
        "",
        *command_block(args),
    ]
    if args.breakdown:
        parts = breakdown(args)
        lines += ["", "Median seconds per part of one step (5 repeats):", ""]
        lines += [f"- {name}: {seconds:.3f} s" for name, seconds in parts.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    if args.csv:
        row = {
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "device": args.device,
            "threads": args.threads,
            "load_average_1min": round(load_before, 1),
            "ndf": args.ndf,
            "n_rkhs": args.n_rkhs,
            "depth": args.depth,
            "batch": args.batch,
            "precision": args.precision,
            "steps": args.steps,
            "seconds": round(result["seconds"], 2),
            "images_per_second": round(result["images_per_second"], 2),
            "median_images_per_second": round(result["median_images_per_second"], 2),
            "gflop_per_image": round(flops_measured / 1e9, 4),
            "paper_width_gflop_per_image": round(flops_paper / 1e9, 3),
        }
        new_file = not os.path.exists(args.csv)
        with open(args.csv, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)


if __name__ == "__main__":
    main()
