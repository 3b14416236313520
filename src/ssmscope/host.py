"""What a run's bits depend on besides its settings: the CPU and torch's intra-op thread count.

A CPU run is bit-reproducible for the same settings, seed, software versions, CPU type and thread
count (docs/METHODS.md, "Reproducibility"). The thread count matters because torch splits a
reduction (a convolution's weight gradient, a sum over the batch) into one partial sum per thread
and adds the partial sums afterwards: another count, another order of float additions. The CPU type
matters because torch and oneDNN pick vectorised kernels by instruction set (AVX2, AVX-512), which
also add in other orders. Every run records both (config.json "environment"), and ``--resume``
keeps the recorded thread count.
"""

from __future__ import annotations

import platform
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from .errors import SsmscopeError


def cpu_model() -> str:
    """The CPU's model name as the OS reports it (/proc/cpuinfo on Linux), e.g. "AMD EPYC"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels were dispatched to in this process (DEFAULT, AVX2, AVX512, ...)."""
    return torch.backends.cpu.get_cpu_capability()


@contextmanager
def threads_set_to(threads: int | None) -> Iterator[int]:
    """Run the block with torch's intra-op thread count set to ``threads`` (None: leave torch's
    choice, one per physical core or OMP_NUM_THREADS) and restore the previous count afterwards;
    yields the count in use. The count is process-wide, so library calls must not leave it changed."""
    if threads is not None and threads < 1:
        raise SsmscopeError(f"--threads must be at least 1, got {threads}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def host_record() -> dict:
    """What this process's floating-point results depend on, for config.json and checkpoint.pt."""
    return {"cpu": cpu_model(), "cpu_capability": cpu_capability(), "threads": torch.get_num_threads()}


def differences(recorded: dict, now: dict) -> list[str]:
    """Human-readable differences between two :func:`host_record` dicts (keys missing from an older record are skipped)."""
    names = {"cpu": "CPU", "cpu_capability": "torch CPU kernels", "threads": "threads"}
    return [f"{names[k]} {recorded[k]!r} then, {now[k]!r} now" for k in names if k in recorded and recorded[k] != now.get(k)]
