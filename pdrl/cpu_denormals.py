"""Flush denormal floats to zero on every CPU thread that torch computes on, not only the calling one.

A float32 below 1.2e-38 is *denormal*; x86 CPUs handle those in microcode, tens of times slower than normal
numbers. Long runs make them: Adam's running mean decays by 0.9 a step wherever a gradient is (nearly) zero. In
the shallow MNIST task (weights initialised with std 1e-4) 44% of Adam's ``exp_avg`` entries were denormal after
2000 steps, and one fused Adam step over the 28M parameters took 105 ms at 2 threads instead of 18 ms with the
denormals flushed (``bench/results/shallow_speed_avx512_amx_bf16.md``): it was over half of every step.

``torch.set_flush_denormal`` sets the flags (FTZ/DAZ) of the calling thread only, while torch's kernels run on
its OpenMP threads too, so :func:`flush_denormals` also runs it on each thread of that pool, through the OpenMP
runtime that torch itself loaded. Values below 1.2e-38 then read as zero. In a training step that changes nothing
that matters: an Adam update from such a running mean is below 1e-30 of the learning rate.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

# GNU libgomp; LLVM's libomp and Intel's libiomp5 export the same GOMP_parallel entry point for compatibility
OPENMP_RUNTIMES = ("libgomp", "libomp", "libiomp5")


def loaded_openmp_runtime() -> str | None:
    """The path of the OpenMP runtime loaded in this process (Linux: from /proc/self/maps), or None."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return None
    for line in maps.read_text().splitlines():
        path = line.split()[-1]
        if any(Path(path).name.startswith(name) for name in OPENMP_RUNTIMES):
            return path
    return None


def flush_denormals(enabled: bool = True) -> int:
    """Set (or, with ``enabled=False``, clear) flush-to-zero on the calling thread and on each of torch's
    ``torch.get_num_threads()`` OpenMP threads; returns on how many threads it was set (counting the calling one).

    Returns 0 where the CPU has no such mode (``torch.set_flush_denormal`` answers False: not x86 with SSE3), and 1
    where no OpenMP runtime is found (the calling thread only, e.g. a torch built without OpenMP).
    """
    if not torch.set_flush_denormal(enabled):
        return 0
    runtime = loaded_openmp_runtime()
    if runtime is None or torch.get_num_threads() < 2:
        return 1
    answers: list[bool] = []
    body_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

    def body(_: int | None) -> None:  # runs once on each thread of the parallel region, the calling thread included
        answers.append(torch.set_flush_denormal(enabled))

    callback = body_type(body)
    parallel = ctypes.CDLL(runtime).GOMP_parallel  # CDLL releases the GIL during the call, so each thread can run body
    parallel.argtypes = [body_type, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    parallel(callback, None, torch.get_num_threads(), 0)
    return sum(answers)
