"""Benchmark: ms per training step of the shallow MNIST task, pdrl's default path against a bare float32 loop.

One process, interleaved rounds, so machine noise hits every variant alike. Variants:

- ``bare_fp32``: the naive baseline, a plain PyTorch loop over the same modules (two 30-coupling RealNVPs, bilinear
  critic, PCC, batch 128), float32, eager, ``torch.optim.Adam`` with its defaults;
- ``bare_fast``: the same loop with pdrl's fast path written by hand: bf16 autocast of the encoders (where the
  CPU multiplies bf16 natively), ``torch.compile`` of their forward, fused Adam, denormals flushed; what the fast
  path costs without Lightning, the data loader and the ``FiniteGuard``;
- ``pdrl_fit``: ``configs/shallow_mnist.yaml`` through ``pdrl.fit`` (Lightning Trainer, the config's default fast
  path), with the logger, checkpoints and probe switched off so that only training steps are timed; the
  ``FiniteGuard`` that ``pdrl.fit`` adds to every run stays on, since every real step pays for it;

then the floor that this CPU sets (``step_floor``): the step's own matrix products alone (forward, input and weight
gradients of every coupling layer and the critic), timed one shape at a time as float32 ``torch.mm`` on random
data, and as bf16 where the CPU multiplies bf16 natively (AVX512-BF16 or AMX: where the fast path uses it), plus one
fused Adam step over the same number of parameters (memory-bound). The ratio bare / floor is the largest speed-up
that pdrl's fast path could show against the float32 loop on this machine: with bf16 GEMMs where they are native,
with float32 GEMMs elsewhere.

Then one linear-probe evaluation of ``pdrl_fit``'s encoder on all 70000 MNIST images (embedding and fit timed
apart). Each thread count in ``--threads`` gets its own rounds. Writes a Markdown table with the machine, the load
average before and after, and the command.

    python bench/shallow_speed.py --root ../shared/data --threads 1 2     # bench/results/shallow_speed_<CPU kind>.md
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: bench.machine from the repository root
from bench.machine import cpu_tag, describe  # noqa: E402
from bench.report_file import round_lines, write_markdown  # noqa: E402
from bench.shallow_fit_runner import pdrl_fit_runner  # noqa: E402
from bench.timing import interleaved_rounds  # noqa: E402
from pdrl.hardware import bf16_is_fast  # noqa: E402


def bare_loop(
    batches: list[tuple[torch.Tensor, torch.Tensor]], checkpoint: dict | None = None, flush=False, fast=False
):
    """A closure that runs ``k`` plain steps of the same model and returns nothing: float32 eager by default.

    ``checkpoint``: a ``pdrl.fit`` checkpoint of the same model whose weights and Adam state the loop starts from
    (Adam's own settings stay the loop's: single-tensor, fused with ``fast``). ``flush``: denormals flushed to zero
    on every thread while the loop runs (``pdrl.hardware``), the one part of the fast path that float32 can use
    too.
    ``fast``: pdrl's fast path by hand instead (``bare_fast``): the encoders' forward under bf16 autocast where it
    is native and compiled, fused Adam, denormals flushed.
    """
    from pdrl.hardware import flush_denormals
    from pdrl.heads import BilinearCritic
    from pdrl.losses import PCCLoss
    from pdrl.nets.realnvp import RealNVP

    torch.manual_seed(0)
    encoder_a, encoder_b = RealNVP(392, 30, (512, 512), 1e-4, 0), RealNVP(392, 30, (512, 512), 1e-4, 1)
    critic, objective = BilinearCritic(392, 392), PCCLoss()
    modules = torch.nn.ModuleDict({"encoder_a": encoder_a, "encoder_b": encoder_b, "critic": critic})
    optimizer = torch.optim.Adam(modules.parameters(), lr=1e-4, fused=fast or None)
    flush = flush or fast
    bf16 = fast and bf16_is_fast(torch.device("cpu"))

    def encode(view_a: torch.Tensor, view_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return encoder_a(view_a).float(), encoder_b(view_b).float()

    encode_step = torch.compile(encode) if fast else encode
    if checkpoint is not None:  # the names and the parameter order of RepresentationLearning
        modules.load_state_dict({key: value for key, value in checkpoint["state_dict"].items()
                                 if key.split(".")[0] in modules})  # fmt: skip
        own_settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        optimizer.load_state_dict(checkpoint["optimizer_states"][0])
        for group, settings in zip(optimizer.param_groups, own_settings, strict=True):
            group.update(settings)

    def run(steps: int) -> None:
        if flush:
            flush_denormals(True)
        try:
            steps_of(steps)
        finally:
            if flush:
                flush_denormals(False)

    def steps_of(steps: int) -> None:
        for step in range(steps):
            view_a, view_b = batches[step % len(batches)]
            optimizer.zero_grad()
            loss = objective(critic(*encode_step(view_a, view_b)))
            loss.backward()
            optimizer.step()

    run.modules, run.optimizer, run.encode_step, run.bf16 = modules, optimizer, encode_step, bf16  # for tests
    return run


def step_shapes(batch: int = 128, dim: int = 392, hidden: int = 512, couplings: int = 60) -> list[tuple]:
    """(m, k, n, count): every matrix product of one training step of the shallow task (two 30-coupling flows)."""
    half = dim // 2
    layers = [(half, hidden), (hidden, hidden), (hidden, half)]
    shapes = []
    for width_in, width_out in layers:
        shapes.append((batch, width_in, width_out, couplings))  # forward
        shapes.append((batch, width_out, width_in, couplings))  # gradient of the input
        shapes.append((width_out, batch, width_in, couplings))  # gradient of the weight
    shapes += [(batch, dim, dim, 3), (batch, dim, batch, 3)]  # the bilinear critic: a W, its score, and gradients
    return shapes


def step_floor(threads: int, repeats: int = 20) -> dict[str, float]:
    """ms of the step's matrix products alone (``step_shapes``) in float32, and in bf16 where it is native (else
    NaN: emulated bf16 is 40x slower than float32 and no path of pdrl's uses it), and of one fused Adam step."""
    torch.set_num_threads(threads)
    floor = {"gemm_bf16": math.nan}
    dtypes = {"gemm_fp32": torch.float32}
    if bf16_is_fast(torch.device("cpu")):
        dtypes["gemm_bf16"] = torch.bfloat16
    for name, dtype in dtypes.items():
        total = 0.0
        for m, k, n, count in step_shapes():
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            for _ in range(3):
                a @ b
            begin = time.perf_counter()
            for _ in range(repeats):
                a @ b
            total += (time.perf_counter() - begin) / repeats * count
        floor[name] = total * 1000
    flops = sum(2 * m * k * n * count for m, k, n, count in step_shapes())
    floor["gflop_per_step"] = flops / 1e9
    params = [torch.zeros(28_000_000, requires_grad=True)]
    params[0].grad = torch.randn_like(params[0])
    adam = torch.optim.Adam(params, lr=1e-4, fused=True)
    for _ in range(2):
        adam.step()
    begin = time.perf_counter()
    for _ in range(5):
        adam.step()
    floor["adam_fused"] = (time.perf_counter() - begin) / 5 * 1000
    floor["autocast_casts"] = autocast_casts(params[0].detach()) if "gemm_bf16" in dtypes else math.nan
    return floor


