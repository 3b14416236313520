"""ssmscope benchmarks: plain timings, not tests. ``make bench`` runs this file.

Prints a table and writes benchmarks/results.json. Timings are medians over repeats, taken in one
process; compare ratios within a run, not absolute numbers across machines (docs/PERFORMANCE.md).

    tokenizer     lexing + normalisation throughput on ReVeal (or on synthetic C if absent)
    s4d_layer     S4D forward+backward, float32, one thread, B=16 H=128 N=64 L=1024: the layer
                  with the fast (chunked) kernel, with the reference (Vandermonde) kernel, as first
                  written (Vandermonde + autograd FFT), and S5 from s5-pytorch
    scaling       the same for the fast and reference kernels as L, H and N grow
    train_tokens  training steps per architecture on ReVeal-shaped batches, with and without length
                  bucketing (real, unpadded tokens per second)
    depth         training steps of s4d and smr_s4d at 1 and 2 layers on the same bucketed ReVeal
                  batches, interleaved in one process: the 2-layer / 1-layer time ratio
    block_parts   forward+backward of each part of a residual S4D block (B=64, H=128, L=256, one
                  thread): where a 2-layer model's extra time goes
    streaming     S4D.step, one token at a time: tokens/s and cost early vs late in the stream
    mamba_steps   training steps of s4d, mamba and mamba-2layers on the same bucketed ReVeal batches,
                  interleaved in one process: mamba's step time over s4d's
    selective_scan  mamba.selective_scan forward+backward, B=16 D=256 N=16 L=1024, one thread: the
                  compiled loops against a PyTorch step loop (same process) and their error
                  against a float64 loop
    attention_reading  one function's hidden attention read (lag sums and row ranges, D=256 N=16
                  L=1024, one thread): the compiled row walk against scan_attention's maps
    mamba_layer   a Mamba block's forward+backward (B=16, H=128, L=1024, one thread) part by part,
                  beside the S4D layer and s5-pytorch's S5 at the same width: cost per token
    train_runs    one ReVeal epoch per architecture at defaults and at 2 layers, each in a fresh
                  process: epoch seconds and peak RSS (needs ../shared/data/reveal; the slowest part);
                  with --device cuda on the GPU, peak GPU memory beside
    cuda          only where a CUDA device is: the selective scan (PyTorch path) against a CUDA step
                  loop with its error and peak GPU memory, Mamba block vs S4D layer, and interleaved
                  training steps of s4d, mamba and mamba-2layers on the GPU

    .venv/bin/python benchmarks/run.py [--only SECTION ...] [--skip SECTION ...] [--archs ARCH ...] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ssmscope.allocator import keep_freed_memory, loaded_allocator, use_preferred_allocator
from ssmscope.analysis.metrics import analyze_bank
from ssmscope.config import RunConfig, TrainConfig
from ssmscope.data import load_dataset, tokenize
from ssmscope.data.batching import collate, length_grouped_batches
from ssmscope.models import ARCHITECTURES, S4D, build_model
from ssmscope.models.classifier import WITHOUT_S4D

HERE = Path(__file__).resolve().parent
REVEAL = HERE.parents[1] / "shared" / "data" / "reveal" / "reveal.jsonl.gz"
SECTIONS = ("tokenizer", "s4d_layer", "scaling", "train_tokens", "depth", "block_parts", "analysis", "streaming", "selective_scan",
            "attention_reading", "mamba_layer", "mamba_steps", "train_runs", "cuda")
DEEP_ARCHS = tuple(arch for arch in ARCHITECTURES if arch not in WITHOUT_S4D)  # the architectures --layers applies to


def median_seconds(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class one_thread:
    """Run a block on one intra-op thread (the layer targets are stated for one thread)."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


def reference(layer: S4D) -> S4D:
    """The same layer, parameters shared, whose ``kernel`` is the direct Vandermonde evaluation."""
    layer = copy.copy(layer)
    layer.kernel = lambda L: S4D.kernel(layer, L, "vandermonde")
    return layer


class Straightforward(torch.nn.Module):
    """The layer as first written: Vandermonde kernel and autograd through rfft/irfft (no custom backward)."""

    def __init__(self, layer: S4D):
        super().__init__()
        self.layer = layer

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        L = u.shape[-1]
        K = self.layer.kernel(L, "vandermonde")  # (H, L)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(K, n=2 * L), n=2 * L)[..., :L]
        return y + self.layer.D[:, None] * u


