"""How a training process gets its memory: mimalloc when it is installed, else glibc keeping freed memory.

**mimalloc (the default of the ``ssmscope`` command).** Training allocates tensors of a few sizes
per batch width (up to 16 widths an epoch), frees them all after each step and allocates them
again. glibc's heap splits its free space among them and among the small allocations made
meanwhile, so the heap grows with every new width: a 2-layer s4d epoch on ReVeal held 2.5 GB of
heap for about 0.2 GB in use between steps (docs/PERFORMANCE.md, "Memory"). mimalloc keeps
allocations of each size class together and reused the same memory: peak 1.4 GB, and slightly
faster. The ``ssmscope`` command runs itself again under mimalloc at start
(:func:`use_preferred_allocator`: LD_PRELOAD of the library that the ``cmeel-mimalloc`` package
installs, with ``MIMALLOC_PURGE_DELAY=-1`` so that freed pages stay with the process for reuse
instead of being faulted in anew). ``SSMSCOPE_ALLOCATOR=glibc`` keeps glibc. The allocator does
not change any number a run computes (tested).

**glibc, keeping freed memory** (:func:`keep_freed_memory`). glibc serves every allocation above
its mmap threshold (at most 32 MB, dynamically) with a fresh mmap and returns it with munmap on
free. A training batch of (64, 128, 1024) float32 activations is 32 MB and its spectra are twice
that, so on CPU each such tensor is a new mapping whose pages the kernel must fault in and zero on
first touch: in a profile of an s4d training step this page faulting, not arithmetic, was most of
the time of padding, complex products and FFTs. Raising the mmap threshold and the trim threshold
to 1 GiB keeps those blocks in the heap for reuse (2.2x faster s4d epochs), at the price of the heap
growth above. It is a process-wide setting, so the library never does this by itself: the
``ssmscope`` command calls :func:`keep_freed_memory` at start, scripts may too, and
``SSMSCOPE_KEEP_FREED_MEMORY=0`` in the environment turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import os
import sys
from pathlib import Path

from .errors import SsmscopeError

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30

ALLOCATORS = ("mimalloc", "glibc")  # values of SSMSCOPE_ALLOCATOR; the first is the default
MIMALLOC_PACKAGE = "cmeel-mimalloc"
MIMALLOC_SETTINGS = {"MIMALLOC_PURGE_DELAY": "-1"}  # never hand freed pages back: reuse them (set only where unset)
REEXECUTED = "SSMSCOPE_ALLOCATOR_REEXECUTED"  # marks the re-run process, so that it never runs itself again


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB; True if applied (False off glibc or when disabled)."""
    if os.environ.get("SSMSCOPE_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES))


def mimalloc_library() -> Path | None:
    """The shared library that the cmeel-mimalloc package installed (None if it is not installed)."""
    try:
        files = importlib.metadata.distribution(MIMALLOC_PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = sorted((Path(f.locate()) for f in files if f.name.startswith("libmimalloc.so")), key=lambda p: len(p.name))
    return next((p for p in found if p.is_file()), None)


def loaded_allocator() -> str:
    """"mimalloc" when libmimalloc is mapped into this process, else "glibc" on Linux, "system" elsewhere."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "mimalloc" if "libmimalloc" in maps else "glibc"


def chosen_allocator() -> str:
    """SSMSCOPE_ALLOCATOR (default mimalloc), checked."""
    choice = os.environ.get("SSMSCOPE_ALLOCATOR", ALLOCATORS[0])
    if choice not in ALLOCATORS:
        raise SsmscopeError(f"SSMSCOPE_ALLOCATOR={choice!r}: choose one of {', '.join(ALLOCATORS)} (or leave it unset for {ALLOCATORS[0]})")
    return choice


def use_preferred_allocator() -> None:
    """Run this very process's command again with mimalloc preloaded, once (os.execve: same pid).

    Does nothing when SSMSCOPE_ALLOCATOR=glibc, off Linux, when mimalloc is already loaded or not
    installed, or in the process this function started (whether or not the preload took).
    Call it first thing, before anything is printed or written.
    """
    if chosen_allocator() != "mimalloc" or not sys.platform.startswith("linux") or os.environ.get(REEXECUTED):
        return
    library = mimalloc_library()
    if library is None or loaded_allocator() == "mimalloc":
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = f"{library}:{env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else str(library)
    env.update({name: value for name, value in MIMALLOC_SETTINGS.items() if name not in env})
    env[REEXECUTED] = "1"
    os.execve(sys.executable, sys.orig_argv, env)
