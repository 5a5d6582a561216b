"""``pdrl.cpu_allocator.keep_freed_memory``: after it, a large tensor freed and allocated again reuses the
process's pages instead of faulting in fresh ones from the kernel."""

import platform
import subprocess
import sys

import pytest

from pdrl.cpu_allocator import keep_freed_memory

COUNT_FAULTS = """
import resource, sys, torch
from pdrl.cpu_allocator import keep_freed_memory
torch.set_num_threads(1)
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def allocate_and_free():  # 64 MiB, above glibc's largest adaptive mmap threshold (32 MiB)
    torch.empty(16 << 20).fill_(1.0)
faults = []
for _ in range(12):  # the median over 12: the heap's first growth to its working size does not count
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    allocate_and_free()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults)[6])
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)


def page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", COUNT_FAULTS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@glibc_only
def test_a_freed_large_tensor_is_reused_without_page_faults():
    default, kept = page_faults("default"), page_faults("keep")
    assert default >= 1  # each tensor mapped afresh: 16384 faults with 4 KiB pages (1 with transparent huge pages)
    assert kept == 0


def test_limit_must_fit_a_c_int():
    for limit in (0, -1, 1 << 31):
        with pytest.raises(ValueError, match=r"limit_bytes must be in \(0, 2\*\*31\)"):
            keep_freed_memory(limit)
