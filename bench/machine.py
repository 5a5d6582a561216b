"""The machine a benchmark ran on, in words, for the header of its results: CPU model, cores, and whether the CPU
multiplies bf16 natively (pdrl's fast path uses bf16 only there, so timings from two CPUs are not comparable)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from pdrl.hardware import bf16_is_fast


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe() -> str:
    """E.g. 'AMD EPYC, x86_64, 2 cores, vector ISA AVX2, bf16 not native, torch 2.14.1+cu130', and the GPU where
    there is one: '..., GPU NVIDIA H100 80GB HBM3 (CUDA 13.0)'."""
    bf16 = "bf16 not native"
    if bf16_is_fast(torch.device("cpu")):
        bf16 = "bf16 native (AMX)" if has_amx() else "bf16 native"
    text = (
        f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} cores, vector ISA "
        f"{torch.backends.cpu.get_cpu_capability()}, {bf16}, torch {torch.__version__}"
    )
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return text


def has_amx() -> bool:
    """Whether the CPU has AMX tiles (Intel Sapphire Rapids and later): bf16 matrix products several times faster
    than AVX512-BF16 alone, so its timings get their own results file."""
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def cpu_tag() -> str:
    """A file-name tag for the CPU kind that sets a benchmark's speed: 'avx2', 'avx512_bf16', 'avx512_amx_bf16'."""
    isa = torch.backends.cpu.get_cpu_capability().lower()
    if not bf16_is_fast(torch.device("cpu")):
        return isa
    return f"{isa}_amx_bf16" if has_amx() else f"{isa}_bf16"
