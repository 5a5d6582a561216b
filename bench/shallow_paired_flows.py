"""Benchmark: does evaluating F and G as one batched computation pay on the shallow MNIST task?

Issue 11 names it as a fast-path candidate: the two 30-coupling RealNVPs have the same shapes, so each coupling of
F and the same coupling of G can run as one ``torch.baddbmm`` over their stacked weights (2 x 128 x 196 @ 2 x 196 x
512, ...) instead of two ``addmm`` calls: half the matrix-product calls, each twice as large. Both variants compute
the same step (forward and backward of both encoders, the bilinear critic and PCC, under bf16 autocast where the
CPU multiplies bf16 natively, compiled with ``torch.compile``); the optimizer step is the same for both and is left
out. One process, interleaved rounds; the median round is reported with the load average.

    python bench/shallow_paired_flows.py --threads 1 2     # bench/results/shallow_paired_flows_<CPU kind>.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: bench.machine from the repository root
from bench.machine import cpu_tag, describe  # noqa: E402
from bench.report_file import round_lines, write_markdown  # noqa: E402
from pdrl.hardware import bf16_is_fast  # noqa: E402
from pdrl.heads import BilinearCritic  # noqa: E402
from pdrl.losses import PCCLoss  # noqa: E402
from pdrl.nets.realnvp import RealNVP  # noqa: E402


def paired_forward(flow_a: RealNVP, flow_b: RealNVP, x_a: torch.Tensor, x_b: torch.Tensor):
    """``(flow_a(x_a), flow_b(x_b))`` computed in lockstep: every linear layer of coupling k of both flows is one
    ``baddbmm`` over the two flows' stacked weights, every permutation one ``gather``."""
    x = torch.stack([x_a, x_b])  # (2, n, dim)
    rows = x.shape[1]
    for index, (coupling_a, coupling_b) in enumerate(zip(flow_a.couplings, flow_b.couplings, strict=True)):
        kept, moved = x[..., : coupling_a.split], x[..., coupling_a.split :]
        hidden = kept
        layers = [(a, b) for a, b in zip(coupling_a.shift, coupling_b.shift, strict=True) if isinstance(a, nn.Linear)]
        for depth, (layer_a, layer_b) in enumerate(layers):
            weight = torch.stack([layer_a.weight, layer_b.weight]).transpose(1, 2)  # (2, in, out)
            bias = torch.stack([layer_a.bias, layer_b.bias]).unsqueeze(1)  # (2, 1, out)
            hidden = torch.baddbmm(bias, hidden, weight)
            if depth < len(layers) - 1:
                hidden = torch.relu(hidden)
        x = torch.cat([kept, moved + hidden], dim=-1)
        permutation = torch.stack([flow_a.permutations[index], flow_b.permutations[index]])  # (2, dim)
        x = torch.gather(x, 2, permutation[:, None, :].expand(-1, rows, -1))
    return x[0], x[1]


def separate_forward(flow_a: RealNVP, flow_b: RealNVP, x_a: torch.Tensor, x_b: torch.Tensor):
    """``(flow_a(x_a), flow_b(x_b))`` as pdrl computes them: one flow after the other."""
    return flow_a(x_a), flow_b(x_b)


def training_step_without_optimizer(forward, flows, critic, objective, batch, bf16: bool):
    """A closure: forward and backward of the shallow task's loss with ``forward`` evaluating the two flows."""

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            features_a, features_b = forward(*flows, *batch)
        loss = objective(critic(features_a.float(), features_b.float()))
        loss.backward()
        for module in (*flows, critic):
            module.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.out = args.out or Path(__file__).parent / "results" / f"shallow_paired_flows_{cpu_tag()}.md"
    from pdrl.hardware import flush_denormals

    torch.manual_seed(0)
    flows = (RealNVP(392, 30, (512, 512), 1e-4, 0), RealNVP(392, 30, (512, 512), 1e-4, 1))
    critic, objective = BilinearCritic(392, 392), PCCLoss()
    batch = (torch.rand(128, 392), torch.rand(128, 392))
    bf16 = bf16_is_fast(torch.device("cpu"))
    variants = {
        name: training_step_without_optimizer(torch.compile(forward), flows, critic, objective, batch, bf16)
        for name, forward in (("separate", separate_forward), ("paired", paired_forward))
    }
    load_before = os.getloadavg()
    flush_denormals(True)  # as the fast path runs
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for step in variants.values():
            for _ in range(3):
                step()  # warm-up (the first call compiles)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for round_index in range(args.rounds):
            order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
            for name in order:
                begin = time.perf_counter()
                for _ in range(args.steps):
                    variants[name]()
                times[name].append((time.perf_counter() - begin) / args.steps * 1000)
        rows.append({"threads": threads, "times": times, "load": os.getloadavg()[0]})
        print(rows[-1], flush=True)
    flush_denormals(False)
    lines = [
        "# Shallow MNIST: F and G one after the other, or in lockstep as batched matrix products",
        "",
        f"Machine: {describe()}. Load average before: {load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min). "
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"Command: `python {' '.join(['bench/shallow_paired_flows.py', *sys.argv[1:]])}`",
        "",
        "Setting: forward and backward of two 30-coupling RealNVPs (512-512), bilinear critic and PCC, batch 128, "
        f"{'bf16 autocast' if bf16 else 'float32 (bf16 not native here)'}, torch.compile, denormals flushed; no "
        f"optimizer step. {args.rounds} interleaved rounds of {args.steps} steps; the median round is reported.",
        "",
        "| threads | separate (ms) | paired bmm (ms) | paired / separate | load after |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        separate, paired = (statistics.median(row["times"][name]) for name in ("separate", "paired"))
        ratio = paired / separate
        lines.append(f"| {row['threads']} | {separate:.1f} | {paired:.1f} | {ratio:.2f} | {row['load']:.2f} |")
    write_markdown(args.out, lines + round_lines(rows, "times", "ms"))


if __name__ == "__main__":
    main()
