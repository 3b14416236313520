"""One ReVeal training run at defaults in this process; prints its timings and peak memory as JSON.

benchmarks/run.py starts this in a fresh process per architecture, so each peak resident set size
belongs to one run alone (ru_maxrss of the process itself, after the run).

    .venv/bin/python benchmarks/train_epoch.py --arch s4d --data PATH --out DIR [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from ssmscope.allocator import keep_freed_memory, loaded_allocator, use_preferred_allocator
from ssmscope.config import RunConfig, TrainConfig
from ssmscope.train.loop import train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    use_preferred_allocator()  # as the ssmscope command does: mimalloc unless SSMSCOPE_ALLOCATOR=glibc
    keep = keep_freed_memory()  # under glibc: off with SSMSCOPE_KEEP_FREED_MEMORY=0
    lines = []
    start = time.perf_counter()
    train_run(RunConfig(args.arch, args.data, train=TrainConfig(epochs=args.epochs)), args.out, overwrite=True, log=lines.append)
    total = time.perf_counter() - start
    epochs = [json.loads(line) for line in open(f"{args.out}/metrics.jsonl")]
    print(json.dumps({
        "arch": args.arch,
        "allocator": loaded_allocator(),
        "keep_freed_memory": keep,
        "epochs": args.epochs,
        "epoch_seconds": [e["seconds"] for e in epochs],  # train pass + validation, as logged
        "total_seconds": total,  # data preparation, all epochs, test evaluation, writing
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
