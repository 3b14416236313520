"""Kernels out of trained models, and the ``analyze`` step of a run.

Analysis knows a model through one contract only: a submodule with a ``kernel(L)`` method that
returns the real convolution kernel (H, L). Every S4D satisfies it; a new SSM layer that does is
analysed without changes here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SsmscopeError
from . import spectral
from .metrics import summarize_layer
from .null import CENTRAL_LEVEL, DEFAULT_NULL_DRAWS, MODEL_KEY, null_cache_key, null_readings, place_in_null


BLOCK_DEPTH = re.compile(r"\.blocks\.(\d+)\.")  # a deep branch's residual blocks (models.classifier)


def layer_depth(name: str) -> int:
    """A kernel layer's place in its branch's stack: 0 for a branch's first S4D, k for the one in
    residual block k ("branches.smr.blocks.2.s4d" → 2)."""
    found = BLOCK_DEPTH.search(name + ".")
    return int(found.group(1)) if found else 0


def kernel_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(dotted name, module) of every submodule that exposes ``kernel(L)``, in definition order."""
    return [(name, m) for name, m in model.named_modules() if name and callable(getattr(m, "kernel", None))]


@torch.no_grad()
def extract_kernels(model: nn.Module, length: int) -> dict[str, np.ndarray]:
    """{layer name: kernel bank (H, length) float64} for every kernel module of ``model``."""
    return {name: m.kernel(length).detach().double().cpu().numpy() for name, m in kernel_modules(model)}


def analyze_kernels(kernels: dict[str, np.ndarray], nfft: int | None = None) -> list[dict]:
    """[{"name", "depth", "summary", "channels": [metrics dict per channel]}] for a dict of kernel banks, in its order."""
    layers = []
    for name, bank in kernels.items():
        silent = np.flatnonzero(~np.any(bank != 0, axis=-1))
        if silent.size:
            raise SsmscopeError(f"layer {name}: channel(s) {silent.tolist()[:5]} have an all-zero kernel, which has no spectrum; the model is degenerate")
        summary, channels = summarize_layer(bank, nfft)
        layers.append({"name": name, "depth": layer_depth(name), "summary": summary, "channels": [c.to_dict() for c in channels]})
    return layers


def summarize_model(kernels: dict[str, np.ndarray], nfft: int | None = None) -> dict | None:
    """One reading for a whole model: every channel of every kernel layer pooled (they share L).

    {"summary": as summarize_layer, "spectrum": {"frequency", "power"}} with the mean normalised
    spectrum over all channels (what the report overlays), or None without kernel layers.
    """
    if not kernels:
        return None
    bank = np.concatenate(list(kernels.values()), axis=0)  # (ΣH, L)
    summary, _ = summarize_layer(bank, nfft)
    freqs, power = spectral.power_spectrum(bank, nfft)
    mean_p = spectral.normalize(power).mean(axis=0)
    return {"summary": summary, "spectrum": {"frequency": freqs.tolist(), "power": mean_p.tolist()}}


def analyze_run(
    run_dir: str | Path, length: int | None = None, figures: bool = True, out: str | Path | None = None,
    null_draws: int | None = DEFAULT_NULL_DRAWS,
) -> dict:
    """Extract, measure and plot every kernel of a finished run into RUN_DIR/analysis/ (or ``out``).

    Writes kernels.npz (one (H, L) array per layer, named by its place in the model),
    summary.json and, with ``figures``, PNG and SVG figures. Returns the summary.

    Each kernel layer's readings are placed in the untrained null of ``null_draws`` freshly
    initialised models of the run's configuration (``analysis.null``): layer["null"] =
    {reading: placement}, summary["model"]["null"] likewise for the model-level reading, and
    summary["null"] = {"n", "level", "cache_key"}. ``null_draws=None``
    leaves the null out (summary["null"] is None, as for a model without kernels).
    """
    from ..files import write_json
    from ..train.loop import load_run

    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").is_file():
        raise SsmscopeError(f"{run_dir}: the run has not finished (no metrics.json); finish or resume training before analysing it")
    config, _, model = load_run(run_dir)
    length = config.data.max_len if length is None else length
    if length < 2:
        raise SsmscopeError(f"--length must be at least 2 taps, got {length}")
    kernels = extract_kernels(model, length)
    out = Path(out) if out else run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "run": str(run_dir),
        "arch": config.arch,
        "length": length,
        "layers": analyze_kernels(kernels),
        "model": summarize_model(kernels),
        "note": None if kernels else f"{config.arch} has no SSM layer: there is no kernel to analyse",
    }
    summary["null"] = None
    if kernels and null_draws is not None:
        model_layer = {"name": MODEL_KEY, "summary": summary["model"]["summary"]}
        placed = place_in_null([*summary["layers"], model_layer], null_readings(config.arch, config.model, length, null_draws))
        for layer in summary["layers"]:
            layer["null"] = placed[layer["name"]]
        summary["model"]["null"] = placed[MODEL_KEY]
        summary["null"] = {"n": null_draws, "level": CENTRAL_LEVEL, "cache_key": null_cache_key(config.arch, config.model, length, null_draws)}
    tracked = _tracked_epochs(run_dir)
    if tracked:
        summary["epochs"] = tracked
    np.savez(out / "kernels.npz", **kernels)
    write_json(out / "summary.json", summary)
    if figures and kernels:
        from ..report.plots import plot_layer, plot_training_spectra

        for name, bank in kernels.items():
            layer = next(l for l in summary["layers"] if l["name"] == name)
            plot_layer(bank, layer, out, title=f"{config.arch}: {name}")
        if tracked:
            plot_training_spectra(tracked, out)
    return summary


def _tracked_epochs(run_dir: Path) -> list[dict]:
    """Per-epoch kernel summaries recorded by ``train --track-kernels`` (empty if none)."""
    path = run_dir / "kernels.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
