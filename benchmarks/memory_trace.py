"""Where a training epoch's resident memory goes: RSS, its high-water mark and glibc's heap, step by step.

Trains one ReVeal epoch of ARCH in this process (as `ssmscope train` would, without writing a run)
and prints a line whenever the high-water mark has grown by 50 MB, then the train pass's seconds.
Run it under the allocator to study:

    .venv/bin/python benchmarks/memory_trace.py --arch s4d-2layers                      # glibc, freed memory kept
    SSMSCOPE_KEEP_FREED_MEMORY=0 .venv/bin/python benchmarks/memory_trace.py --arch s4d-2layers   # glibc as it comes
    .venv/bin/python benchmarks/memory_trace.py --arch s4d-2layers --trim-every 10      # glibc, malloc_trim every 10 steps
    .venv/bin/python benchmarks/memory_trace.py --arch s4d-2layers --mmap-threshold-mb 64   # glibc, blocks >= 64 MB mapped anew
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
        .venv/bin/python benchmarks/memory_trace.py --arch s4d-2layers                  # jemalloc (Debian's libjemalloc2)
    LD_PRELOAD=$(.venv/bin/python -c "from ssmscope.allocator import mimalloc_library as m; print(m())") \
        MIMALLOC_PURGE_DELAY=-1 .venv/bin/python benchmarks/memory_trace.py --arch s4d-2layers   # mimalloc, as ssmscope runs

heap / heap_used: glibc's mallinfo2 arena and in-use bytes (0 under another allocator).
"""

from __future__ import annotations

import argparse
import ctypes
import time
from pathlib import Path

import torch
from torch import nn

from ssmscope.allocator import M_MMAP_THRESHOLD, keep_freed_memory, loaded_allocator
from ssmscope.config import RECOMPUTE_MODES, RunConfig, TrainConfig
from ssmscope.models import build_model
from ssmscope.train.loop import prepare_data, recompute_branches, train_epoch

REVEAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "reveal" / "reveal.jsonl.gz"


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


LIBC = ctypes.CDLL("libc.so.6")
LIBC.mallinfo2.restype = MallInfo2
LIBC.malloc_trim.argtypes = [ctypes.c_size_t]


def memory() -> dict[str, int]:
    """MB: resident set (VmRSS), its high-water mark (VmHWM), glibc heap size and bytes in use."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(("VmRSS", "VmHWM")))
    info = LIBC.mallinfo2()
    return {"rss": int(status["VmRSS"].split()[0]) >> 10, "hwm": int(status["VmHWM"].split()[0]) >> 10,
            "heap": info.arena >> 20, "heap_used": info.uordblks >> 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True)
    parser.add_argument("--data", default=str(REVEAL))
    parser.add_argument("--trim-every", type=int, default=0, help="call glibc's malloc_trim(0) after every N steps (0: never)")
    parser.add_argument("--mmap-threshold-mb", type=int, default=None, help="after keep_freed_memory: serve blocks of this size and more by mmap again")
    parser.add_argument("--recompute-branches", default=TrainConfig().recompute_branches, choices=RECOMPUTE_MODES)
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="smaller batches: less activation memory, another training")
    args = parser.parse_args()

    keep = keep_freed_memory()
    if args.mmap_threshold_mb is not None:
        LIBC.mallopt(M_MMAP_THRESHOLD, args.mmap_threshold_mb << 20)
    print(f"allocator {loaded_allocator()}, glibc keeping freed memory: {keep}; start {memory()}")
    config = RunConfig(args.arch, args.data, train=TrainConfig(epochs=1, batch_size=args.batch_size, recompute_branches=args.recompute_branches))
    data = prepare_data(config)
    print(f"after data preparation {memory()}")
    torch.manual_seed(0)
    model = build_model(config.arch, len(data.vocab), config.model)
    model.recompute_branches = recompute_branches(config.train.recompute_branches, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(10.665))
    highest = 0

    def after_step(step: int, total: float, count: int) -> None:
        nonlocal highest
        if args.trim_every and step % args.trim_every == 0:
            LIBC.malloc_trim(0)
        now = memory()
        if now["hwm"] >= highest + 50:
            highest = now["hwm"]
            print(f"step {step}: {now}", flush=True)

    start = time.perf_counter()
    train_epoch(model, optimizer, loss_fn, data.splits["train"], config, 1, torch.device("cpu"), after_step=after_step)
    print(f"end of the epoch: {memory()}; train pass {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