def cuda_seconds(fn, repeats: int = 5, warmup: int = 1) -> float:
    """median_seconds for GPU work: the clock is read after the device has finished."""
    def synchronised():
        torch.cuda.synchronize()
        fn()
        torch.cuda.synchronize()

    return median_seconds(synchronised, repeats, warmup)


def layer_fwd_bwd_seconds(layer: torch.nn.Module, u: torch.Tensor, repeats: int = 5) -> float:
    def step():
        layer.zero_grad(set_to_none=True)
        layer(u).sum().backward()

    return median_seconds(step, repeats)


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
    B, H, N, L = 16, 128, 64, 1024
    torch.manual_seed(0)
    layer = S4D(H, d_state=N)
    u = torch.randn(B, H, L, requires_grad=True)  # (B, H, L)
    with one_thread():
        fast = layer_fwd_bwd_seconds(layer, u, repeats=7)
        slow = layer_fwd_bwd_seconds(reference(layer), u, repeats=7)
        plain = layer_fwd_bwd_seconds(Straightforward(layer), u, repeats=7)
        fast_kernel = median_seconds(lambda: layer.kernel(L).sum().backward())
        slow_kernel = median_seconds(lambda: layer.kernel(L, "vandermonde").sum().backward())
        s5 = bench_s5(B, H, N, L)
    exact = copy.deepcopy(layer).double().kernel(L, "vandermonde").detach()  # float64, direct form
    error = (layer.kernel(L).detach().double() - exact).abs().max() / exact.abs().max()
    return {
        "shape": f"B={B} H={H} N={N} L={L}, float32, 1 thread",
        "fast_ms": fast * 1e3, "reference_ms": slow * 1e3, "speedup": slow / fast,
        "straightforward_ms": plain * 1e3, "speedup_vs_straightforward": plain / fast,
        "fast_kernel_ms": fast_kernel * 1e3, "reference_kernel_ms": slow_kernel * 1e3,
        "fast_kernel_share": fast_kernel / fast, "reference_kernel_share": slow_kernel / slow,
        "fast_max_error_vs_float64": float(error),  # max |K_fast - K_float64| / max |K_float64|
        "s5": s5, "s5_over_fast": None if s5 is None else s5["ms"] / (fast * 1e3),
    }


def bench_s5(B: int, H: int, N: int, L: int) -> dict | None:
    """The S5 layer of s5-pytorch (state size N shared by the H channels) at the same sizes."""
    try:
        from s5 import S5
    except ImportError:
        return None
    torch.manual_seed(0)
    layer = S5(H, N)
    u = torch.randn(B, L, H, requires_grad=True)  # S5 takes (B, L, H)
    from importlib.metadata import version
    return {"package": f"s5-pytorch {version('s5-pytorch')}", "ms": layer_fwd_bwd_seconds(layer, u, repeats=3) * 1e3,
            "parameters": sum(p.numel() for p in layer.parameters())}


def bench_scaling() -> list[dict]:
    B, base = 16, {"H": 128, "N": 64, "L": 1024}
    settings = [dict(base, L=L) for L in (256, 512, 2048)] + [base]
    settings += [dict(base, H=H) for H in (64, 256)] + [dict(base, N=N) for N in (16, 256)]
    rows = []
    with one_thread():
        for s in settings:
            torch.manual_seed(0)
            layer = S4D(s["H"], d_state=s["N"])
            u = torch.randn(B, s["H"], s["L"], requires_grad=True)
            fast = layer_fwd_bwd_seconds(layer, u, repeats=3)
            slow = layer_fwd_bwd_seconds(reference(layer), u, repeats=3)
            rows.append({**s, "B": B, "fast_ms": fast * 1e3, "reference_ms": slow * 1e3, "speedup": slow / fast})
    return rows


def reveal_train_lengths() -> tuple[np.ndarray, str]:
    """Token lengths of the ReVeal train split at defaults (or a log-normal stand-in without ReVeal)."""
    if REVEAL.is_file():
        from ssmscope.train.loop import prepare_data
        data = prepare_data(RunConfig("s4d", str(REVEAL)))
        return data.splits["train"].lengths, "ReVeal train split"
    rng = np.random.default_rng(0)
    return np.clip(rng.lognormal(np.log(118), 1.0, 17626).astype(int), 4, 1024), "log-normal stand-in (median 118)"


