"""``pdrl.hardware.keep_freed_memory``: after it, a 64 MiB tensor comes from the heap instead of its own
``mmap`` (which ``free`` unmaps, so every new one is page-faulted in afresh), and its memory stays in the heap
after it is freed. Read from glibc's own counters (``mallinfo2``), in a fresh process per mode."""

import subprocess
import sys

import pytest

from pdrl.hardware import keep_freed_memory, on_glibc

MAPPED_AND_KEPT = """
import ctypes, sys, torch
from pdrl.hardware import keep_freed_memory

class MallInfo2(ctypes.Structure):  # glibc >= 2.33, malloc.h
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory()
tensor = torch.empty(16 << 20)  # 64 MiB, above glibc's largest adaptive mmap threshold (32 MiB)
mapped = libc.mallinfo2().hblkhd  # bytes in chunks that have their own mmap
del tensor
print(mapped, libc.mallinfo2().fordblks)  # and the free bytes kept in the heap
"""

glibc_only = pytest.mark.skipif(not on_glibc(), reason="mallopt is glibc's")


def mapped_and_kept(mode: str) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", MAPPED_AND_KEPT, mode], capture_output=True, text=True, check=True)
    mapped, kept = map(int, done.stdout.split())
    return mapped, kept


@glibc_only
def test_a_large_tensor_comes_from_the_heap_and_stays_there_when_freed():
    size = 64 << 20
    mapped, kept = mapped_and_kept("default")
    assert mapped >= size and kept < size  # its own mmap, unmapped by free
    mapped, kept = mapped_and_kept("keep")
    assert mapped < size and kept >= size


def test_limit_must_fit_a_c_int():
    for limit in (0, -1, 1 << 31):
        with pytest.raises(ValueError, match=r"limit_bytes must be in \(0, 2\*\*31\)"):
            keep_freed_memory(limit)
