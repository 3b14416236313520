"""Kernels from anywhere: ``ssmscope analyze --kernels FILE.npz --out DIR``.

Another project's layers, read with ssmscope's metrics. FILE.npz (numpy.savez) holds one array per
layer, named as the layer should be called:

* (H, L) real: a bank of H time-invariant kernels of L taps (S4, S5, Hyena's long convolutions,
  any LTI layer), read as ``analyze`` reads an S4D's kernels;
* (B, H, L, L) real: hidden-attention maps α[t, s] of a selective layer for B functions (Mamba,
  or anything with y_t = Σ_{s ≤ t} α[t, s] u_s per channel), read as ``analysis.selective`` reads a
  Mamba layer: lag profile, effective ranges and the mean effective kernel. The maps must be
  causal (zero above the diagonal); padding beyond a function's end can be left as zero rows.

Output: DIR/summary.json (the ``analyze`` format, without null: there is no configuration to draw
fresh layers of), DIR/kernels.npz (the banks read, the mean effective kernel for maps), the
figures, and DIR/report.md and report.html with the layer table.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import SsmscopeError
from .kernels import analyze_kernels, summarize_model
from .selective import LayerReading, lag_major


def read_kernel_file(path: str | Path) -> dict[str, np.ndarray]:
    """{layer name: array} from FILE.npz, checked: each array (H, L) or (B, H, L, L), real, finite, not empty."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        raise SsmscopeError(f"{path}: not an .npz file (not a zip archive); write it with numpy.savez(path, layer_name=array, ...)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise SsmscopeError(f"{path}: no such file; pass the .npz that holds the kernel banks (numpy.savez)") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise SsmscopeError(f"{path}: not a readable .npz file ({e}); write it with numpy.savez(path, layer_name=array, ...)") from None
    if not arrays:
        raise SsmscopeError(f"{path}: holds no arrays; save one (H, L) kernel bank or (B, H, L, L) attention maps per layer")
    for name, array in arrays.items():
        where = f"{path}, array {name!r}"
        if array.ndim not in (2, 4):
            raise SsmscopeError(f"{where}: shape {array.shape}; expected (H, L) kernels or (B, H, L, L) attention maps")
        if array.ndim == 4 and array.shape[-1] != array.shape[-2]:
            raise SsmscopeError(f"{where}: attention maps of shape {array.shape} are not square in their last two axes (t, s)")
        if array.size == 0 or array.shape[-1] < 2:
            raise SsmscopeError(f"{where}: shape {array.shape} is empty or shorter than 2 taps; a kernel needs at least 2")
        if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
            raise SsmscopeError(f"{where}: dtype {array.dtype}; expected real numbers (take the real part of a complex kernel first)")
        bad = ~np.isfinite(array)
        if bad.any():
            raise SsmscopeError(f"{where}: {int(bad.sum())} NaN or infinite values (first at index {tuple(int(i) for i in np.argwhere(bad)[0])})")
        if array.ndim == 4 and np.any(np.triu(array, k=1)):
            raise SsmscopeError(f"{where}: nonzero entries above the diagonal (s > t); the maps must be causal, α[t, s] = 0 for s > t")
    return arrays


def _mean_effective_kernel(maps: np.ndarray) -> tuple[np.ndarray, dict]:
    """The readings of attention maps (B, H, L, L), as ``analysis.selective`` reads a Mamba layer."""
    n_functions, channels, length, _ = maps.shape
    reading = LayerReading(channels, length)
    for b in range(n_functions):
        alpha = torch.from_numpy(np.ascontiguousarray(maps[b], dtype=np.float64))  # (H, L, L)
        reading.add_attention([lag_major(alpha)])
    return reading.result()


def analyze_kernel_file(path: str | Path, out: str | Path, figures: bool = True) -> dict:
    """Read FILE.npz (see the module docstring) and write the analysis into ``out``; returns the summary."""
    arrays = read_kernel_file(path)
    kernels, attention = {}, {}
    for name, array in arrays.items():
        if array.ndim == 2:
            kernels[name] = np.asarray(array, dtype=np.float64)
        else:
            kernels[name], attention[name] = _mean_effective_kernel(array)
    lengths = {bank.shape[1] for bank in kernels.values()}
    layers = analyze_kernels(kernels)
    for layer in layers:
        layer["kind"] = "selective" if layer["name"] in attention else "kernel"
        if layer["name"] in attention:
            layer["attention"] = attention[layer["name"]]
    summary = {
        "run": None, "source": str(path), "arch": None, "length": max(lengths), "layers": layers,
        # the model-level reading pools channels of equal length only
        "model": summarize_model(kernels) if len(lengths) == 1 else None,
        "null": None,
        "note": "kernels from a file: no untrained null (no configuration to initialise)"
                + ("" if len(lengths) == 1 else "; the layers differ in length, so there is no pooled model reading"),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from ..files import write_json

    np.savez(out / "kernels.npz", **kernels)
    write_json(out / "summary.json", summary)
    drawn = []
    if figures:
        from ..report.plots import plot_lag_profile, plot_layer

        for layer in layers:
            drawn += plot_layer(kernels[layer["name"]], layer, out, title=layer["name"])
            if "attention" in layer:
                drawn += plot_lag_profile(layer, out, title=layer["name"])
    from ..report.render import write_analysis_report

    write_analysis_report(summary, [p for p in drawn if p.suffix == ".png"], out, title=f"ssmscope analysis of {Path(path).name}")
    return summary
