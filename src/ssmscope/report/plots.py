"""Figures of kernels and their spectra (matplotlib, Agg backend; PNG and SVG).

Plotting only draws: every number shown comes from ``ssmscope.analysis``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..analysis import spectral  # noqa: E402

FORMATS = ("png", "svg")


def slug(name: str) -> str:
    return name.replace(".", "_").replace("/", "_") or "layer"


def _save(fig, path_stem: Path) -> list[Path]:
    paths = []
    for ext in FORMATS:
        path = path_stem.with_suffix(f".{ext}")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def plot_layer(bank: np.ndarray, layer: dict, out_dir: Path, title: str) -> list[Path]:
    """Four figures for one kernel bank (H, L): time, spectrum, heat map, histograms."""
    stem = Path(out_dir) / slug(layer["name"])
    channels = layer["channels"]
    dominant = np.array([c["dominant_frequency"] for c in channels])
    entropy = np.array([c["spectral_entropy_bits"] for c in channels])
    energy_90 = np.array([c["energy_length_90"] for c in channels])
    freqs, power = spectral.power_spectrum(bank)
    p = spectral.normalize(power)  # (H, bins)
    paths = []

    # Time domain: representative kernels (channels at the quantiles of dominant frequency) + envelope.
    shown = int(min(bank.shape[1], max(32, 2 * np.percentile(energy_90, 90))))
    lags = np.arange(shown)
    order = np.argsort(dominant, kind="stable")
    picks = order[np.unique(np.linspace(0, len(order) - 1, 4).round().astype(int))]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for h in picks:
        top.plot(lags, bank[h, :shown], lw=1, label=f"ch {h}: f_dom {dominant[h]:.3f}")
    top.set_ylabel("K[l]")
    top.legend(fontsize=8)
    top.set_title(f"{title}: representative kernels")
    magnitude = np.abs(bank[:, :shown]) / np.abs(bank).max(axis=1, keepdims=True)
    q1, med, q3 = np.percentile(magnitude, [25, 50, 75], axis=0)
    bottom.fill_between(lags, q1, q3, alpha=0.3, label="inter-quartile range")
    bottom.plot(lags, med, label="median over channels")
    bottom.set_xlabel("lag l (tokens)")
    bottom.set_ylabel("|K[l]| / max |K|")
    bottom.legend(fontsize=8)
    paths += _save(fig, stem.with_name(stem.name + "_time"))

    # Mean normalised power spectrum with its inter-quartile band.
    fig, ax = plt.subplots(figsize=(8, 4))
    q1, q3 = np.percentile(p, [25, 75], axis=0)
    ax.fill_between(freqs, q1, q3, alpha=0.3, label="inter-quartile range over channels")
    ax.plot(freqs, p.mean(axis=0), label="mean over channels")
    ax.set_yscale("log")
    ax.set_xlabel("frequency (cycles/sample)")
    ax.set_ylabel("normalised power")
    ax.set_title(f"{title}: power spectrum")
    ax.legend(fontsize=8)
    paths += _save(fig, stem.with_name(stem.name + "_spectrum"))

    # Heat map: every channel's spectrum in dB, channels sorted by dominant frequency.
    fig, ax = plt.subplots(figsize=(8, 5))
    image = ax.imshow(10 * np.log10(p[order] + 1e-300), aspect="auto", origin="lower", extent=(0, 0.5, 0, len(order)), cmap="viridis", vmin=-60)
    fig.colorbar(image, ax=ax, label="normalised power (dB)")
    ax.set_xlabel("frequency (cycles/sample)")
    ax.set_ylabel("channel (sorted by dominant frequency)")
    ax.set_title(f"{title}: spectra of all channels")
    paths += _save(fig, stem.with_name(stem.name + "_heatmap"))

    # Histograms over channels.
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    _histogram(left, dominant)
    left.set_xlabel("dominant frequency (cycles/sample)")
    left.set_ylabel("channels")
    _histogram(right, entropy)
    right.set_xlabel("spectral entropy (bits)")
    fig.suptitle(title)
    paths += _save(fig, stem.with_name(stem.name + "_histograms"))
    return paths


def plot_training_spectra(epochs: list[dict], out_dir: Path) -> list[Path]:
    """Channel-median dominant frequency and spectral entropy of each layer against epoch (0:
    initialisation), with the inter-quartile range over channels shaded."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    xs = [e["epoch"] for e in epochs]
    for name in [layer["name"] for layer in epochs[0]["layers"]]:
        rows = [next(l for l in e["layers"] if l["name"] == name)["channels"] for e in epochs]
        for ax, key in zip(axes, ("dominant_frequency", "spectral_entropy_bits")):
            median = [r[key]["median"] for r in rows]
            line, = ax.plot(xs, median, marker="o", label=name)
            ax.fill_between(xs, [r[key]["q1"] for r in rows], [r[key]["q3"] for r in rows], color=line.get_color(), alpha=0.15)
    axes[0].set_ylabel("dominant frequency (cycles/sample)")
    axes[1].set_ylabel("spectral entropy (bits)")
    for ax in axes:
        ax.set_xlabel("epoch (0 = initialisation)")
    axes[0].legend(fontsize=8)
    fig.suptitle("kernel spectra during training: median and inter-quartile range over channels")
    return _save(fig, Path(out_dir) / "training_spectra")


