"""Causal probes: evaluate a trained model while intervening on its kernels, without retraining.

The paper reads a dependency range off a kernel's spectrum and says itself that this cannot show
causation. A probe does: it changes the kernels and watches the metric.

* truncation: keep only the first m taps of every kernel, K'[l] = K[l] for l < m, else 0, for m
  on a log grid up to the full length. The *used range* is the smallest m whose F1 is at least
  90% of the unmodified model's F1: the context the model needs. F1 sits on a fixed decision
  threshold, and cutting taps also shifts the logits, so F1 can collapse while the ranking of
  functions survives; the *AUC used range* is therefore reported too: the smallest m that
  recovers 90% of the ROC-AUC the kernel adds over m = 0 (only the D skip path left).
* band filtering: keep only one frequency band of every kernel, K' = irfft(rfft(K) · 1[f ∈ band]),
  with the analysis's band edges (low < 0.1 ≤ mid < 0.25 ≤ high cycles/sample).

Both run on every kernel layer at once (the model's used range) and, in a model with several
kernel layers (a deep stack, or conv_s4d's three branches), on each layer alone with the others
intact (that layer's used range). For a stack of causal filters the supports add up: a signal
reaches the output through layers with ranges m_1 .. m_N over at most Σ m_i − (N − 1) lags, so
the model's range is at most the sum of its layers' ranges, and the probes measure how much of
that the model uses (docs/METHODS.md, "Depth").

The D skip term (lag 0 identity path) is left alone in both. Interventions go through the
contracts analysis has with a model: a module with ``kernel(L)`` (during a probe that method is
replaced on the instance and restored afterwards), or a selective layer (``selective_inputs``,
Mamba), whose input-dependent kernel has no taps to cut: there truncation to m tokens makes the
state forget everything older than m tokens (``Mamba.memory_window``; the scan then keeps
h_t^(m) = Σ_{s=t−m+1..t} exp(A Σ_{k=s+1..t} Δ_k) Δ_s B_s u_s, the hidden attention's lags < m,
just as the kernel's first m taps are its lags < m). Band filtering needs a kernel: a model
whose layers are all selective has no band probes ("bands" is empty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .kernels import kernel_modules
from .selective import selective_modules
from .spectral import DEFAULT_BAND_EDGES

USED_RANGE_FRACTION = 0.9


@contextmanager
def intervene(model: nn.Module, transform: Callable[[torch.Tensor], torch.Tensor], only: str | None = None) -> Iterator[None]:
    """Within the block every kernel module's ``kernel(L)`` (or only the one named ``only``)
    returns ``transform(original kernel (H, L))``."""
    modules = [m for name, m in kernel_modules(model) if only is None or name == only]
    if not modules:
        raise ValueError(f"no kernel layer named {only!r}")
    originals = [m.kernel for m in modules]
    own = ["kernel" in m.__dict__ for m in modules]  # an instance-level kernel (e.g. another probe) to put back
    try:
        for module, original in zip(modules, originals):
            module.kernel = lambda L, original=original: transform(original(L))
        yield
    finally:
        for module, original, had_own in zip(modules, originals, own):
            if had_own:
                module.kernel = original
            else:
                del module.kernel  # the class method shows through again


def probed_layers(model: nn.Module) -> list[str]:
    """Names of the layers a probe intervenes on: every kernel layer and every selective layer, in model order."""
    names = {name for name, _ in kernel_modules(model)} | {name for name, _ in selective_modules(model)}
    return [name for name, _ in model.named_modules() if name in names]


@contextmanager
def truncated(model: nn.Module, m: int, only: str | None = None) -> Iterator[None]:
    """Within the block every probed layer (or only the one named ``only``) sees at most m tokens back:
    kernel layers keep their first m taps, selective layers remember the last m tokens."""
    selective = [module for name, module in selective_modules(model) if only is None or name == only]
    has_kernels = any(only is None or name == only for name, _ in kernel_modules(model))
    if not selective and not has_kernels:
        raise ValueError(f"no probed layer named {only!r}")
    previous = [module.memory_window for module in selective]
    try:
        for module in selective:
            module.memory_window = m
        with intervene(model, truncate(m), only) if has_kernels else _nothing():
            yield
    finally:
        for module, window in zip(selective, previous):
            module.memory_window = window


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def truncate(m: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Keep the first ``m`` taps of a kernel (H, L), zero the rest."""
    def apply(K: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(K)
        out[..., :m] = K[..., :m]
        return out

    return apply


def band_pass(low: float, high: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Keep the DFT bins with low <= f < high cycles/sample (high = 0.5 includes Nyquist)."""
    def apply(K: torch.Tensor) -> torch.Tensor:
        L = K.shape[-1]
        freqs = torch.fft.rfftfreq(L, device=K.device)
        keep = (freqs >= low) & ((freqs < high) | (high >= 0.5))
        return torch.fft.irfft(torch.fft.rfft(K) * keep, n=L)

    return apply


def truncation_grid(length: int) -> list[int]:
    """0, 1, 2, 4, … (powers of two below ``length``), then ``length`` itself."""
    grid = [0] + [2**i for i in range(int(np.log2(max(length, 1))) + 1) if 2**i < length]
    return grid + [length]


def used_range(truncations: list[dict], full_f1: float, fraction: float = USED_RANGE_FRACTION) -> int | None:
    """Smallest m whose F1 reaches ``fraction`` of the unmodified F1 (None if the model has F1 0)."""
    if full_f1 <= 0:
        return None
    return min(t["taps"] for t in truncations if t["f1"] >= fraction * full_f1)


def used_range_auc(truncations: list[dict], full_auc: float | None, fraction: float = USED_RANGE_FRACTION) -> int | None:
    """Smallest m with AUC(m) - AUC(0) >= fraction · (AUC(full) - AUC(0)); 0 if the kernel adds nothing."""
    zero = truncations[0]["roc_auc"]
    if full_auc is None or zero is None:
        return None
    gain = full_auc - zero
    if gain <= 0:
        return 0
    return min(t["taps"] for t in truncations if t["roc_auc"] is not None and t["roc_auc"] - zero >= fraction * gain)


def run_probes(
    model: nn.Module,
    score: Callable[[nn.Module], dict],
    length: int,
    band_edges: tuple[float, float] = DEFAULT_BAND_EDGES,
    per_layer: bool = True,
) -> dict:
    """Score the model unmodified, truncated to each m of the grid, and band-limited.

    ``score(model)`` returns a metrics dict with at least "f1" (see train.metrics); ``length`` is
    the largest sequence length the data reaches (the kernel length the model uses). The
    interventions touch every probed layer (``probed_layers``: kernel and selective) at once; with
    ``per_layer`` and more than one such layer they are repeated for each layer alone, under
    "layers" = {name: the same keys}.
    """
    model.eval()
    full = _brief(score(model))
    results = {"unmodified": full, **_probe_set(model, score, length, band_edges, full, only=None)}
    names = probed_layers(model)
    if per_layer and len(names) > 1:
        results["layers"] = {name: _probe_set(model, score, length, band_edges, full, only=name) for name in names}
    return results


def _probe_set(model, score, length: int, band_edges: tuple[float, float], full: dict, only: str | None) -> dict:
    """Truncations, used ranges and bands with the layer ``only`` (None: every layer) intervened on."""
    truncations = []
    for m in truncation_grid(length):
        with truncated(model, m, only):
            truncations.append({"taps": m, **_brief(score(model))})
    low, high = band_edges
    bands = {}
    if any(only is None or name == only for name, _ in kernel_modules(model)):
        for name, (a, b) in {"low": (0.0, low), "mid": (low, high), "high": (high, 0.5)}.items():
            with intervene(model, band_pass(a, b), only):
                bands[name] = {"range_cycles_per_sample": [a, b], **_brief(score(model))}
    return {
        "truncation": truncations,
        "used_range_tokens": used_range(truncations, full["f1"]),
        "used_range_auc_tokens": used_range_auc(truncations, full["roc_auc"]),
        "used_range_fraction": USED_RANGE_FRACTION,
        "bands": bands,
        "band_edges": list(band_edges),
    }


def _brief(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("f1", "f1_weighted", "roc_auc", "mcc", "accuracy")}


def probe_run(run_dir, data_path=None, out=None, code_field: str | None = None, label_field: str | None = None, device: str = "auto",
              per_layer: bool = True) -> dict:
    """Probe a trained run on a dataset, or without ``data_path`` on the run's own test split
    (every kernel layer at once and, with ``per_layer``, each layer alone; see ``run_probes``).

    Writes JSON (default RUN_DIR/probes/<data name>.json, or test-split.json) and a figure beside it.
    """
    from pathlib import Path

    from ..data import load_dataset
    from ..data.sources import dataset_stem
    from ..files import write_json
    from ..train.loop import encode_for_run, load_run, predict, resolve_device, test_split_records
    from ..train.metrics import binary_metrics

    dev = resolve_device(device)
    config, vocab, model = load_run(run_dir, dev)
    d = config.data
    if data_path is None:  # the run's own test split, as splits.json recorded it
        records = test_split_records(run_dir, config)
    else:
        records = load_dataset(data_path, code_field or d.code_field, label_field or d.label_field, [] if d.skip_bad_lines else None)
    split = encode_for_run(config, vocab, records)
    data_name = f"{config.data_path} (test split)" if data_path is None else str(data_path)
    results = {"run": str(run_dir), "data": data_name, "functions": len(records), "has_ssm_layers": bool(probed_layers(model))}
    if results["has_ssm_layers"]:
        results.update(run_probes(model, lambda m: binary_metrics(split.labels, predict(m, split, config.train.batch_size, dev)), int(split.lengths.max()), per_layer=per_layer))
    out = Path(out) if out else Path(run_dir) / "probes" / f"{dataset_stem(data_path) if data_path else 'test-split'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    if results["has_ssm_layers"]:
        from ..report.plots import plot_probes

        plot_probes(results, out.with_suffix(""))
    return results

