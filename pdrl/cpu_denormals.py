"""Flush denormal floats to zero on every CPU thread that torch computes on, not only the calling one.

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
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from pytorch_lightning import Callback, LightningModule, Trainer

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
