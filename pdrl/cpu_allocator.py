"""Keep freed CPU memory inside the process (glibc ``mallopt``), so that large tensors are not mapped and
unmapped on every step.

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