def _histogram(ax, values: np.ndarray, bins: int = 30) -> None:
    """ax.hist with 30 bins, or one bar when the values (nearly) coincide (numpy cannot split a zero range)."""
    span = np.ptp(values)
    if span <= 1e-9 * max(1.0, np.abs(values).max()):
        ax.hist(values, bins=1, range=(values.min() - 0.5, values.max() + 0.5) if span == 0 else None)
    else:
        ax.hist(values, bins=bins)


def plot_lag_profile(layer: dict, out_dir: Path, title: str) -> list[Path]:
    """A selective layer's attention mass by lag (log-log) with its effective range's quartiles."""
    attention = layer["attention"]
    profile = np.asarray(attention["lag_profile"])
    lags = np.flatnonzero(profile > 0)
    span = attention["effective_range"]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(lags + 1, profile[lags], lw=1.5, label="mean |α[t, t − l]| over positions, channels, functions")
    ax.axvspan(span["q1"], span["q3"], color="orange", alpha=0.25, label=f"effective range, quartiles over rows ({span['fraction']:.0%} of mass)")
    ax.axvline(span["median"], color="orange", lw=1.5, label=f"median {span['median']:.0f} lags")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("lag l + 1 (tokens)")
    ax.set_ylabel("attention mass")
    ax.set_title(f"{title}: hidden attention by lag ({attention['functions']} functions)")
    ax.legend(fontsize=7)
    return _save(fig, Path(out_dir) / f"{slug(layer['name'])}_lag_profile")


def plot_probes(results: dict, path_stem: Path) -> list[Path]:
    """F1 against the number of kept kernel taps (log axis) with the used range, and F1 per band:
    every layer at once (solid) and, when probed, each layer alone (thin). Selective layers have
    no bands: without any band results the figure is the truncation panel alone."""
    bands = list(results["bands"])
    fig, axes = plt.subplots(1, 2 if bands else 1, figsize=(10 if bands else 7, 3.8), gridspec_kw={"width_ratios": [2, 1]} if bands else None)
    left = axes[0] if bands else axes
    sets = {"all layers": results, **results.get("layers", {})}
    for label, probe in sets.items():
        rows = probe["truncation"]
        taps = [max(r["taps"], 0.5) for r in rows]  # 0 taps drawn at 0.5 on the log axis
        alone = probe is not results
        left.plot(taps, [r["f1"] for r in rows], marker="." if alone else "o", lw=0.8 if alone else 1.8,
                  label=f"{label}: used range {probe['used_range_tokens']}")
    left.axhline(results["unmodified"]["f1"], color="gray", ls="--", lw=1, label="unmodified")
    if results["used_range_tokens"] is not None:
        left.axvline(max(results["used_range_tokens"], 0.5), color="red", lw=1)
    left.set_xscale("log", base=2)
    left.set_xlabel("kernel taps kept / tokens remembered (0 shown at 0.5)")
    left.set_ylabel("F1 (vulnerable)")
    left.legend(fontsize=7)
    if bands:
        right = axes[1]
        width = 0.8 / len(sets)
        for i, (label, probe) in enumerate(sets.items()):
            right.bar([b + (i - (len(sets) - 1) / 2) * width for b in range(len(bands))], [probe["bands"][n]["f1"] for n in bands], width, label=label)
        right.set_xticks(range(len(bands)), bands)
        right.axhline(results["unmodified"]["f1"], color="gray", ls="--", lw=1)
        right.set_ylabel("F1 with only this band")
    fig.suptitle("probes (truncating or band-limiting all layers at once, and each alone)" if len(sets) > 1 else "probes")
    return _save(fig, Path(path_stem))