def autocast_casts(weights: torch.Tensor, repeats: int = 5) -> float:
    """ms of the two copies that bf16 autocast makes of every float32 weight in a step: the weights cast to bf16 for
    the forward's matrix products, and their bf16 gradients cast back to float32 for Adam (memory-bound, into
    buffers allocated once, as a caching allocator would hand them out)."""
    as_bf16 = torch.empty_like(weights, dtype=torch.bfloat16)
    back = torch.empty_like(weights)
    for _ in range(2):
        as_bf16.copy_(weights)
        back.copy_(as_bf16)
    begin = time.perf_counter()
    for _ in range(repeats):
        as_bf16.copy_(weights)
        back.copy_(as_bf16)
    return (time.perf_counter() - begin) / repeats * 1000


def time_probe(cli) -> dict[str, float]:
    """Seconds of one probe evaluation of the trained encoder on all 70000 images, and its raw-pixel fit."""
    from pdrl.callbacks.linear_probe import LinearProbe

    probe = LinearProbe(every_n_steps=1000, raw_pixel_baseline=False)  # the learned features alone first
    trainer = cli.trainer
    started = time.perf_counter()
    probe.evaluate(trainer, cli.model)
    learned = time.perf_counter() - started
    started = time.perf_counter()
    device = cli.model.device
    probe._accuracy(trainer, device, *(probe._raw_inputs(split, device) for split in probe._datasets(trainer)))
    raw = time.perf_counter() - started
    return {"probe_seconds": learned, "probe_accuracy": probe.history[-1]["accuracy"], "raw_fit_seconds": raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--out", type=Path, default=None, help="default: results/shallow_speed_<CPU kind>.md")
    parser.add_argument(
        "--from-checkpoint", type=Path, default=None,
        help="start both loops from this pdrl.fit checkpoint of the shallow MNIST model (weights and Adam state), "
        "e.g. step 2000 of a protocol run: the steady state of a long run instead of a fresh model",
    )  # fmt: skip
    args = parser.parse_args()
    start = None  # the checkpoint's contents, read once
    if args.from_checkpoint is not None:
        start = torch.load(args.from_checkpoint, map_location="cpu", weights_only=False)
    args.start_step = 0 if start is None else start["global_step"]
    suffix = "" if start is None else f"_from_step{args.start_step}"
    args.out = args.out or Path(__file__).parent / "results" / f"shallow_speed_{cpu_tag()}{suffix}.md"
    load_before = os.getloadavg()
    fit_run, cli = pdrl_fit_runner(args.root, args.from_checkpoint, args.start_step)
    cli.datamodule.setup()
    loader = cli.datamodule.train_dataloader()
    batches = [batch for _, batch in zip(range(20), loader, strict=False)]
    variants = {
        "bare_fp32": bare_loop(batches, start),
        "bare_fp32_flush": bare_loop(batches, start, flush=True),
        "bare_fast": bare_loop(batches, start, fast=True),
        "pdrl_fit": fit_run,
    }
    del start
    started = time.perf_counter()
    for run in variants.values():
        run(3)  # warm-up: torch.compile builds its kernels here
    print(f"warm-up and compilation: {time.perf_counter() - started:.1f} s", flush=True)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for run in variants.values():
            run(2)
        steps_each_round = {name: lambda _round, run=run: run(args.steps) for name, run in variants.items()}
        ms_per_step = interleaved_rounds(steps_each_round, args.rounds).scaled(1000 / args.steps)
        floor = step_floor(threads)
        torch.set_num_threads(threads)
        probe = time_probe(cli)
        row = {"threads": threads, **ms_per_step.medians(), **floor, **probe, "load": os.getloadavg()[0],
               "rounds": ms_per_step.values}  # fmt: skip
        print(row, flush=True)
        rows.append(row)
    write_report(args, rows, load_before)


def write_report(args, rows: list[dict], load_before) -> None:
    lines = [
        "# Shallow MNIST: ms per training step, pdrl's default path against a bare float32 loop",
        "",
        f"Machine: {describe()}. Load average before: "
        f"{load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min). Date: {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"Command: `python {' '.join(['bench/shallow_speed.py', *sys.argv[1:]])}`",
        "",
        f"Setting: configs/shallow_mnist.yaml (PCC, two 30-coupling RealNVPs 512-512, bilinear critic, batch 128). "
        f"{args.rounds} interleaved rounds of {args.steps} steps per variant; the median round is reported.",
        "",
        "Start: "
        + (
            "a fresh model (step 0), as the config builds it."
            if args.from_checkpoint is None
            else f"the weights and Adam state of `{args.from_checkpoint}` (step {args.start_step}); every variant "
            "continues from it."
        ),
        "",
        "| threads | bare fp32 loop (ms/step) | bare fp32, denormals flushed (ms/step) | pdrl.fit default (ms/step) "
        "| speed-up over bare | over bare flushed | fast path by hand (ms/step) | pdrl.fit / by hand "
        "| probe, 70000 images (s) | raw-pixel fit (s) | load after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['threads']} | {row['bare_fp32']:.1f} | {row['bare_fp32_flush']:.1f} | {row['pdrl_fit']:.1f} | "
            f"{row['bare_fp32'] / row['pdrl_fit']:.2f}x | {row['bare_fp32_flush'] / row['pdrl_fit']:.2f}x | "
            f"{row['bare_fast']:.1f} | {row['pdrl_fit'] / row['bare_fast']:.2f} | "
            f"{row['probe_seconds']:.1f} | {row['raw_fit_seconds']:.1f} | {row['load']:.2f} |"
        )
    lines += [
        "",
        "Fast path by hand (`bare_fast`): the bare loop with pdrl's fast path written out (bf16 autocast where "
        "native, `torch.compile` of the encoders, fused Adam, denormals flushed), without Lightning, the data "
        "loader and the `FiniteGuard`; `pdrl.fit / by hand` is what those cost on top of the fast path itself. Each "
        f"`pdrl.fit` round is one `Trainer.fit` call, so the fit's start is in its figure, spread over {args.steps} "
        "steps.",
        "",
        "The floor on this CPU (`step_floor`): the step's "
        f"{rows[0]['gflop_per_step']:.1f} GFLOP of matrix products timed alone, shape by shape, and one fused Adam "
        "step over 28M parameters. The floor's GEMMs are bf16 where this CPU multiplies bf16 natively (where the "
        "fast path uses bf16), float32 elsewhere (bf16 columns: n/a). `bare / floor` is the largest speed-up over the "
        "float32 loop that pdrl's fast path could reach here; `% of floor` is how close pdrl's step comes to it. "
        "The last three columns add what bf16 autocast itself costs on top (`autocast_casts`: every float32 weight "
        "copied to bf16 and its bf16 gradient back to float32, once per step, memory-bound), which a step with "
        "autocast cannot avoid; an optimizer that kept bf16 copies of the weights itself would.",
        "",
        "| threads | bf16 GEMMs (ms) | bf16 GFLOP/s | fp32 GEMMs (ms) | fused Adam (ms) | floor: GEMMs + Adam (ms) "
        "| bare / floor | pdrl: % of floor | autocast casts (ms) | floor + casts (ms) | bare / (floor + casts) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        native_bf16 = not math.isnan(row["gemm_bf16"])
        floor = (row["gemm_bf16"] if native_bf16 else row["gemm_fp32"]) + row["adam_fused"]
        bf16 = "n/a | n/a"
        with_casts = "n/a | n/a | n/a"
        if native_bf16:
            bf16 = f"{row['gemm_bf16']:.1f} | {row['gflop_per_step'] / row['gemm_bf16'] * 1000:.0f}"
            casts = row["autocast_casts"]
            with_casts = f"{casts:.1f} | {floor + casts:.1f} | {row['bare_fp32'] / (floor + casts):.2f}x"
        lines.append(
            f"| {row['threads']} | {bf16} | "
            f"{row['gemm_fp32']:.1f} | {row['adam_fused']:.1f} | {floor:.1f} | {row['bare_fp32'] / floor:.2f}x | "
            f"{floor / row['pdrl_fit']:.0%} | {with_casts} |"
        )
    write_markdown(args.out, lines + round_lines(rows, "rounds", "ms/step"))


if __name__ == "__main__":
    main()
