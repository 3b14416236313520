"""KernelMetrics: every spectral and temporal measurement of one kernel, and layer summaries.

``analyze_kernel(k)`` measures one real kernel; ``analyze_bank(K)`` measures the H kernels of a
layer (H, L) in one vectorised pass; ``summarize_layer(K)`` adds the metrics of the
channel-averaged normalised spectrum, each metric's median and quartiles over channels, and the
share of channels of each filter type. Formulas: the docstrings of ``spectral`` and ``temporal``
and docs/METHODS.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import spectral, temporal


@dataclass(frozen=True)
class KernelMetrics:
    peak_frequency: float  # cycles/sample, argmax of P, DC included
    dominant_frequency: float  # cycles/sample, argmax of P above DC (the paper's "dominant frequency")
    spectral_entropy_bits: float
    spectral_entropy_normalized: float  # ÷ log2(number of bins), in [0, 1]
    spectral_centroid: float  # cycles/sample
    spectral_bandwidth: float  # cycles/sample
    spectral_rolloff: float  # cycles/sample, 85% of the power below
    band_energy: dict  # {"low", "mid", "high"} fractions of the power
    filter_type: str  # low-pass | band-pass | high-pass | all-pass
    dependency_range_tokens: float  # 1 / dominant_frequency
    energy_length_90: int  # taps holding 90% of Σ k^2
    center_of_mass_lag: float  # taps
    zero_crossing_rate: float  # share of adjacent taps that change sign
    peak_lag: int  # taps
    decay_rate: float  # nepers per tap (slope of ln envelope)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


NUMERIC_FIELDS = tuple(f.name for f in dataclasses.fields(KernelMetrics) if f.name not in ("band_energy", "filter_type"))


def _spectral_fields(freqs: np.ndarray, power: np.ndarray, edges) -> dict[str, np.ndarray]:
    """Every spectral metric from power spectra (..., bins); arrays of shape (...,)."""
    p = spectral.normalize(power)
    dominant = freqs[1 + np.argmax(power[..., 1:], axis=-1)]
    entropy = spectral.spectral_entropy_bits(p)
    return {
        "peak_frequency": freqs[np.argmax(power, axis=-1)],
        "dominant_frequency": dominant,
        "spectral_entropy_bits": entropy,
        "spectral_entropy_normalized": entropy / np.log2(power.shape[-1]),
        "spectral_centroid": spectral.spectral_centroid(freqs, p),
        "spectral_bandwidth": spectral.spectral_bandwidth(freqs, p),
        "spectral_rolloff": spectral.spectral_rolloff(freqs, p),
        "band_energy": spectral.band_energy(freqs, p, edges),
        "filter_type": spectral.filter_type(power),
        "dependency_range_tokens": 1.0 / dominant,
    }


def analyze_bank(kernels: np.ndarray, nfft: int | None = None, band_edges=spectral.DEFAULT_BAND_EDGES) -> list[KernelMetrics]:
    """KernelMetrics of each row of a kernel bank (H, L)."""
    K = np.atleast_2d(np.asarray(kernels, dtype=np.float64))
    freqs, power = spectral.power_spectrum(K, nfft)
    fields = _spectral_fields(freqs, power, band_edges)
    fields.update(
        energy_length_90=temporal.energy_length(K, 0.9),
        center_of_mass_lag=temporal.center_of_mass_lag(K),
        zero_crossing_rate=temporal.zero_crossing_rate(K),
        peak_lag=temporal.peak_lag(K),
        decay_rate=temporal.decay_rate(K),
    )
    return [_row(fields, h) for h in range(K.shape[0])]


def analyze_kernel(k: np.ndarray, nfft: int | None = None, band_edges=spectral.DEFAULT_BAND_EDGES) -> KernelMetrics:
    """All metrics of one real kernel k (L,); see the module docstrings for the formulas."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 1:
        raise ValueError(f"analyze_kernel takes one kernel (L,), got shape {k.shape}; use analyze_bank for (H, L)")
    return analyze_bank(k[None], nfft, band_edges)[0]


def summarize_layer(kernels: np.ndarray, nfft: int | None = None, band_edges=spectral.DEFAULT_BAND_EDGES) -> tuple[dict, list[KernelMetrics]]:
    """A layer summary and the per-channel metrics.

    summary = {"mean_spectrum": spectral metrics of the channel-averaged normalised spectrum,
               "channels": {metric: {"median", "q1", "q3"}} over channels,
               "filter_type_share": {type: share of channels}}
    """
    K = np.atleast_2d(np.asarray(kernels, dtype=np.float64))
    channels = analyze_bank(K, nfft, band_edges)
    freqs, power = spectral.power_spectrum(K, nfft)
    mean_p = spectral.normalize(power).mean(axis=0)
    mean = _spectral_fields(freqs, mean_p[None], band_edges)
    summary = {
        "mean_spectrum": _row(mean, 0, spectral_only=True),
        "channels": {
            name: dict(zip(("q1", "median", "q3"), np.percentile([getattr(c, name) for c in channels], [25, 50, 75]).tolist()))
            for name in NUMERIC_FIELDS
        },
        "filter_type_share": {t: sum(c.filter_type == t for c in channels) / len(channels) for t in spectral.FILTER_TYPES},
    }
    return summary, channels


def _row(fields: dict, h: int, spectral_only: bool = False):
    values = {}
    for name, value in fields.items():
        if isinstance(value, dict):
            values[name] = {band: float(v[h]) for band, v in value.items()}
        elif name == "filter_type":
            values[name] = str(value[h])
        elif name in ("energy_length_90", "peak_lag"):
            values[name] = int(value[h])
        else:
            values[name] = float(value[h])
    return values if spectral_only else KernelMetrics(**values)