def bench_train_tokens(n_batches: int = 12) -> dict:
    """Real tokens/s of optimiser steps on batches drawn from a bucketed and from a random epoch."""
    lengths, source = reveal_train_lengths()
    t = TrainConfig()
    rng = np.random.default_rng(0)
    sequences = [rng.integers(2, 5000, n) for n in lengths]
    schedules = {
        "bucketed": length_grouped_batches(lengths, t.batch_size, np.random.default_rng(1), t.bucket_chunk_batches),
        "random": length_grouped_batches(lengths, t.batch_size, np.random.default_rng(1), 1),  # chunks of one batch: no grouping
    }
    labels = torch.from_numpy(rng.integers(0, 2, len(lengths))).float()
    out = {"lengths": source, "batches": n_batches}
    for arch in ARCHITECTURES:
        torch.manual_seed(0)
        model = build_model(arch, 5000)
        optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
        row = {}
        for name, batches in schedules.items():
            chosen = [batches[i] for i in np.random.default_rng(2).choice(len(batches), n_batches, replace=False)]
            pad = t.pad_to_multiple if name == "bucketed" else 1
            start = time.perf_counter()
            for idx in chosen:
                tokens, lens = collate(sequences, idx, pad)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(tokens, lens), labels[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            seconds = time.perf_counter() - start
            row[name] = sum(int(lengths[idx].sum()) for idx in chosen) / seconds
        row["bucketing_speedup"] = row["bucketed"] / row["random"]
        out[arch] = row
    return out


def interleaved_steps(names: tuple[str, ...], n_batches: int = 24, rounds: int = 5, device: str = "cpu") -> dict:
    """Median seconds per round of ``n_batches`` optimiser steps for each model in ``names`` (registry
    names, e.g. "s4d-2layers"), on the same bucketed ReVeal-length batches.

    The models take turns, batch by batch, so that the machine's load changes hit all alike; each
    round is the sum over the batches, and the first round warms up.
    """
    lengths, source = reveal_train_lengths()
    t = TrainConfig()
    rng = np.random.default_rng(0)
    sequences = [rng.integers(2, 5000, n) for n in lengths]
    batches = length_grouped_batches(lengths, t.batch_size, np.random.default_rng(1), t.bucket_chunk_batches)
    chosen = [batches[i] for i in np.random.default_rng(2).choice(len(batches), n_batches, replace=False)]
    labels = torch.from_numpy(rng.integers(0, 2, len(lengths))).float()
    runs = {}
    for name in names:
        torch.manual_seed(0)
        model = build_model(name, 5000).to(device)
        runs[name] = (model, torch.optim.Adam(model.parameters(), lr=t.lr), [])
    for _ in range(rounds + 1):
        seconds = dict.fromkeys(runs, 0.0)
        for idx in chosen:
            tokens, lens = (x.to(device) for x in collate(sequences, idx, t.pad_to_multiple))
            for name, (model, optimizer, _) in runs.items():
                start = time.perf_counter()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(tokens, lens), labels[idx].to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds[name] += time.perf_counter() - start
        for name, (_, _, seen) in runs.items():
            seen.append(seconds[name])
    return {"lengths": source, "batches": n_batches, "rounds": rounds,
            "seconds": {name: statistics.median(seen[1:]) for name, (_, _, seen) in runs.items()}}


def bench_depth() -> dict:
    """Steps of s4d and smr_s4d at 1 and 2 layers, interleaved: the 2-layer / 1-layer time ratio."""
    out = {}
    for arch in ("s4d", "smr_s4d"):
        steps = interleaved_steps((arch, f"{arch}-2layers"))
        one, two = steps["seconds"][arch], steps["seconds"][f"{arch}-2layers"]
        out.update({k: steps[k] for k in ("lengths", "batches", "rounds")})
        out[arch] = {"one_layer_s": one, "two_layers_s": two, "ratio": two / one}
    return out


def bench_mamba_steps() -> dict:
    """Steps of s4d, mamba and mamba-2layers, interleaved: mamba's time per step against s4d's."""
    steps = interleaved_steps(("s4d", "mamba", "mamba-2layers"), n_batches=12, rounds=3)
    s4d = steps["seconds"]["s4d"]
    return {**steps, "mamba_over_s4d": steps["seconds"]["mamba"] / s4d, "mamba_2layers_over_s4d": steps["seconds"]["mamba-2layers"] / s4d}


def bench_block_parts(B: int = 64, H: int = 128, L: int = 256) -> dict:
    """Milliseconds of forward+backward (median of 7) for each part of ResidualS4DBlock, alternatives
    beside them (element-wise dropout, a plain H→H projection), and the first layer's ReLU + max-pool."""
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)
    x = torch.randn(B, H, L, requires_grad=True)
    s4d, norm = S4D(H), nn.LayerNorm(H)
    glu_projection, plain_projection = nn.Conv1d(H, 2 * H, 1), nn.Conv1d(H, H, 1)
    parts = {
        "S4D": lambda: s4d(x),
        "LayerNorm over channels (with its transposes)": lambda: norm(x.transpose(1, 2)).transpose(1, 2),
        "GELU": lambda: F.gelu(x),
        "channel dropout (Dropout1d, as used)": lambda: F.dropout1d(x, 0.1),
        "element-wise dropout (not used)": lambda: F.dropout(x, 0.1),
        "1x1 conv H->2H + GLU (as used)": lambda: F.glu(glu_projection(x), dim=1),
        "1x1 conv H->H (not used)": lambda: plain_projection(x),
        "residual add": lambda: x + x,
        "ReLU + max over positions (the head's)": lambda: torch.relu(x).amax(-1),
    }

    def fwd_bwd(part):
        y = part()
        y.backward(torch.ones_like(y))

    with one_thread():
        return {"shape": [B, H, L], **{name: 1e3 * median_seconds(lambda p=part: fwd_bwd(p), repeats=7) for name, part in parts.items()}}


