"""S4D: the diagonal state space layer, convolution core only.

Each of the H channels is an independent linear time-invariant system with N/2 complex modes
(the other N/2 are their complex conjugates, so the output is real):

    x'(t) = A x(t) + B u(t),    y(t) = 2 Re(C x(t)) + D u(t),      A = diag(a_1 .. a_{N/2}), Re a_n < 0

Discretised with step Δ_h (per channel) it becomes x_k = Ā x_{k-1} + B̄ u_k, y_k = 2 Re(C x_k) + D u_k,

    ZOH:       Ā = exp(ΔA),                B̄ = (exp(ΔA) - 1) / A · B
    bilinear:  Ā = (1 + ΔA/2) / (1 - ΔA/2), B̄ = Δ / (1 - ΔA/2) · B

and unrolling the recurrence gives a causal convolution y = K * u + D u with kernel

    K[h, l] = 2 Re Σ_n C̃[h, n] Ā[h, n]^l,      C̃ = C ⊙ B̄   (B fixed to 1 and absorbed into C̃).

Initialisation follows Gu et al., "On the Parameterization and Initialization of Diagonal State
Space Models" (NeurIPS 2022): S4D-Lin a_n = -1/2 + iπn, S4D-Inv a_n = -1/2 + i N/π (N/(2n+1) - 1),
n = 0 .. N/2-1; log Δ uniform in [log dt_min, log dt_max]; C complex standard normal; D standard normal.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INITS = ("lin", "inv")
DISCRETIZATIONS = ("zoh", "bilinear")


def initial_A(d_state: int, init: str) -> torch.Tensor:
    """The N/2 continuous-time eigenvalues (complex128) of S4D-Lin or S4D-Inv for state size N."""
    n = torch.arange(d_state // 2, dtype=torch.float64)
    if init == "lin":
        imag = math.pi * n
    elif init == "inv":
        imag = d_state / math.pi * (d_state / (2 * n + 1) - 1)
    else:
        raise ValueError(f"S4D init must be one of {INITS}, got {init!r}")
    return torch.complex(torch.full_like(n, -0.5), imag)


def vandermonde_kernel(log_A_bar: torch.Tensor, C_tilde: torch.Tensor, L: int) -> torch.Tensor:
    """K (H, L) = 2 Re Σ_n C̃[h, n] exp(l · log Ā[h, n]), through the full (H, N/2, L) Vandermonde."""
    lags = torch.arange(L, device=log_A_bar.device, dtype=log_A_bar.real.dtype)  # (L,)
    vandermonde = torch.exp(log_A_bar[..., None] * lags)  # (H, N/2, L)
    return 2 * torch.einsum("hn,hnl->hl", C_tilde, vandermonde).real  # (H, L)


def chunked_kernel(log_A_bar: torch.Tensor, C_tilde: torch.Tensor, L: int) -> torch.Tensor:
    """The same K (H, L) with lags split as l = c·j + i (see ``S4D.kernel``); c = ⌈√L⌉."""
    H = log_A_bar.shape[0]
    c = math.isqrt(max(L - 1, 0)) + 1  # chunk length, ⌈√L⌉
    n_chunks = -(-L // c)
    dtype = log_A_bar.real.dtype
    inner = torch.arange(c, device=log_A_bar.device, dtype=dtype)  # (c,)     i
    outer = torch.arange(n_chunks, device=log_A_bar.device, dtype=dtype) * c  # (J,) c·j
    within = torch.exp(log_A_bar[..., None] * inner)  # (H, N/2, c)   Ā^i
    starts = C_tilde[..., None] * torch.exp(log_A_bar[..., None] * outer)  # (H, N/2, J)   C̃ Ā^(c·j)
    # 2 Re(P Q) = 2 (Re P Re Q - Im P Im Q): one real (J, N) @ (N, c) product per channel.
    P = torch.cat([starts.real, -starts.imag], dim=1).transpose(1, 2)  # (H, J, N)
    Q = torch.cat([within.real, within.imag], dim=1)  # (H, N, c)
    return 2 * torch.bmm(P, Q).reshape(H, n_chunks * c)[:, :L]  # (H, L)


class CausalFFTConv(torch.autograd.Function):
    """y[b, h, t] = Σ_{s ≤ t} K[h, t - s] u[b, h, s] for u (B, H, L) and K (H, L), by FFT of length 2L.

    Both signals are zero-padded to 2L, so the circular convolution equals the linear one on the
    first L outputs (no wrap-around). The backward pass is written out because autograd's own,
    through rfft/irfft, goes via full complex transforms and zero-filled spectra (twice the work):

        ∂/∂u[s] = Σ_t g[t] K[t - s]   = irfft(G · conj(K̂))[s]        (a correlation)
        ∂/∂K[d] = Σ_b Σ_t g[t] u[t - d] = irfft(Σ_b G · conj(Û))[d]

    with G = rfft(g, 2L); the zero padding again keeps the negative lags out. Five real FFTs of
    (B, H, 2L) in all. For backward it keeps the real input u (B, H, L), which the layer's D ⊙ u
    term keeps anyway, and K̂ (H, L+1), and computes Û again: keeping Û (B, H, L+1) complex instead
    would hold twice u's bytes per layer for one FFT less (docs/PERFORMANCE.md, "Memory").
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        L = u.shape[-1]
        K_f = torch.fft.rfft(K, n=2 * L)  # (H, L+1)
        ctx.save_for_backward(u, K_f)
        return torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * K_f, n=2 * L)[..., :L]  # (B, H, L)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        u, K_f = ctx.saved_tensors
        L = grad_y.shape[-1]
        grad_f = torch.fft.rfft(grad_y, n=2 * L)  # (B, H, L+1)
        grad_u = grad_K = None
        if ctx.needs_input_grad[0]:
            grad_u = torch.fft.irfft(grad_f * K_f.conj(), n=2 * L)[..., :L]  # (B, H, L)
        if ctx.needs_input_grad[1]:
            u_f = torch.fft.rfft(u, n=2 * L)  # (B, H, L+1), the forward's spectrum again (same bits)
            grad_K = torch.fft.irfft((grad_f * u_f.conj()).sum(0), n=2 * L)[..., :L]  # (H, L)
        return grad_u, grad_K


