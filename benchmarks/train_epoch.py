"""One ReVeal training run at defaults in this process; prints its timings and peak memory as JSON.

benchmarks/run.py starts this in a fresh process per architecture. The peak resident set size is
VmHWM of /proc/self/status: the high-water mark of this program's own memory. (ru_maxrss would not
do: Linux carries it over from the parent at fork and across exec, so a child of a large process,
or of the re-run under mimalloc, reports the parent's size when its own is smaller.)

    .venv/bin/python benchmarks/train_epoch.py --arch s4d --data PATH --out DIR [--epochs 1] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ssmscope.allocator import keep_freed_memory, loaded_allocator, use_preferred_allocator
from ssmscope.config import RunConfig, TrainConfig
from ssmscope.train.loop import train_run


def peak_rss_mb() -> float:
    """VmHWM of this process (Linux) in MB."""
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()

    use_preferred_allocator()  # as the ssmscope command does: mimalloc unless SSMSCOPE_ALLOCATOR=glibc
    keep = keep_freed_memory()  # under glibc: off with SSMSCOPE_KEEP_FREED_MEMORY=0
    lines = []
    start = time.perf_counter()
    train_run(RunConfig(args.arch, args.data, train=TrainConfig(epochs=args.epochs, device=args.device)), args.out, overwrite=True, log=lines.append)
    total = time.perf_counter() - start
    epochs = [json.loads(line) for line in open(f"{args.out}/metrics.jsonl")]
    print(json.dumps({
        "arch": args.arch,
        "allocator": loaded_allocator(),
        "keep_freed_memory": keep,
        "epochs": args.epochs,
        "epoch_seconds": [e["seconds"] for e in epochs],  # train pass + validation, as logged
        "total_seconds": total,  # data preparation, all epochs, test evaluation, writing
        "peak_rss_mb": peak_rss_mb(),
        "device": args.device,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None,
    }))


if __name__ == "__main__":
    main()
