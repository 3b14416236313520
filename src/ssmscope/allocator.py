"""Keep freed memory in the process instead of handing it back to the kernel after every tensor.

glibc serves every allocation above its mmap threshold (at most 32 MB, dynamically) with a fresh
mmap and returns it with munmap on free. A training batch of (64, 128, 1024) float32 activations is
32 MB and its spectra are twice that, so on CPU each such tensor is a new mapping whose pages the
kernel must fault in and zero on first touch: in a profile of an s4d training step this page
faulting, not arithmetic, was most of the time of padding, complex products and FFTs
(docs/PERFORMANCE.md). Raising the mmap threshold and the trim threshold to 1 GiB keeps those
blocks in the heap for reuse. It is a process-wide setting, so the library never does this by
itself: the ``ssmscope`` command calls :func:`keep_freed_memory` at start, scripts may too, and
``SSMSCOPE_KEEP_FREED_MEMORY=0`` in the environment turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 30


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
