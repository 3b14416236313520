"""ssmscope benchmarks: plain timings, not tests. ``make bench`` runs this file.

Prints a table and writes benchmarks/results.json. Timings are medians over repeats, taken in
one process; compare ratios within a run, not absolute numbers across machines.

    tokenizer       lexing + normalisation throughput on ReVeal (or on synthetic C if absent)
    s4d_layer       S4D forward+backward, float32, one thread, B=16 H=128 N=64 L=1024
    train_step      one optimiser step per architecture at defaults, B=64, L=256 (tokens/s)
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from ssmscope.data import load_dataset, tokenize
from ssmscope.models import ARCHITECTURES, S4D, build_model

HERE = Path(__file__).resolve().parent
REVEAL = HERE.parents[1] / "shared" / "data" / "reveal" / "reveal.jsonl.gz"


def median_seconds(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_tokenizer() -> dict:
    if REVEAL.is_file():
        codes = [r.code for r in load_dataset(REVEAL)[:3000]]
        source = "ReVeal, first 3000 functions"
    else:
        codes = ["int f(int a, char *b) { for (int i = 0; i < a; i++) { b[i] = g(i) + 0x1f; } return -1; }\n" * 20] * 3000
        source = "synthetic C"
    megabytes = sum(len(c) for c in codes) / 1e6
    seconds = median_seconds(lambda: [tokenize(c, "identifiers") for c in codes], repeats=3)
    return {"source": source, "megabytes": round(megabytes, 2), "seconds": seconds, "mb_per_s": megabytes / seconds}


def bench_s4d_layer() -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    layer = S4D(128, d_state=64)
    u = torch.randn(16, 128, 1024, requires_grad=True)

    def step():
        layer.zero_grad(set_to_none=True)
        layer(u).sum().backward()

    seconds = median_seconds(step)
    kernel_seconds = median_seconds(lambda: layer.kernel(1024).sum().backward())
    torch.set_num_threads(torch.get_num_interop_threads())
    return {"shape": "B=16 H=128 N=64 L=1024", "fwd_bwd_ms": seconds * 1e3, "kernel_fwd_bwd_ms": kernel_seconds * 1e3, "kernel_share": kernel_seconds / seconds}


def bench_train_steps() -> dict:
    torch.manual_seed(0)
    B, L = 64, 256
    tokens = torch.randint(2, 5000, (B, L))
    lengths = torch.full((B,), L)
    labels = torch.randint(0, 2, (B,)).float()
    out = {}
    for arch in ARCHITECTURES:
        model = build_model(arch, 5000)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(tokens, lengths), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        seconds = median_seconds(step, repeats=3)
        out[arch] = {"step_ms": seconds * 1e3, "tokens_per_s": B * L / seconds}
    return out


def main() -> None:
    results = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "tokenizer": bench_tokenizer(),
        "s4d_layer": bench_s4d_layer(),
        "train_step": bench_train_steps(),
    }
    tok, layer = results["tokenizer"], results["s4d_layer"]
    print(f"{'benchmark':<34}{'value':>14}")
    print(f"{'tokenizer (' + tok['source'][:18] + ')':<34}{tok['mb_per_s']:>10.2f} MB/s")
    print(f"{'s4d layer fwd+bwd (1 thread)':<34}{layer['fwd_bwd_ms']:>11.1f} ms")
    print(f"{'  of which kernel fwd+bwd':<34}{layer['kernel_fwd_bwd_ms']:>11.1f} ms ({layer['kernel_share']:.0%})")
    for arch, r in results["train_step"].items():
        print(f"{'train step ' + arch + ' B=64 L=256':<34}{r['tokens_per_s']:>10.0f} tok/s")
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {HERE / 'results.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
