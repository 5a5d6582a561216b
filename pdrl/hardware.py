"""What this machine's hardware does fast or slow, and the settings that keep a run on the fast path.

- ``bf16_is_fast(device)``: whether the device multiplies bf16 natively (the fast path of
  ``pdrl.tasks.representation`` and the benchmarks choose bf16 by it).
- ``flush_denormals`` / ``FlushDenormalsDuringFit``: denormal floats read as zero on every torch thread.
- ``keep_freed_memory``: glibc keeps freed memory in the process (``python -m pdrl.fit`` calls it before training).

Denormal floats (``flush_denormals``): flushed to zero on every CPU thread that torch computes on, not only the
calling one.

A float32 below 1.2e-38 is *denormal*; x86 CPUs handle those in microcode, tens of times slower than normal
numbers. Long runs make them: Adam's running mean decays by 0.9 a step wherever a gradient is (nearly) zero. In
the shallow MNIST task (weights initialised with std 1e-4) 44% of Adam's ``exp_avg`` entries were denormal after
2000 steps, and one fused Adam step over the 28M parameters, timed on that checkpoint's state (2 threads, an
AMX Xeon), took 105 ms instead of 18 ms with the denormals flushed: py-spy put it at 54% of every step.

``torch.set_flush_denormal`` sets the flags (FTZ/DAZ) of the calling thread only, while torch's kernels run on
its OpenMP threads too, so :func:`flush_denormals` also runs it on each thread of that pool, through each OpenMP
runtime loaded in the process (torch's wheel and scikit-learn's each bring their own libgomp; the first version
reached only the first one mapped, scikit-learn's, and left half of a 2-thread step unflushed). Values below
1.2e-38 then read as zero. In a training step that changes nothing that matters: an Adam update from such a
running mean is below 1e-30 of the learning rate.

Freed memory (``keep_freed_memory``): kept inside the process (glibc ``mallopt``), so that large tensors are not
mapped and unmapped on every step.

glibc serves an allocation above its mmap threshold with a fresh ``mmap`` and returns it to the kernel on
``free``; the threshold adapts upwards, but never past 32 MiB. A training step whose activations are larger
than that (the joint MI critic on all n^2 pairs: 7 stacked critics x 128^2 pairs x 128 units x 4 bytes =
59 MB a layer) then pays a page fault per 4 KiB page of every such tensor, every step: on the 2-core CPU of
``bench/results/mi_benchmark.md`` that was half of the step's time (42 s of system time in a 58 s run).
Raising the mmap and trim thresholds keeps those pages in the heap for the next step. The numbers computed
do not change, only where their memory comes from; the price is that the process keeps up to ``limit_bytes``
of freed memory instead of returning it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from pathlib import Path

import torch
from pytorch_lightning import Callback, LightningModule, Trainer


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix products natively: CUDA with bf16, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


# GNU libgomp; LLVM's libomp and Intel's libiomp5 export the same GOMP_parallel entry point for compatibility
OPENMP_RUNTIMES = ("libgomp", "libomp", "libiomp5")


def loaded_openmp_runtimes() -> list[str]:
    """The paths of the OpenMP runtimes loaded in this process (Linux: from /proc/self/maps), each once.

    Often more than one: torch's wheel ships its own libgomp, and so does scikit-learn's.
    """
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return []
    runtimes = []
    for line in maps.read_text().splitlines():
        path = line.split()[-1]
        if any(Path(path).name.startswith(name) for name in OPENMP_RUNTIMES) and path not in runtimes:
            runtimes.append(path)
    return runtimes


def flush_denormals(enabled: bool = True) -> bool:
    """Set (or, with ``enabled=False``, clear) flush-to-zero on the calling thread and on every thread of each
    OpenMP runtime loaded in the process (torch's, and any other such as scikit-learn's), each region run with
    ``torch.get_num_threads()`` threads; False where the CPU has no such mode (``torch.set_flush_denormal``: x86
    with SSE3 only), where nothing is changed. Where no OpenMP runtime is found (not Linux, or a torch built
    without OpenMP) only the calling thread is set.
    """
    if not torch.set_flush_denormal(enabled):
        return False
    body_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

    def body(_: int | None) -> None:  # runs once on each thread of the parallel region, the calling thread included
        torch.set_flush_denormal(enabled)

    callback = body_type(body)
    for runtime in loaded_openmp_runtimes():
        parallel = ctypes.CDLL(runtime).GOMP_parallel  # CDLL releases the GIL during the call: each thread runs body
        parallel.argtypes = [body_type, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        parallel.restype = None
        parallel(callback, None, torch.get_num_threads(), 0)
    return True


class FlushDenormalsDuringFit(Callback):
    """Denormals flushed on every thread from the start of ``fit`` to its end, also when it stops on an exception (a
    LightningModule hears of neither, so a task returns this from ``configure_callbacks``). CPU only."""

    def __init__(self) -> None:
        self.flushed = False

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.flushed = pl_module.device.type == "cpu" and flush_denormals(True)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if self.flushed:
            flush_denormals(False)  # the process's other work gets its floats back as they were
            self.flushed = False


M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3


def on_glibc() -> bool:
    """Whether this process runs on Linux with glibc, the only C library whose ``mallopt`` this module sets."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds to ``limit_bytes``; True when set, False where the C library is
    not glibc (macOS, Windows, musl), where nothing is changed."""
    if not 0 < limit_bytes < 1 << 31:
        raise ValueError(f"limit_bytes must be in (0, 2**31) (mallopt takes a C int), got {limit_bytes}.")
    if not on_glibc():
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, limit_bytes)) and bool(libc.mallopt(M_TRIM_THRESHOLD, limit_bytes))