def causal_fft_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Causal convolution of u (B, H, L) with per-channel kernels K (H, L); see ``CausalFFTConv``."""
    return CausalFFTConv.apply(u, K)


class S4D(nn.Module):
    """A diagonal SSM per channel. ``forward`` maps u (B, H, L) to y (B, H, L).

    Parameters (all trained): ``log_dt`` (H,), ``log_A_real`` (H, N/2) with Re A = -exp(log_A_real)
    so the system stays stable, ``A_imag`` (H, N/2), ``C`` (H, N/2, 2) as a real view of a complex
    tensor, and ``D`` (H,).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        init: str = "lin",
        discretization: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        if d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be an even number >= 2 (conjugate pairs), got {d_state}")
        if discretization not in DISCRETIZATIONS:
            raise ValueError(f"discretization must be one of {DISCRETIZATIONS}, got {discretization!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.d_model, self.d_state = d_model, d_state
        self.init, self.discretization = init, discretization
        H, half = d_model, d_state // 2

        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)  # (H,)
        A = initial_A(d_state, init)  # (N/2,)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.log(-A.real).float().repeat(H, 1))  # (H, N/2)
        self.A_imag = nn.Parameter(A.imag.float().repeat(H, 1))  # (H, N/2)
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, half, dtype=torch.cfloat)))  # (H, N/2, 2)
        self.D = nn.Parameter(torch.randn(H))  # (H,)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, init={self.init!r}, discretization={self.discretization!r}"

    def discrete_modes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """log Ā and C̃ = C ⊙ B̄, both complex (H, N/2).

        ``log Ā`` is ΔA for ZOH and log((1 + ΔA/2) / (1 - ΔA/2)) for bilinear, so that in both cases
        Ā^l = exp(l · log Ā).
        """
        dt = torch.exp(self.log_dt)[:, None]  # (H, 1)
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (H, N/2)
        dtA = dt * A  # (H, N/2)
        if self.discretization == "zoh":
            log_A_bar = dtA
            B_bar = torch.expm1(dtA) / A  # (H, N/2)
        else:
            log_A_bar = torch.log((1 + dtA / 2) / (1 - dtA / 2))
            B_bar = dt / (1 - dtA / 2)
        return log_A_bar, torch.view_as_complex(self.C) * B_bar

    def kernel(self, L: int, method: str = "chunked") -> torch.Tensor:
        """The real convolution kernel K (H, L): K[h, l] = 2 Re Σ_n C̃[h, n] Ā[h, n]^l.

        ``method="chunked"`` (default, fast) splits each lag as l = c·j + i with chunk c ≈ √L:

            K[h, c·j + i] = 2 Re Σ_n (C̃[h, n] Ā[h, n]^(c·j)) · Ā[h, n]^i

        so the kernel is one real matrix product per channel, (L/c, N) @ (N, c), and only
        H·N/2·(c + L/c) complex exponentials are needed instead of H·N/2·L; no (H, N/2, L) tensor is
        built, in the forward pass or in the saved tensors for backward. Every power is still one
        exp of (lag · log Ā), as in the reference, so there is no error growth along the kernel.
        ``method="vandermonde"`` is the direct reference: exp(log Ā · l) as an (H, N/2, L) tensor.
        """
        log_A_bar, C_tilde = self.discrete_modes()  # (H, N/2) each
        if method == "vandermonde":
            return vandermonde_kernel(log_A_bar, C_tilde, L)
        if method == "chunked":
            return chunked_kernel(log_A_bar, C_tilde, L)
        raise ValueError(f"kernel method must be 'chunked' or 'vandermonde', got {method!r}")

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """y = K * u + D ⊙ u along the last axis (causal); u, y (B, H, L)."""
        K = self.kernel(u.shape[-1])  # (H, L)
        return causal_fft_conv(u, K) + self.D[:, None] * u

    # Recurrent mode: the same system, one token at a time.

    def default_state(self, batch_size: int) -> torch.Tensor:
        """Zero state x (B, H, N/2), complex."""
        return torch.zeros(batch_size, self.d_model, self.d_state // 2, dtype=torch.cfloat, device=self.D.device)

    def recurrent_modes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Ā, C̃), complex (H, N/2) each: compute once and pass to ``step`` for a whole stream."""
        log_A_bar, C_tilde = self.discrete_modes()
        return torch.exp(log_A_bar), C_tilde

    def step(
        self, u_t: torch.Tensor, state: torch.Tensor, modes: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of x_k = Ā x_{k-1} + u_k, y_k = 2 Re Σ_n C̃ x_k + D u_k (B̄ lives in C̃).

        u_t (B, H) real, state (B, H, N/2) complex → y_t (B, H), new state. ``modes`` from
        ``recurrent_modes()`` saves re-discretising at every token; without it they are computed here.
        The cost per token is the same at every position: O(B·H·N), nothing grows with the stream.
        """
        A_bar, C_tilde = self.recurrent_modes() if modes is None else modes  # (H, N/2)
        state = A_bar * state + u_t[..., None]  # (B, H, N/2)
        y_t = 2 * (C_tilde * state).real.sum(-1) + self.D * u_t  # (B, H)
        return y_t, state
