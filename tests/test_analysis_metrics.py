"""Kernel metrics against closed forms and scipy.signal."""

import math

import numpy as np
import pytest
from scipy import signal

from ssmscope.analysis import analyze_bank, analyze_kernel, summarize_layer
from ssmscope.analysis import spectral, temporal

L = 256


def exponential_power(a: float, L: int) -> np.ndarray:
    """|DFT|^2 of a^l, l < L, at bins k/L: (1 - a^L)^2 / (1 - 2a cos(2πk/L) + a^2) (geometric series)."""
    f = np.arange(L // 2 + 1) / L
    return (1 - a**L) ** 2 / (1 - 2 * a * np.cos(2 * np.pi * f) + a**2)


@pytest.mark.parametrize("a", [0.5, 0.8, 0.95])
def test_decaying_exponential_is_low_pass_with_closed_form_spectrum(a):
    k = a ** np.arange(L)
    freqs, power = spectral.power_spectrum(k)
    np.testing.assert_allclose(power, exponential_power(a, L), rtol=1e-10)
    p = exponential_power(a, L) / exponential_power(a, L).sum()
    m = analyze_kernel(k)
    assert m.spectral_entropy_bits == pytest.approx(-(p * np.log2(p)).sum(), rel=1e-10)
    assert m.spectral_entropy_normalized == pytest.approx(m.spectral_entropy_bits / math.log2(L // 2 + 1))
    assert m.spectral_centroid == pytest.approx((freqs * p).sum(), rel=1e-10)
    assert m.filter_type == "low-pass" and m.peak_frequency == 0.0
    assert m.dominant_frequency == 1 / L and m.dependency_range_tokens == L  # power falls monotonically above DC
    # time domain: Σ_{l<m} a^{2l} >= 0.9 Σ_{l<L} a^{2l}  ⇔  m >= ln(1 - 0.9(1 - a^{2L})) / ln(a^2)
    assert m.energy_length_90 == math.ceil(math.log(1 - 0.9 * (1 - a ** (2 * L))) / math.log(a**2))
    assert m.center_of_mass_lag == pytest.approx(a**2 / (1 - a**2), rel=1e-6)  # a^{2L} negligible here
    assert m.decay_rate == pytest.approx(math.log(a), rel=1e-9)
    assert m.zero_crossing_rate == 0 and m.peak_lag == 0


@pytest.mark.parametrize("a", [0.5, 0.9])
def test_alternating_exponential_is_high_pass(a):
    k = (-a) ** np.arange(L)
    _, power = spectral.power_spectrum(k)
    f = np.arange(L // 2 + 1) / L
    np.testing.assert_allclose(power, (1 - a**L) ** 2 / (1 + 2 * a * np.cos(2 * np.pi * f) + a**2), rtol=1e-10)
    m = analyze_kernel(k)
    assert m.filter_type == "high-pass" and m.peak_frequency == 0.5 and m.dominant_frequency == 0.5
    assert m.dependency_range_tokens == 2.0
    assert m.zero_crossing_rate == 1.0 and m.decay_rate == pytest.approx(math.log(a), rel=1e-9)


@pytest.mark.parametrize("f0", [40 / 256, 0.2, 77 / 256])
def test_damped_cosine_is_band_pass_at_its_frequency(f0):
    k = 0.97 ** np.arange(L) * np.cos(2 * np.pi * f0 * np.arange(L))
    m = analyze_kernel(k)
    assert m.filter_type == "band-pass"
    assert abs(m.dominant_frequency - f0) <= 1 / L and m.peak_frequency == m.dominant_frequency
    assert m.zero_crossing_rate == pytest.approx(2 * f0, abs=0.02)  # two sign changes per period
    assert m.decay_rate == pytest.approx(math.log(0.97), rel=0.05)
    assert m.band_energy["mid" if 0.1 <= f0 < 0.25 else "high"] > 0.8


def test_unit_impulse_is_all_pass_with_maximal_entropy():
    k = np.zeros(L)
    k[0] = 1
    m = analyze_kernel(k)
    bins = L // 2 + 1
    assert m.filter_type == "all-pass"
    assert m.spectral_entropy_bits == pytest.approx(math.log2(bins)) and m.spectral_entropy_normalized == pytest.approx(1)
    assert m.spectral_centroid == pytest.approx(0.25) and m.spectral_rolloff == pytest.approx(np.ceil(0.85 * bins - 1) / L)
    assert m.energy_length_90 == 1 and m.center_of_mass_lag == 0 and m.peak_lag == 0
    f = np.arange(bins) / L
    assert m.band_energy["low"] == pytest.approx(np.mean(f < 0.1)) and m.band_energy["high"] == pytest.approx(np.mean(f >= 0.25))
    assert m.spectral_bandwidth == pytest.approx(np.std(f))


def test_white_noise_entropy_matches_exponential_periodogram_theory():
    """For white noise P_k/E[P] ~ Exp(1), so H ≈ log2(n) - (1 - γ)/ln 2 bits (γ: Euler's constant)."""
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((20, 8192))
    entropies = [m.spectral_entropy_bits for m in analyze_bank(bank)]
    expected = math.log2(4097) - (1 - np.euler_gamma) / math.log(2)
    assert np.mean(entropies) == pytest.approx(expected, abs=0.01)
    bands = np.mean([[m.band_energy[b] for b in ("low", "mid", "high")] for m in analyze_bank(bank)], axis=0)
    np.testing.assert_allclose(bands, [0.2, 0.3, 0.5], atol=0.02)


@pytest.mark.parametrize("nfft", [None, 300, 512])
def test_power_matches_scipy_periodogram(nfft):
    rng = np.random.default_rng(1)
    k = rng.standard_normal(200) * 0.9 ** np.arange(200)
    n = nfft or 200
    f_ref, pxx = signal.periodogram(k, nfft=n, window="boxcar", detrend=False, scaling="spectrum", return_onesided=True)
    one_sided = np.full(len(f_ref), 2.0)  # scipy doubles the bins strictly between DC and Nyquist
    one_sided[0] = 1.0
    if n % 2 == 0:
        one_sided[-1] = 1.0
    freqs, power = spectral.power_spectrum(k, nfft)
    np.testing.assert_allclose(freqs, f_ref)
    np.testing.assert_allclose(power, pxx * len(k) ** 2 / one_sided, rtol=1e-9)


def test_filter_type_from_hand_built_spectra():
    lobe = np.array([[1, 0.9, 0.2, 0.1, 0.1], [0.1, 0.2, 1, 0.2, 0.1], [0.1, 0.1, 0.2, 0.9, 1], [1, 0.8, 0.6, 0.7, 0.9], [1, 0.1, 0.1, 0.1, 0.6]])
    assert spectral.filter_type(lobe).tolist() == ["low-pass", "band-pass", "high-pass", "all-pass", "low-pass"]


def test_bank_equals_kernel_by_kernel_and_summary():
    rng = np.random.default_rng(2)
    bank = rng.standard_normal((6, 64)) * 0.9 ** np.arange(64)
    rows = analyze_bank(bank)
    for row, k in zip(rows, bank):  # batched and single FFTs may differ in the last bits
        single = analyze_kernel(k).to_dict()
        for key, value in row.to_dict().items():
            assert value == (single[key] if isinstance(value, str) else pytest.approx(single[key], rel=1e-9)), key
    summary, _ = summarize_layer(bank)
    dom = [c.dominant_frequency for c in rows]
    assert summary["channels"]["dominant_frequency"]["median"] == pytest.approx(np.median(dom))
    assert summary["channels"]["dominant_frequency"]["q1"] == pytest.approx(np.percentile(dom, 25))
    assert sum(summary["filter_type_share"].values()) == pytest.approx(1)
    _, power = spectral.power_spectrum(bank)
    mean_p = (power / power.sum(-1, keepdims=True)).mean(0)
    assert summary["mean_spectrum"]["spectral_entropy_bits"] == pytest.approx(-(mean_p * np.log2(mean_p)).sum())
    assert set(rows[0].to_dict()) >= {"dominant_frequency", "spectral_entropy_bits", "band_energy", "decay_rate"}


def test_zero_padding_refines_the_grid_and_bad_input_is_refused():
    k = 0.9 ** np.arange(64)
    assert analyze_kernel(k, nfft=1024).dominant_frequency == 1 / 1024
    with pytest.raises(ValueError, match="nfft"):
        analyze_kernel(k, nfft=10)
    with pytest.raises(ValueError, match="zero energy"):
        analyze_kernel(np.zeros(16))
    with pytest.raises(ValueError, match="band edges"):
        analyze_kernel(k, band_edges=(0.3, 0.2))


def test_temporal_on_hand_built_kernels():
    k = np.array([0.0, 3.0, -4.0, 0.0, 0.0])
    assert temporal.peak_lag(k) == 2 and temporal.energy_length(k) == 3
    assert temporal.center_of_mass_lag(k) == pytest.approx((1 * 9 + 2 * 16) / 25)
    assert temporal.zero_crossing_rate(k) == pytest.approx(1 / 4)
    np.testing.assert_array_equal(temporal.envelope(k), [4, 4, 4, 0, 0])
