"""keep_freed_memory: large blocks come from glibc's heap and stay there after free (not mmap/munmap)."""

import subprocess
import sys

import pytest

# mallinfo2 (glibc >= 2.33): arena = bytes in the heap, hblkhd = bytes in separately mmapped blocks.
PROBE = """
import ctypes, ctypes.util
from ssmscope.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory()
block = libc.malloc(48 << 20)          # a 48 MB batch-sized tensor
held = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
print(applied, held.hblkhd >> 20, held.arena >> 20, after.arena >> 20)
"""


def probe(env_value: str) -> tuple[str, int, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={"SSMSCOPE_KEEP_FREED_MEMORY": env_value, "PATH": ""}).stdout.split()
    return out[0], int(out[1]), int(out[2]), int(out[3])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2")
def test_large_blocks_come_from_the_heap_and_stay_after_free():
    applied, mapped_mb, heap_mb, heap_after_free_mb = probe("1")
    assert applied == "True"
    assert mapped_mb == 0 and heap_mb >= 48  # served from the heap, not by its own mmap
    assert heap_after_free_mb >= 48  # kept for reuse, not trimmed back to the kernel


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2")
def test_turned_off_glibc_maps_large_blocks_separately():
    applied, mapped_mb, _, heap_after_free_mb = probe("0")
    assert applied == "False"
    assert mapped_mb >= 48 and heap_after_free_mb < 48
