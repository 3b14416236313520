"""The allocator: mimalloc for the command (same numbers), and glibc keeping large freed blocks in its heap."""

import json
import os
import subprocess
import sys

import pytest

from run_files import same_weights
from ssmscope.allocator import ALLOCATORS, mimalloc_library

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


def _train_command(out, data, allocator: str) -> subprocess.CompletedProcess:
    """`python -m ssmscope train` as a user runs it (so the command may run itself again under mimalloc)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSMSCOPE_ALLOCATOR", "MIMALLOC_", "LD_PRELOAD"))}
    env["SSMSCOPE_ALLOCATOR"] = allocator
    return subprocess.run(
        [sys.executable, "-m", "ssmscope", "train", "--arch", "smr_s4d-2layers", "--data", str(data), "--out", str(out),
         "--epochs", "2", "--max-len", "64", "--embed-dim", "16", "--d-state", "8", "--threads", "1"],
        capture_output=True, text=True, env=env,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD and /proc/self/maps")
def test_the_command_runs_under_mimalloc_and_the_allocator_changes_no_number(small_corpus, tmp_path):
    assert mimalloc_library() is not None  # a dependency of the package
    runs = {}
    for allocator in ALLOCATORS:
        done = _train_command(tmp_path / allocator, small_corpus, allocator)
        assert done.returncode == 0, done.stderr
        runs[allocator] = tmp_path / allocator
        assert json.loads((runs[allocator] / "config.json").read_text())["environment"]["allocator"] == allocator
    assert (runs["mimalloc"] / "metrics.json").read_text() == (runs["glibc"] / "metrics.json").read_text()
    assert same_weights(runs["mimalloc"], runs["glibc"])


def test_an_unknown_allocator_is_one_line_and_exit_2(small_corpus, tmp_path):
    done = _train_command(tmp_path / "run", small_corpus, "tcmalloc")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "SSMSCOPE_ALLOCATOR='tcmalloc': choose one of mimalloc, glibc" in done.stderr
    assert not (tmp_path / "run").exists()
