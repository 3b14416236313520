"""Time-domain measurements of real kernels k_l, l = 0 .. L-1 (numpy, vectorised over channels)."""

from __future__ import annotations

import numpy as np


def energy_length(kernels: np.ndarray, fraction: float = 0.9) -> np.ndarray:
    """Smallest m such that the first m taps hold ``fraction`` of Σ k^2 (taps)."""
    energy = np.cumsum(np.asarray(kernels, dtype=np.float64) ** 2, axis=-1)
    return np.argmax(energy >= fraction * energy[..., -1:] * (1 - 1e-12), axis=-1) + 1


def center_of_mass_lag(kernels: np.ndarray) -> np.ndarray:
    """Σ l k_l^2 / Σ k^2 (taps)."""
    energy = np.asarray(kernels, dtype=np.float64) ** 2
    return energy @ np.arange(energy.shape[-1]) / energy.sum(axis=-1)


def zero_crossing_rate(kernels: np.ndarray) -> np.ndarray:
    """Share of the L-1 adjacent tap pairs whose product is negative (a sign change)."""
    k = np.asarray(kernels, dtype=np.float64)
    return np.mean(k[..., 1:] * k[..., :-1] < 0, axis=-1)


def peak_lag(kernels: np.ndarray) -> np.ndarray:
    """argmax_l |k_l| (taps)."""
    return np.argmax(np.abs(kernels), axis=-1)


def envelope(kernels: np.ndarray) -> np.ndarray:
    """Upper envelope e_l = max_{j >= l} |k_j|: the smallest non-increasing curve above |k|.

    For a^l, (-a)^l or a^l cos(ωl) it follows a^l (exactly at the peaks), so its log-slope is log a.
    """
    magnitude = np.abs(np.asarray(kernels, dtype=np.float64))
    return np.maximum.accumulate(magnitude[..., ::-1], axis=-1)[..., ::-1]


def decay_rate(kernels: np.ndarray) -> np.ndarray:
    """Slope of the least-squares line through ln envelope(k) against l (nepers per tap; < 0 decays).

    Taps where the envelope is 0 (an all-zero tail) are left out of the fit.
    """
    env = envelope(kernels)
    lags = np.broadcast_to(np.arange(env.shape[-1], dtype=np.float64), env.shape)
    weight = (env > 0).astype(np.float64)
    log_env = np.log(np.where(env > 0, env, 1.0))
    n = weight.sum(axis=-1, keepdims=True)
    mean_l = (weight * lags).sum(axis=-1, keepdims=True) / n
    mean_y = (weight * log_env).sum(axis=-1, keepdims=True) / n
    cov = (weight * (lags - mean_l) * (log_env - mean_y)).sum(axis=-1)
    var = (weight * (lags - mean_l) ** 2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, cov / np.where(var > 0, var, 1.0), 0.0)
