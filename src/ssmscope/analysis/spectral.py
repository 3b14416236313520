"""Frequency-domain measurements of real convolution kernels (numpy, float64, vectorised over channels).

For a kernel k of length L and an FFT length nfft >= L (zero padding), the one-sided frequency
response is H = rfft(k, nfft) at the frequencies f_j = j / nfft cycles/sample, j = 0 .. nfft//2
(so f runs over [0, 0.5]). The power is P_j = |H_j|^2 and the normalised spectrum p_j = P_j / Σ P.
No one-sided doubling is applied: every rfft bin counts once (scipy.signal.periodogram with
``scaling="spectrum"`` doubles the bins strictly between DC and Nyquist; the tests undo that).

Every function takes arrays whose last axis is the kernel (or spectrum) axis, so a whole layer
bank (H, L) is measured in one call.
"""

from __future__ import annotations

import numpy as np

FILTER_TYPES = ("low-pass", "band-pass", "high-pass", "all-pass")
DEFAULT_BAND_EDGES = (0.1, 0.25)  # cycles/sample: low < 0.1 <= mid < 0.25 <= high


def power_spectrum(kernels: np.ndarray, nfft: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (nfft//2+1,) in cycles/sample and power |rfft(k, nfft)|^2 (..., nfft//2+1)."""
    kernels = np.asarray(kernels, dtype=np.float64)
    L = kernels.shape[-1]
    nfft = L if nfft is None else int(nfft)
    if nfft < L:
        raise ValueError(f"nfft must be at least the kernel length {L}, got {nfft}")
    if nfft < 2:
        raise ValueError("a spectrum needs nfft >= 2 (one bin above DC)")
    H = np.fft.rfft(kernels, n=nfft, axis=-1)
    return np.fft.rfftfreq(nfft), H.real**2 + H.imag**2


def normalize(power: np.ndarray) -> np.ndarray:
    """p = P / Σ P along the last axis; a kernel with no energy is an error."""
    total = power.sum(axis=-1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError("a kernel with zero energy has no normalised spectrum")
    return power / total


def spectral_entropy_bits(p: np.ndarray) -> np.ndarray:
    """-Σ p log2 p over the bins, with 0 · log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=-1)


def spectral_centroid(freqs: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Σ f p (cycles/sample)."""
    return p @ freqs


def spectral_bandwidth(freqs: np.ndarray, p: np.ndarray) -> np.ndarray:
    """sqrt(Σ (f - centroid)^2 p) (cycles/sample)."""
    centroid = spectral_centroid(freqs, p)
    return np.sqrt(np.sum((freqs - centroid[..., None]) ** 2 * p, axis=-1))


def spectral_rolloff(freqs: np.ndarray, p: np.ndarray, fraction: float = 0.85) -> np.ndarray:
    """Lowest f at which the cumulative normalised power reaches ``fraction``."""
    cumulative = np.cumsum(p, axis=-1)
    index = np.argmax(cumulative >= fraction - 1e-12, axis=-1)
    return freqs[index]


def band_energy(freqs: np.ndarray, p: np.ndarray, edges: tuple[float, float] = DEFAULT_BAND_EDGES) -> dict[str, np.ndarray]:
    """Fractions of the power in f < edges[0] (low), edges[0] <= f < edges[1] (mid), f >= edges[1] (high)."""
    low_edge, high_edge = edges
    if not 0 < low_edge < high_edge <= 0.5:
        raise ValueError(f"band edges must satisfy 0 < low < high <= 0.5 cycles/sample, got {edges}")
    low = freqs < low_edge
    high = freqs >= high_edge
    return {
        "low": p[..., low].sum(axis=-1),
        "mid": p[..., ~low & ~high].sum(axis=-1),
        "high": p[..., high].sum(axis=-1),
    }


def filter_type(power: np.ndarray) -> np.ndarray:
    """Classify by the main lobe: the contiguous run of bins around the peak with P >= P_peak / 2.

    Reaching the first bin (f = 0) only: low-pass; the last bin (f = 0.5 for even nfft) only:
    high-pass; neither: band-pass; both: all-pass. Returns an array of strings (...,).
    """
    peak = np.argmax(power, axis=-1)[..., None]  # (..., 1)
    below = power < power.max(axis=-1, keepdims=True) / 2  # (..., bins)
    bins = np.arange(power.shape[-1])
    reaches_dc = ~np.any(below & (bins <= peak), axis=-1)
    reaches_nyquist = ~np.any(below & (bins >= peak), axis=-1)
    kinds = np.array(["band-pass", "low-pass", "high-pass", "all-pass"])
    return kinds[reaches_dc.astype(int) + 2 * reaches_nyquist.astype(int)]
