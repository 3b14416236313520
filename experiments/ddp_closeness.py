"""How close a 2-process (DDP) run comes to the 1-process run with the same global batch.

Generates the small synthetic corpus of tests/test_distributed.py, trains smr_s4d with dropout 0
once as one process and once under torchrun with two (gloo), each process on one thread, and prints the largest weight
difference per tensor (relative to the tensor's largest value), the largest train-loss difference
and whether metrics.json is identical. docs/METHODS.md ("How close to one process") quotes it.

    .venv/bin/python experiments/ddp_closeness.py --out runs/ddp_closeness [--batch-size 11]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from ssmscope.data.synthetic import generate
from ssmscope.files import write_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the corpus and the two runs (replaced runs)")
    parser.add_argument("--batch-size", type=int, default=11, help="11: shares of 6 + 5 and a 1-function last batch")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "synth.jsonl"
    write_jsonl(corpus, generate(400, [8, 16]))
    train = ["-m", "ssmscope", "train", "--arch", "smr_s4d", "--data", str(corpus), "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--max-len", "128", "--embed-dim", "32", "--device", "cpu", "--dropout", "0", "--overwrite",
             "--threads", "1"]  # torchrun runs each rank on 1 thread; the one-process run must too (docs/METHODS.md, "Reproducibility")
    subprocess.run([sys.executable, *train, "--out", str(out / "one")], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *train, "--out", str(out / "two")],
                   check=True, capture_output=True)

    one, two = (torch.load(out / name / "model.pt", weights_only=True) for name in ("one", "two"))
    worst = {name: ((two["state_dict"][name] - w).abs().max() / w.abs().max()).item() for name, w in one["state_dict"].items()}
    lines = [[json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()] for name in ("one", "two")]
    loss_gap = max(abs(a["train_loss"] - b["train_loss"]) for a, b in zip(*lines, strict=True))
    for name, value in worst.items():
        print(f"{name:32s} max|w2 - w1| / max|w1| = {value:.2e}")
    print(f"largest over tensors: {max(worst.values()):.2e}")
    print(f"largest train-loss difference over {args.epochs} epochs: {loss_gap:.1e}")
    print(f"best epoch {one['epoch']} / {two['epoch']}; metrics.json identical: {(out / 'one' / 'metrics.json').read_bytes() == (out / 'two' / 'metrics.json').read_bytes()}")


if __name__ == "__main__":
    main()