def bench_analysis() -> dict:
    rng = np.random.default_rng(0)
    lags = np.arange(1024)
    bank = rng.standard_normal((128, 1)) * np.exp(-lags / rng.uniform(5, 300, (128, 1))) * np.cos(2 * np.pi * rng.uniform(0, 0.5, (128, 1)) * lags)
    return {"bank": "(128, 1024)", "ms": median_seconds(lambda: analyze_bank(bank)) * 1e3}


@torch.no_grad()
def bench_streaming(tokens: int = 4096, window: int = 512) -> dict:
    """S4D.step over one stream (B=1, H=128, N=64), with Ā, C̃ computed once (``recurrent_modes``)."""
    torch.manual_seed(0)
    layer = S4D(128, d_state=64)
    stream = torch.randn(tokens, 1, 128)  # (T, B=1, H)
    out = {"shape": "B=1 H=128 N=64, 1 thread", "tokens": tokens}
    with one_thread():
        for name, modes in (("modes_once", layer.recurrent_modes()), ("modes_every_step", None)):
            state = layer.default_state(1)
            times = np.empty(tokens)
            for t in range(tokens):
                start = time.perf_counter()
                _, state = layer.step(stream[t], state, modes)
                times[t] = time.perf_counter() - start
            early, late = np.median(times[:window]), np.median(times[-window:])
            out[name] = {"tokens_per_s": 1 / np.median(times), "median_step_us_first_512": early * 1e6,
                         "median_step_us_last_512": late * 1e6, "late_over_early": late / early}
    return out


def _step_loop_scan(u, delta, A, B, C):
    """The selective scan one token at a time in PyTorch (autograd keeps every step's state)."""
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    outputs = []
    for t in range(u.shape[-1]):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        outputs.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return torch.stack(outputs, dim=-1)


