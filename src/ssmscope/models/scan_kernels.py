"""The selective scan's CPU loops, compiled by numba (used through ``mamba.selective_scan``).

One channel (b, d) at a time, the recurrence of ``mamba.py`` with a_t = exp(Δ_t A) and
b_t = Δ_t B_t u_t (per state n):

    h_t = a_t ⊙ h_{t−1} + b_t,        y_t = Σ_n C_t[n] h_t[n]                      (forward)

and its reverse-mode derivative. With ȳ_t = ∂loss/∂y_t and g_t = ∂loss/∂h_t (through every later
output), g_t = C_t ȳ_t + a_{t+1} ⊙ g_{t+1}, g_L = 0, and

    ∂u_t = Δ_t Σ_n g_t[n] B_t[n]                    ∂B_t[n] = Σ_d g_t[n] Δ_t u_t
    ∂Δ_t = Σ_n g_t[n] (B_t[n] u_t + A[n] a_t[n] h_{t−1}[n])
    ∂A[n] = Σ_{b,t} g_t[n] Δ_t a_t[n] h_{t−1}[n]    ∂C_t[n] = Σ_d ȳ_t h_t[n]

(∂a_t/∂Δ_t = A a_t, ∂a_t/∂A = Δ_t a_t). The backward needs h_{t−1} in reverse order: it runs the
forward recurrence of the one channel again and keeps that channel's states, (L, N) floats
(64 KB at L = 1024, N = 16), then walks back. Nothing of size (batch, D, N, L) is ever held:
the forward keeps no state at all, the backward one channel's per thread.

Arrays are float32. Layouts: u, Δ, ȳ (batch, D, L); A (D, N); B and C transposed to
(batch, L, N) by the caller so that the inner loop over n reads contiguous memory (and vectorises). Channels run in parallel
(numba prange) on ``numba.set_num_threads`` threads; the backward parallelises over the batch
only, because ∂B and ∂C sum over channels. ``fastmath`` lets LLVM reorder the sum over the
N = 16 states; every state update keeps its order in t.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

ZERO = np.float32(0.0)  # the loops are compiled for float32 (``mamba.selective_scan`` sends other dtypes elsewhere):
                        # float32 accumulators keep the inner loop in 16-wide float arithmetic
LOG2_E = np.float32(1.4426950408889634)
LN2_HIGH, LN2_LOW = np.float32(0.693145751953125), np.float32(1.428606765330187e-06)  # ln 2 = high + low (Cody-Waite)


@njit(fastmath=True, inline="always")
def exp32(x):  # pragma: no cover - compiled
    """e^x in float32 from arithmetic alone, so that LLVM vectorises the loops that call it.

    numba's math.exp calls libm's scalar expf (no vector maths library in the pip build of llvmlite),
    which made the exponentials most of the scan's time. Here: x = k ln 2 + r with k = round(x / ln 2)
    and |r| ≤ ln 2 / 2 (ln 2 split in two parts so that k ln 2 is exact), e^r by its Taylor
    polynomial of degree 6 (truncation error r⁷/7! ≤ 1.2·10⁻⁷ relative), and 2^k written straight
    into the float's exponent bits. x is clamped to [−87, 88], the float32 range of normal numbers
    (the scan's exponents Δ·A are ≤ 0; a decay below e^−87 ≈ 1.6·10⁻³⁸ counts as that). Measured
    relative error against float64 exp: ≤ 5·10⁻⁷ (tests/test_mamba.py).
    """
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    k = np.int32(x * LOG2_E + (np.float32(0.5) if x >= 0 else np.float32(-0.5)))  # round to nearest
    kf = np.float32(k)
    r = x - kf * LN2_HIGH - kf * LN2_LOW
    p = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (np.float32(1 / 6) + r * (
        np.float32(1 / 24) + r * (np.float32(1 / 120) + r * np.float32(1 / 720))))))
    return p * np.int32((k + np.int32(127)) << np.int32(23)).view(np.float32)


@njit(fastmath=True, parallel=True, cache=True)
def scan_forward(u, delta, A, Bt, Ct, y):  # pragma: no cover - compiled (covered through mamba.selective_scan)
    """y[b, d, t] = Σ_n C_t[n] h_t[n] for every channel; writes y (batch, D, L) in place."""
    n_batch, n_channels, length = u.shape
    n_state = A.shape[1]
    for bd in prange(n_batch * n_channels):
        b, d = bd // n_channels, bd % n_channels
        h = np.zeros(n_state, dtype=np.float32)
        for t in range(length):
            dt = delta[b, d, t]
            dt_u = dt * u[b, d, t]
            total = ZERO
            for n in range(n_state):
                h[n] = exp32(dt * A[d, n]) * h[n] + dt_u * Bt[b, t, n]
                total += Ct[b, t, n] * h[n]
            y[b, d, t] = total


@njit(fastmath=True, parallel=True, cache=True)
def scan_backward(u, delta, A, Bt, Ct, grad_y, grad_u, grad_delta, grad_A_per_batch, grad_Bt, grad_Ct):  # pragma: no cover
    """Writes ∂u, ∂Δ (batch, D, L), ∂A per batch element (batch, D, N), ∂B, ∂C (batch, L, N).

    grad_A_per_batch, grad_Bt and grad_Ct must be zero on entry (they are accumulated). The
    channel's states are kept one row late, states[t + 1] = h_t with states[0] = h_{−1} = 0, and
    its decays with a zero row after the last token, so the loops over n have no branches.
    """
    n_batch, n_channels, length = u.shape
    n_state = A.shape[1]
    for b in prange(n_batch):
        states = np.zeros((length + 1, n_state), dtype=np.float32)  # states[t + 1] = h_t of the current channel
        decays = np.zeros((length + 1, n_state), dtype=np.float32)  # decays[t] = a_t = exp(Δ_t A); decays[L] = 0
        g = np.empty(n_state, dtype=np.float32)
        h = np.empty(n_state, dtype=np.float32)
        for d in range(n_channels):
            # The channel's forward again, keeping its states (the recurrence itself runs in h).
            h[:] = ZERO
            for t in range(length):
                dt = delta[b, d, t]
                dt_u = dt * u[b, d, t]
                for n in range(n_state):
                    a = exp32(dt * A[d, n])
                    decays[t, n] = a
                    h[n] = a * h[n] + dt_u * Bt[b, t, n]
                    states[t + 1, n] = h[n]
            # Then back from the last token: g_t = C_t ȳ_t + a_{t+1} g_{t+1}.
            g[:] = ZERO
            for t in range(length - 1, -1, -1):
                dt = delta[b, d, t]
                u_t = u[b, d, t]
                gy = grad_y[b, d, t]
                sum_gB = ZERO
                sum_gdelta = ZERO
                for n in range(n_state):
                    g_n = decays[t + 1, n] * g[n] + gy * Ct[b, t, n]
                    g[n] = g_n
                    decayed_prev = decays[t, n] * states[t, n]  # a_t h_{t−1}
                    grad_Ct[b, t, n] += gy * states[t + 1, n]
                    grad_Bt[b, t, n] += g_n * dt * u_t
                    sum_gB += g_n * Bt[b, t, n]
                    sum_gdelta += g_n * (Bt[b, t, n] * u_t + A[d, n] * decayed_prev)
                    grad_A_per_batch[b, d, n] += g_n * dt * decayed_prev
                grad_u[b, d, t] = dt * sum_gB
                grad_delta[b, d, t] = sum_gdelta


@njit(fastmath=True, parallel=True, cache=True)
def windowed_scan_forward(u, delta, A, Bt, Ct, window, y):  # pragma: no cover
    """Like ``scan_forward`` but h_t keeps only the last ``window`` tokens' inputs (window ≥ 1):

        h_t^(m) = h_t − exp(A Σ_{k=t−m+1..t} Δ_k) ⊙ h_{t−m}        (h_{t−m} = 0 for t < m)

    The sums of Δ run in float64 (a difference of two cumulative sums over up to L tokens).
    """
    n_batch, n_channels, length = u.shape
    n_state = A.shape[1]
    for bd in prange(n_batch * n_channels):
        b, d = bd // n_channels, bd % n_channels
        states = np.zeros((length, n_state), dtype=np.float32)
        cumulative = np.zeros(length + 1)  # S[t+1] = Σ_{k ≤ t} Δ_k, float64
        h = np.zeros(n_state, dtype=np.float32)
        for t in range(length):
            dt = delta[b, d, t]
            cumulative[t + 1] = cumulative[t] + dt
            dt_u = dt * u[b, d, t]
            total = ZERO
            for n in range(n_state):
                h[n] = exp32(dt * A[d, n]) * h[n] + dt_u * Bt[b, t, n]
                states[t, n] = h[n]
            if t >= window:
                gap = cumulative[t + 1] - cumulative[t + 1 - window]  # Σ_{k=t−m+1..t} Δ_k
                for n in range(n_state):
                    total += Ct[b, t, n] * (h[n] - math.exp(A[d, n] * gap) * states[t - window, n])
            else:
                for n in range(n_state):
                    total += Ct[b, t, n] * h[n]
            y[b, d, t] = total




ROWS_TOGETHER = 8  # rows of α walked together by attention_lag_readings: one float64 vector of AVX-512


@njit(fastmath=True, parallel=True, cache=True)
def attention_lag_readings(delta, A, Bt, Ct, fraction, kernel_sum, lag_mass, range_counts):  # pragma: no cover - compiled
    """One function's hidden attention, read row by row without ever holding an (L, L) map.

    For each channel d and row t, α[t, s] = Δ_s Σ_n w_s[n] B_s[n] with w_t = C_t and
    w_s = w_{s+1} ⊙ exp(Δ_{s+1} A), walking s down from t (the decay of ``mamba.scan_attention``
    taken one token at a time). ``ROWS_TOGETHER`` consecutive rows t0 + j walk down together, so
    that the inner loops run across rows (vectorised) instead of summing over n within one row; a
    row joins when s reaches its t. Each value is kept by lag, by_lag[t − s, j], and the rows are
    then added to the per-channel sums: kernel_sum[d, l] += α[t, t − l], lag_mass[d, l] +=
    |α[t, t − l]|, and range_counts[d, r] += 1 where r is the row's effective range (the fewest
    lags holding ``fraction`` of its mass; 0 for a row without mass).

    Inputs: delta (D, L), A (D, N), Bt and Ct (L, N), float32. Decays, products and sums run in
    float64, so a decay product over thousands of tokens loses nothing to rounding. Outputs
    (float64, float64, int64) are added to, one row per channel, so channels run in parallel.
    Memory per channel: the (L, N) decays and (L, ROWS_TOGETHER) values of the rows being walked.
    """
    D, L = delta.shape
    N = A.shape[1]
    R = ROWS_TOGETHER
    for d in prange(D):
        decay = np.empty((L, N))  # exp(Δ_k A[d, n]), float64
        for k in range(L):
            for n in range(N):
                decay[k, n] = math.exp(np.float64(delta[d, k]) * np.float64(A[d, n]))
        w = np.empty((N, R))  # per state n, the walking product of each row
        acc = np.empty(R)
        by_lag = np.empty((L, R))  # α[t0 + j, t0 + j − l] at [l, j]; 0 beyond the row's t
        total, target, reached = np.empty(R), np.empty(R), np.empty(R)
        effective = np.empty(R, dtype=np.int64)
        for t0 in range(0, L, R):
            rows = min(R, L - t0)
            top = t0 + rows - 1
            w[:] = 0.0
            by_lag[: top + 1] = 0.0
            for s in range(top, -1, -1):
                if s < top:
                    for n in range(N):
                        factor = decay[s + 1, n]
                        for j in range(R):
                            w[n, j] *= factor
                if s >= t0:  # row t = s starts here
                    for n in range(N):
                        w[n, s - t0] = Ct[s, n]
                for j in range(R):
                    acc[j] = 0.0
                for n in range(N):
                    b = np.float64(Bt[s, n])
                    for j in range(R):
                        acc[j] += w[n, j] * b
                step = np.float64(delta[d, s])
                first = max(s - t0, 0)  # rows j < s − t0 have t < s: not started
                for j in range(first, rows):
                    by_lag[t0 + j - s, j] = acc[j] * step
            for j in range(R):
                total[j] = 0.0
                reached[j] = 0.0
                effective[j] = 0
            for lag in range(top + 1):
                for j in range(R):
                    total[j] += abs(by_lag[lag, j])
            for j in range(R):
                target[j] = fraction * total[j]
            for lag in range(top + 1):
                sum_value, sum_mass = 0.0, 0.0
                for j in range(R):
                    value = by_lag[lag, j]
                    sum_value += value
                    sum_mass += abs(value)
                    reached[j] += abs(value)
                    if effective[j] == 0 and total[j] > 0.0 and reached[j] >= target[j]:
                        effective[j] = lag + 1
                kernel_sum[d, lag] += sum_value
                lag_mass[d, lag] += sum_mass
            for j in range(rows):
                range_counts[d, effective[j]] += 1
