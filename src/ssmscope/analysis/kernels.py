"""Kernels out of models: which layers have one, and their readings.

Analysis knows a linear time-invariant layer through one contract only: a submodule with a
``kernel(L)`` method that returns the real convolution kernel (H, L). Every S4D satisfies it; a new
SSM layer that does is analysed without changes here. (Selective layers, whose kernel depends on
the input, have their own contract: ``analysis.selective``.)

This module works on models and arrays only; it imports nothing that trains or loads runs, so
training (its per-epoch kernel snapshots) and the run-level steps (``analysis.run``) both build on it.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from ..errors import SsmscopeError
from . import spectral
from .metrics import summarize_layer


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


def kernel_snapshot(model: nn.Module, length: int) -> list[dict]:
    """Spectral summary of every kernel layer now: mean-spectrum metrics and channel quartiles (``train --track-kernels``)."""
    layers = analyze_kernels(extract_kernels(model, length))
    return [{"name": l["name"], "mean_spectrum": l["summary"]["mean_spectrum"], "channels": l["summary"]["channels"]} for l in layers]