def _scan_inputs(B: int, D: int, N: int, L: int, dtype=torch.float32) -> list[torch.Tensor]:
    """Inputs in Mamba's ranges at initialisation: Δ log-uniform in [1e-3, 1e-1], A = −(n + 1)."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(B, D, L, generator=g)
    delta = torch.exp(torch.empty(B, D, L).uniform_(np.log(1e-3), np.log(1e-1), generator=g))
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(D, 1)
    return [x.to(dtype).requires_grad_() for x in (u, delta, A, torch.randn(B, N, L, generator=g), torch.randn(B, N, L, generator=g))]


SCAN_INPUT_NAMES = ("u", "delta", "A", "B", "C")  # the order of _scan_inputs


def _error_vs_float64(x: torch.Tensor, x64: torch.Tensor) -> float:
    """max |x − x64| / max |x64|."""
    return float((x.double() - x64).abs().max() / x64.abs().max())


def bench_selective_scan(B: int = 16, D: int = 256, N: int = 16, L: int = 1024) -> dict:
    """Seconds of forward + backward (ȳ = a fixed random tensor) of the compiled scan and of the step
    loop, in this process at one thread; the compiled result's error against the float64 loop."""
    from ssmscope.models.mamba import _numba_applies, selective_scan

    inputs = _scan_inputs(B, D, N, L)
    grad_y = torch.randn(B, D, L, generator=torch.Generator().manual_seed(1))

    def run(fn, xs):
        for x in xs:
            x.grad = None
        start = time.perf_counter()
        y = fn(*xs)
        middle = time.perf_counter()
        y.backward(grad_y.to(y.dtype))
        return y.detach(), [x.grad for x in xs], middle - start, time.perf_counter() - middle

    with one_thread():
        run(selective_scan, inputs)  # compile or load numba's cache
        compiled = [run(selective_scan, inputs) for _ in range(5)]
        loop = [run(_step_loop_scan, inputs) for _ in range(2)]
    fast = statistics.median(f + b for _, _, f, b in compiled)
    slow = statistics.median(f + b for _, _, f, b in loop)
    y, grads, _, _ = compiled[0]
    y64, grads64, _, _ = run(_step_loop_scan, [x.detach().double().requires_grad_() for x in inputs])
    errors = {name: _error_vs_float64(g, g64) for name, g, g64 in zip(SCAN_INPUT_NAMES, grads, grads64)}
    return {
        "shape": f"B={B} D={D} N={N} L={L}, float32, 1 thread", "compiled_path": _numba_applies(*inputs),
        "compiled_s": fast, "compiled_forward_s": statistics.median(f for _, _, f, _ in compiled),
        "step_loop_s": slow, "step_loop_forward_s": statistics.median(f for _, _, f, _ in loop), "speedup": slow / fast,
        "y_error_vs_float64": _error_vs_float64(y, y64), "grad_errors_vs_float64": errors,
    }


def bench_attention_reading(D: int = 256, N: int = 16, L: int = 1024) -> dict:
    """Seconds to read one function's hidden attention (lag sums, row ranges) of a D-channel layer at one
    thread: the compiled row walk against the attention maps of scan_attention (float32), same process."""
    from ssmscope.analysis.selective import LayerReading

    _, delta, A, B, C = (x.detach() for x in _scan_inputs(1, D, N, L))

    def compiled():
        LayerReading(D, L).add(delta, A, B, C)

    def maps():
        LayerReading(D, L).add_maps(delta, A, B, C)

    with one_thread():
        fast, slow = median_seconds(compiled, repeats=3), median_seconds(maps, repeats=3)
    return {"shape": f"one function, D={D} N={N} L={L}, 1 thread", "compiled_s": fast, "maps_s": slow, "speedup": slow / fast}


def bench_mamba_layer(B: int = 16, H: int = 128, L: int = 1024) -> dict:
    """Forward+backward of a Mamba block part by part (median of 5), the whole block, and S4D / S5 layers of width H."""
    import torch.nn.functional as F

    from ssmscope.models.mamba import Mamba, selective_scan

    torch.manual_seed(0)
    block = Mamba(H)
    u = torch.randn(B, H, L, requires_grad=True)
    with torch.no_grad():
        x, delta, Bs, Cs, z = (t.detach() for t in block.scan_inputs(u))
    x, z = x.requires_grad_(), z.requires_grad_()
    E = block.d_inner
    xz = torch.randn(B, L, H, requires_grad=True)
    parts = {
        "in_proj H->2E": lambda: block.in_proj(xz),
        "causal depthwise conv + SiLU": lambda: F.silu(block.conv(x)[..., :L]),
        "x_proj + dt_proj + softplus": lambda: F.softplus(block.dt_proj(block.x_proj(x.transpose(1, 2))[..., : block.dt_rank])),
        "selective scan (+ D u)": lambda: selective_scan(x, delta.requires_grad_(), block.A(), Bs.requires_grad_(), Cs.requires_grad_(), block.D),
        "gate SiLU(z) + out_proj E->H": lambda: block.out_proj((x * F.silu(z)).transpose(1, 2)),
    }

    def fwd_bwd(part):
        y = part()
        y.backward(torch.ones_like(y))

    with one_thread():
        fwd_bwd(parts["selective scan (+ D u)"])  # compile or load numba's cache
        out = {"shape": f"B={B} H={H} E={E} N={block.d_state} L={L}, 1 thread",
               **{name: 1e3 * median_seconds(lambda p=part: fwd_bwd(p), repeats=5) for name, part in parts.items()}}
        out["Mamba block"] = 1e3 * layer_fwd_bwd_seconds(block, u)
        out["S4D layer (N=64)"] = 1e3 * layer_fwd_bwd_seconds(S4D(H, d_state=64), u)
        s5 = bench_s5(B, H, 64, L)
        out["S5 (s5-pytorch, N=64)"] = None if s5 is None else s5["ms"]
    out["mamba_over_s4d"] = out["Mamba block"] / out["S4D layer (N=64)"]
    out["ns_per_token"] = {name: 1e6 * ms / (B * L) for name, ms in out.items() if isinstance(ms, float) and name != "mamba_over_s4d"}
    return out


def bench_cuda(B: int = 16, D: int = 256, N: int = 16, L: int = 1024, H: int = 128) -> dict | None:
    """The GPU path where there is one: seconds (median of 5 after a warm-up, device synchronised) and
    peak GPU memory of the selective scan's forward+backward against a step loop on the GPU, their
    error against a float64 step loop on the GPU; a Mamba block and an S4D layer of width H; and
    training steps of s4d, mamba and mamba-2layers on the same bucketed ReVeal-length batches."""
    if not torch.cuda.is_available():
        return None
    from ssmscope.models.mamba import Mamba, selective_scan

    cuda = torch.device("cuda")
    inputs = [x.detach().to(cuda).requires_grad_() for x in _scan_inputs(B, D, N, L)]
    grad_y = torch.randn(B, D, L, generator=torch.Generator().manual_seed(1)).to(cuda)

    def fwd_bwd(fn, xs):
        y = fn(*xs)
        return y.detach(), torch.autograd.grad(y, xs, grad_y.to(y.dtype))

    out = {"gpu": torch.cuda.get_device_name(), "shape": f"B={B} D={D} N={N} L={L}, float32"}
    for name, fn in (("scan", selective_scan), ("step_loop", _step_loop_scan)):
        out[f"{name}_s"] = cuda_seconds(lambda fn=fn: fwd_bwd(fn, inputs), repeats=5 if name == "scan" else 3)
        torch.cuda.reset_peak_memory_stats()
        fwd_bwd(fn, inputs)
        out[f"{name}_peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["speedup"] = out["step_loop_s"] / out["scan_s"]
    from ssmscope.models.mamba import _torch_scan

    out["chunks"] = {}
    for chunk in (8, 16, 32, 64):  # tokens per closed-form chunk: fewer launches against (B, D, N, T, T) tensors
        seconds = cuda_seconds(lambda c=chunk: fwd_bwd(lambda *xs: _torch_scan(*xs, chunk=c), inputs))
        torch.cuda.reset_peak_memory_stats()
        fwd_bwd(lambda *xs, c=chunk: _torch_scan(*xs, chunk=c), inputs)
        out["chunks"][chunk] = {"ms": 1e3 * seconds, "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}
    y, grads = fwd_bwd(selective_scan, inputs)
    y64, grads64 = fwd_bwd(_step_loop_scan, [x.detach().double().requires_grad_() for x in inputs])
    out["y_error_vs_float64"] = _error_vs_float64(y, y64)
    out["grad_errors_vs_float64"] = {name: _error_vs_float64(g, g64) for name, g, g64 in zip(SCAN_INPUT_NAMES, grads, grads64)}
    del inputs, grads, grads64, y, y64
    torch.manual_seed(0)
    u = torch.randn(B, H, L, device=cuda, requires_grad=True)
    block, layer = Mamba(H).to(cuda), S4D(H, d_state=64).to(cuda)
    out["mamba_block_ms"] = 1e3 * cuda_seconds(lambda: block(u).sum().backward())
    out["s4d_layer_ms"] = 1e3 * cuda_seconds(lambda: layer(u).sum().backward())
    out["mamba_over_s4d_layer"] = out["mamba_block_ms"] / out["s4d_layer_ms"]
    steps = interleaved_steps(("s4d", "mamba", "mamba-2layers"), n_batches=12, rounds=3, device="cuda")
    s4d = steps["seconds"]["s4d"]
    out["steps"] = {**steps, "mamba_over_s4d": steps["seconds"]["mamba"] / s4d, "mamba_2layers_over_s4d": steps["seconds"]["mamba-2layers"] / s4d}
    return out


def bench_train_runs(archs: list[str] | None = None, device: str = "cpu") -> dict | None:
    """One ReVeal epoch per architecture (and at 2 layers) in a fresh process under mimalloc (as the
    ssmscope command runs); some once more under glibc, keeping freed memory and by default.
    ``archs``: only these architectures under mimalloc (e.g. ["s4d", "mamba"]; default: all runs)."""
    if not REVEAL.is_file():
        return None
    out = {}
    mimalloc, glibc_kept, glibc = {}, {"SSMSCOPE_ALLOCATOR": "glibc"}, {"SSMSCOPE_ALLOCATOR": "glibc", "SSMSCOPE_KEEP_FREED_MEMORY": "0"}
    runs = [(arch, arch, mimalloc) for arch in ARCHITECTURES] + [(f"{arch}-2layers", f"{arch}-2layers", mimalloc) for arch in DEEP_ARCHS]
    runs += [(f"{arch}, glibc keeping freed memory", arch, glibc_kept) for arch in ("s4d", "s4d-2layers", "conv_s4d")]
    runs += [("s4d, glibc default", "s4d", glibc)]
    runs = [run for run in runs if archs is None or run[0] in archs]  # by name: the glibc re-runs only in a full run
    with tempfile.TemporaryDirectory() as tmp:
        for name, arch, env in runs:
            result = subprocess.run(
                [sys.executable, str(HERE / "train_epoch.py"), "--arch", arch, "--data", str(REVEAL), "--out", f"{tmp}/{arch}", "--device", device],
                capture_output=True, text=True, check=True, env={**os.environ, **env},
            )
            out[name] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def print_table(r: dict) -> None:
    rows = []
    if "tokenizer" in r:
        rows.append((f"tokenizer ({r['tokenizer']['source'][:18]})", f"{r['tokenizer']['mb_per_s']:.2f} MB/s"))
    if "s4d_layer" in r:
        s = r["s4d_layer"]
        rows += [
            ("s4d layer fwd+bwd, fast kernel", f"{s['fast_ms']:.1f} ms (kernel {s['fast_kernel_share']:.0%})"),
            ("s4d layer fwd+bwd, Vandermonde", f"{s['reference_ms']:.1f} ms (kernel {s['reference_kernel_share']:.0%})"),
            ("  speed-up (same process)", f"{s['speedup']:.2f}x"),
            ("s4d layer as first written", f"{s['straightforward_ms']:.1f} ms ({s['speedup_vs_straightforward']:.2f}x the fast one)"),
            ("  fast kernel error vs float64", f"{s['fast_max_error_vs_float64']:.1e} of max|K|"),
        ]
        if s["s5"]:
            rows.append((f"{s['s5']['package']} fwd+bwd", f"{s['s5']['ms']:.1f} ms ({s['s5_over_fast']:.2f}x the fast S4D)"))
    for row in r.get("scaling", []):
        rows.append((f"  L={row['L']} H={row['H']} N={row['N']}", f"{row['fast_ms']:.1f} / {row['reference_ms']:.1f} ms ({row['speedup']:.1f}x)"))
    for arch in ARCHITECTURES if "train_tokens" in r else ():
        row = r["train_tokens"][arch]
        rows.append((f"train {arch} (bucketed / random)", f"{row['bucketed']:.0f} / {row['random']:.0f} tok/s ({row['bucketing_speedup']:.1f}x)"))
    if "mamba_steps" in r:
        m = r["mamba_steps"]
        rows.append(("mamba / s4d step time (interleaved)", f"{m['mamba_over_s4d']:.2f}x; mamba-2layers {m['mamba_2layers_over_s4d']:.2f}x"))
    for arch in ("s4d", "smr_s4d") if "depth" in r else ():
        row = r["depth"][arch]
        rows.append((f"{arch} step time, 2 layers / 1", f"{row['ratio']:.2f}x ({row['two_layers_s']:.2f} / {row['one_layer_s']:.2f} s per {r['depth']['batches']} batches)"))
    for name, ms in (r.get("block_parts") or {}).items():
        if name != "shape":
            rows.append((f"block part: {name}", f"{ms:.1f} ms"))
    if "analysis" in r:
        rows.append(("analysis of a (128, 1024) bank", f"{r['analysis']['ms']:.1f} ms"))
    if "streaming" in r:
        for name, s in r["streaming"].items():
            if isinstance(s, dict):
                rows.append((f"S4D.step stream, {name.replace('_', ' ')}", f"{s['tokens_per_s']:.0f} tok/s (last/first 512: {s['late_over_early']:.2f})"))
    if "selective_scan" in r:
        s = r["selective_scan"]
        rows += [
            ("selective scan fwd+bwd, compiled", f"{s['compiled_s']:.2f} s (forward {s['compiled_forward_s']:.2f} s)"),
            ("selective scan fwd+bwd, step loop", f"{s['step_loop_s']:.2f} s (forward {s['step_loop_forward_s']:.2f} s)"),
            ("  speed-up (same process)", f"{s['speedup']:.1f}x"),
            ("  error vs float64 loop (y; worst grad)", f"{s['y_error_vs_float64']:.1e}; {max(s['grad_errors_vs_float64'].values()):.1e}"),
        ]
    if "attention_reading" in r:
        a = r["attention_reading"]
        rows.append((f"hidden attention read ({a['shape']})", f"compiled {a['compiled_s']:.2f} s, maps {a['maps_s']:.2f} s ({a['speedup']:.1f}x)"))
    for name, ms in (r.get("mamba_layer") or {}).items():
        if isinstance(ms, float) and name != "mamba_over_s4d":
            rows.append((f"mamba layer: {name}", f"{ms:.1f} ms ({r['mamba_layer']['ns_per_token'][name]:.0f} ns/token)"))
    if r.get("cuda"):
        c = r["cuda"]
        rows += [
            (f"CUDA ({c['gpu']}) selective scan fwd+bwd", f"{1e3 * c['scan_s']:.1f} ms, peak {c['scan_peak_gpu_mb']:.0f} MB"),
            ("CUDA selective scan, step loop", f"{1e3 * c['step_loop_s']:.1f} ms, peak {c['step_loop_peak_gpu_mb']:.0f} MB ({c['speedup']:.1f}x the scan)"),
            ("  error vs float64 loop (y; worst grad)", f"{c['y_error_vs_float64']:.1e}; {max(c['grad_errors_vs_float64'].values()):.1e}"),
            *((f"  chunks of {chunk} tokens", f"{v['ms']:.1f} ms, peak {v['peak_gpu_mb']:.0f} MB") for chunk, v in c["chunks"].items()),
            ("CUDA Mamba block / S4D layer fwd+bwd", f"{c['mamba_block_ms']:.1f} / {c['s4d_layer_ms']:.1f} ms ({c['mamba_over_s4d_layer']:.1f}x)"),
            ("CUDA mamba / s4d step time (interleaved)", f"{c['steps']['mamba_over_s4d']:.2f}x; mamba-2layers {c['steps']['mamba_2layers_over_s4d']:.2f}x"),
        ]
    for arch, row in (r.get("train_runs") or {}).items():
        gpu = f", peak GPU {row['peak_gpu_mb']:.0f} MB" if row.get("peak_gpu_mb") is not None else ""
        rows.append((f"ReVeal epoch {arch}", f"{row['epoch_seconds'][0]:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB{gpu}"))
    epochs = {arch: row["epoch_seconds"][0] for arch, row in (r.get("train_runs") or {}).items()}
    for arch in ("mamba", "mamba-2layers"):
        if arch in epochs and "s4d" in epochs:
            rows.append((f"  {arch} / s4d epoch (same run)", f"{epochs[arch] / epochs['s4d']:.2f}x"))
    width = max(len(name) for name, _ in rows) + 2
    for name, value in rows:
        print(f"{name:<{width}}{value}")


def main() -> None:
    use_preferred_allocator()  # as the ssmscope command runs: mimalloc unless SSMSCOPE_ALLOCATOR=glibc
    parser = argparse.ArgumentParser(description="ssmscope benchmarks")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--skip", nargs="+", choices=SECTIONS, default=[])
    parser.add_argument("--archs", nargs="+", default=None, help="train_runs: only these architectures (default: all, at 1 and 2 layers)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="train_runs: where the epochs train (default cpu)")
    args = parser.parse_args()
    chosen = [s for s in args.only if s not in args.skip]

    results = {"machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "cpus": len(os.sched_getaffinity(0)),
                           "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                           "allocator": loaded_allocator(), "keep_freed_memory": keep_freed_memory()}}
    runners = {"tokenizer": bench_tokenizer, "s4d_layer": bench_s4d_layer, "scaling": bench_scaling,
               "train_tokens": bench_train_tokens, "depth": bench_depth, "block_parts": bench_block_parts, "analysis": bench_analysis,
               "streaming": bench_streaming, "selective_scan": bench_selective_scan, "attention_reading": bench_attention_reading, "mamba_layer": bench_mamba_layer, "mamba_steps": bench_mamba_steps,
               "train_runs": lambda: bench_train_runs(args.archs, args.device), "cuda": bench_cuda}
    for section in chosen:
        start = time.perf_counter()
        results[section] = runners[section]()
        print(f"[{section}: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    print_table(results)
    path = HERE / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
