"""Mamba's selective SSM (S6) and the Mamba block, with the scan written out for CPU.

A selective SSM is a diagonal SSM whose step Δ and input/output vectors B, C depend on the token
(Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023). Per channel
d and state n, with A real and negative (A = −exp(A_log)):

    h_t = exp(Δ_t A) ⊙ h_{t−1} + Δ_t B_t u_t          (ZOH for A, Euler for B, as in Mamba)
    y_t = Σ_n C_t[n] h_t[n] + D u_t,                   h_{−1} = 0

Unrolled, the output is a causal mixing of the inputs with input-dependent weights, the "hidden
attention" of Ali, Zimerman & Wolf ("The Hidden Attention of Mamba Models", 2024):

    y_t − D u_t = Σ_{s ≤ t} α[t, s] u_s,   α[t, s] = Σ_n C_t[n] exp(A[n] Σ_{k=s+1..t} Δ_k) Δ_s B_s[n]

For a time-invariant SSM α[t, s] = K[t − s], the convolution kernel; here every row differs.

Shapes follow the reference scan of state-spaces/mamba: u, Δ (batch, D, L); A (D, N);
B, C (batch, N, L) (shared by the D channels); D (D,).

Two implementations of the same recurrence (``selective_scan`` picks one):

- CPU float32: compiled loops (``scan_kernels``, numba) with a written backward that recomputes
  each channel's states instead of storing them (docs/METHODS.md, "Selective scan").
- anything else (CUDA tensors, float64): PyTorch, chunks of ``TORCH_SCAN_CHUNK`` tokens, each
  chunk in closed form (its hidden attention plus the incoming state, ``_scan_chunk``) under
  activation checkpointing, so autograd keeps the states at chunk boundaries only: (batch, D, N)
  per chunk instead of per token.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

TORCH_SCAN_CHUNK = 32  # tokens per checkpointed chunk of the PyTorch scan: the fastest of 8–64 on an H100 (PERFORMANCE.md)
ATTENTION_BLOCK = 64  # rows of the hidden attention computed together (``scan_attention``)


def _check_scan_inputs(u, delta, A, B, C, D) -> None:
    batch, channels, length = u.shape
    n_state = A.shape[-1]
    expected = {"delta": (delta, (batch, channels, length)), "A": (A, (channels, n_state)),
                "B": (B, (batch, n_state, length)), "C": (C, (batch, n_state, length))}
    if D is not None:
        expected["D"] = (D, (channels,))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"selective_scan: {name} has shape {tuple(tensor.shape)}, expected {shape} for u {tuple(u.shape)} and A {tuple(A.shape)}")


def selective_scan(u, delta, A, B, C, D=None, window: int | None = None) -> torch.Tensor:
    """y (batch, D, L) of the selective SSM above, for u, delta (batch, D, L), A (D, N), B, C (batch, N, L).

    ``delta`` is used as given (Mamba's softplus and bias are the caller's). With ``window`` = m the
    state only remembers the last m tokens (the probes' truncation, no gradient):

        h_t^(m) = Σ_{s=t−m+1..t} exp(A Σ_{k=s+1..t} Δ_k) Δ_s B_s u_s,   m = 0 leaves D u only.

    Differentiable in every input (the windowed form is not).
    """
    _check_scan_inputs(u, delta, A, B, C, D)
    if window is not None:
        with torch.no_grad():
            y = _windowed_scan(u, delta, A, B, C, window)
    elif _numba_applies(u, delta, A, B, C):
        y = _NumbaScan.apply(u, delta, A, B, C)
    else:
        y = _torch_scan(u, delta, A, B, C)
    return y if D is None else y + D[:, None] * u


# The compiled CPU path.

def _numba_applies(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and _kernels() is not None


_KERNELS = None


def _kernels():
    """The numba module, imported (and its loops compiled or read from numba's cache) on first use; None without numba."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from . import scan_kernels
        except ImportError:  # numba missing: the PyTorch path serves
            _KERNELS = False
        else:
            _KERNELS = scan_kernels
    return _KERNELS or None


def _numba_threads() -> None:
    """Run numba's parallel loops on as many threads as torch uses (``--threads``)."""
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _arrays(*tensors: torch.Tensor):
    return [t.detach().contiguous().numpy() for t in tensors]


class _NumbaScan(torch.autograd.Function):
    """y (batch, D, L) = the scan without the D term; backward by ``scan_kernels.scan_backward``."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C):
        Bt, Ct = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()  # (batch, L, N)
        y = torch.empty_like(u, memory_format=torch.contiguous_format)
        _numba_threads()
        _kernels().scan_forward(*_arrays(u, delta, A, Bt, Ct), y.numpy())
        ctx.save_for_backward(u, delta, A, Bt, Ct)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        u, delta, A, Bt, Ct = ctx.saved_tensors
        grad_u = torch.empty_like(u, memory_format=torch.contiguous_format)  # (batch, D, L)
        grad_delta = torch.empty_like(delta, memory_format=torch.contiguous_format)
        grad_A = torch.zeros(u.shape[0], *A.shape)  # (batch, D, N), summed below
        grad_Bt, grad_Ct = torch.zeros_like(Bt), torch.zeros_like(Ct)  # (batch, L, N)
        _numba_threads()
        _kernels().scan_backward(
            *_arrays(u, delta, A, Bt, Ct, grad_y),
            grad_u.numpy(), grad_delta.numpy(), grad_A.numpy(), grad_Bt.numpy(), grad_Ct.numpy(),
        )
        return grad_u, grad_delta, grad_A.sum(0), grad_Bt.transpose(1, 2), grad_Ct.transpose(1, 2)


# The PyTorch path (CUDA, float64, no numba).

def _scan_chunk(u, delta, A, B, C, h):
    """T tokens of the recurrence from state h (batch, D, N) in closed form: → y (batch, D, T), last state.

    Within the chunk, with gap[t, s] = Σ_{k=s+1..t} Δ_k and S_t = Σ_{k≤t} Δ_k (from the chunk's start),

        h_t = exp(A S_t) h + Σ_{s≤t} exp(A gap[t, s]) Δ_s B_s u_s,    y_t = Σ_n C_t[n] h_t[n],

    i.e. the chunk's hidden attention applied to Δ u plus the decayed incoming state: a few large
    tensor operations instead of T small steps (on a GPU the steps' kernel launches dominate).
    Every exponent is ≤ 0 (A < 0, Δ > 0), and gap is summed directly, not taken as a difference of
    cumulative sums, so nothing overflows or cancels. Memory: (batch, D, N, T, T) for the chunk.
    """
    T = u.shape[-1]
    later = torch.ones(T, T, dtype=torch.bool, device=u.device).tril(-1)  # [k, s]: k > s
    gap = torch.cumsum(delta[..., :, None] * later, dim=-2)  # (batch, D, T, T): Σ_{k=s+1..t} Δ_k at [t, s]
    causal = torch.ones(T, T, dtype=u.dtype, device=u.device).tril()  # [t, s]: s ≤ t
    weights = torch.exp(A[None, :, :, None, None] * gap[:, :, None]) * causal  # (batch, D, N, T, T)
    pairs = C[:, :, :, None] * B[:, :, None, :]  # (batch, N, T, T): C_t[n] B_s[n] at [t, s]
    attention = (weights * pairs[:, None]).sum(2)  # (batch, D, T, T)
    x = delta * u  # (batch, D, T)
    state_decay = torch.exp(A[None, :, :, None] * torch.cumsum(delta, dim=-1)[:, :, None, :])  # (batch, D, N, T): exp(A S_t)
    y = torch.einsum("bdts,bds->bdt", attention, x) + torch.einsum("bdnt,bnt->bdt", state_decay * h[..., None], C)
    last = state_decay[..., -1] * h + torch.einsum("bdns,bns,bds->bdn", weights[..., -1, :], B, x)
    return y, last


def _torch_scan(u, delta, A, B, C, chunk: int = TORCH_SCAN_CHUNK):
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[-1])  # (batch, D, N)
    recompute = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
    outputs = []
    for start in range(0, u.shape[-1], chunk):
        part = slice(start, start + chunk)
        args = (u[..., part], delta[..., part], A, B[..., part], C[..., part], h)
        y, h = checkpoint(_scan_chunk, *args, use_reentrant=False) if recompute else _scan_chunk(*args)
        outputs.append(y)
    return torch.cat(outputs, dim=-1)  # (batch, D, L)


def _windowed_scan(u, delta, A, B, C, window: int):
    if window < 0:
        raise ValueError(f"window must be >= 0 tokens, got {window}")
    if window == 0:
        return torch.zeros_like(u)
    if window >= u.shape[-1]:
        return selective_scan(u, delta, A, B, C)
    if _numba_applies(u, delta, A, B, C):
        Bt, Ct = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()
        y = torch.empty_like(u, memory_format=torch.contiguous_format)
        _numba_threads()
        _kernels().windowed_scan_forward(*_arrays(u, delta, A, Bt, Ct), window, y.numpy())
        return y
    # PyTorch: the banded part of the hidden attention, a channel block at a time.
    return torch.cat([
        torch.einsum("bdts,bds->bdt", scan_attention(delta[:, block], A[block], B, C, window=window), u[:, block])
        for block in channel_blocks(u.shape[1], u.shape[-1])
    ], dim=1)


def channel_blocks(channels: int, length: int, budget: int = 2**23) -> list[slice]:
    """Slices of channels such that one block's (L, L) maps hold about ``budget`` numbers per function
    (at least one channel): what callers of ``scan_attention`` hold at once."""
    step = max(1, budget // max(1, length * length))
    return [slice(i, i + step) for i in range(0, channels, step)]


def scan_attention(delta, A, B, C, window: int | None = None) -> torch.Tensor:
    """The hidden attention α (batch, D, L, L) of the selective SSM, lower triangular:

        α[t, s] = Σ_n C_t[n] · exp(A[n] · Σ_{k=s+1..t} Δ_k) · Δ_s · B_s[n]     for s ≤ t, else 0,

    so that ``selective_scan(u, delta, A, B, C) == einsum("bdts,bds->bdt", α, u)``. With ``window``
    = m only the lags t − s < m are kept. Memory is (batch, D, L, L): callers chunk over functions
    and channels (``channel_blocks``).

    Computed by row blocks of ``ATTENTION_BLOCK`` tokens. With S_t = Σ_{k ≤ t} Δ_k (one cumulative
    sum, in float64) the decay from s to t is exp(A (S_t − S_s)). Inside a block's diagonal square
    it is taken as it stands; for the columns s before the block's first row r it factors through r,

        exp(A (S_t − S_s)) = exp(A (S_t − S_r)) · exp(A (S_r − S_s)),      s < r ≤ t,

    both factors ≤ 1 (A < 0, Δ > 0), so nothing overflows and the whole strip is one product over
    the N states: α[t, s] = Σ_n (C_t[n] e^{A_n (S_t − S_r)}) (e^{A_n (S_r − S_s)} Δ_s B_s[n]). That
    turns the L² · N exponentials of the definition into a matrix product and L · N · L/T exponentials.
    """
    _check_scan_inputs(delta, delta, A, B, C, None)
    length, dtype = delta.shape[-1], delta.dtype
    cumulative = torch.cumsum(delta.double(), dim=-1)  # (batch, D, L): S_t
    B_by_token, C_by_token = B.transpose(1, 2), C.transpose(1, 2)  # (batch, L, N)
    alpha = delta.new_zeros(*delta.shape, length)  # (batch, D, L, L)
    for start in range(0, length, ATTENTION_BLOCK):
        rows = slice(start, min(start + ATTENTION_BLOCK, length))
        S_rows = cumulative[..., rows]  # (batch, D, T)
        # The diagonal square, by the definition.
        gap = (S_rows[..., :, None] - S_rows[..., None, :]).clamp(min=0).to(dtype)  # (batch, D, T, T), 0 above the diagonal
        decay = torch.exp(gap[..., None] * A[None, :, None, None, :])  # (batch, D, T, T, N)
        square = torch.einsum("btn,bdtsn,bsn->bdts", C_by_token[:, rows], decay, B_by_token[:, rows]) * delta[:, :, None, rows]
        alpha[..., rows, rows] = square.tril()
        # The strip left of it, factored through the block's first row r = start.
        if start > 0:
            to_row = (S_rows - cumulative[..., start, None]).to(dtype)  # (batch, D, T): S_t − S_r
            from_column = (cumulative[..., start, None] - cumulative[..., :start]).to(dtype)  # (batch, D, r): S_r − S_s
            left = C_by_token[:, None, rows, :] * torch.exp(to_row[..., None] * A[None, :, None, :])  # (batch, D, T, N)
            right = torch.exp(from_column[..., None] * A[None, :, None, :]) * (delta[..., :start, None] * B_by_token[:, None, :start, :])  # (batch, D, r, N)
            alpha[..., rows, :start] = left @ right.transpose(-1, -2)  # (batch, D, T, r)
    if window is not None:
        positions = torch.arange(length, device=delta.device)
        alpha = alpha.masked_fill(positions[:, None] - positions[None, :] >= window, 0.0)
    return alpha


def attention_lag_sums(delta, A, B, C, fraction: float):
    """One function's hidden attention (batch 1), summed by lag without holding its (L, L) maps:
    (Σ_t α[t, t − l] per channel (D, L), Σ_t |α[t, t − l]| per channel (D, L), the count of rows per
    effective range 0 .. L per channel (D, L + 1)), float64 / int64 numpy arrays, from the compiled
    row-by-row loops (``scan_kernels.attention_lag_readings``; effective range: the fewest lags that
    hold ``fraction`` of a row's |α| mass, 0 for a row without mass). None where the compiled path does
    not apply (CUDA, float64, numba missing, batch > 1): the caller then reads ``scan_attention``.
    """
    if delta.shape[0] != 1 or not _numba_applies(delta, A, B, C):
        return None
    channels, length = delta.shape[1:]
    kernel_sum, lag_mass = np.zeros((channels, length)), np.zeros((channels, length))
    range_counts = np.zeros((channels, length + 1), dtype=np.int64)
    _numba_threads()
    _kernels().attention_lag_readings(*_arrays(delta[0], A, B[0].T, C[0].T), float(fraction), kernel_sum, lag_mass, range_counts)
    return kernel_sum, lag_mass, range_counts


# The Mamba block.

class Mamba(nn.Module):
    """The Mamba block of Gu & Dao (2023): u (B, H, L) → (B, H, L), like ``S4D``.

        x, z = in_proj(u)                      two (B, E, L), E = expand·H
        x = SiLU(causal depthwise conv_k(x))   k = d_conv
        Δ = softplus(W_Δ (W_r x) + b_Δ)         low rank R = ⌈H/16⌉, (B, E, L)
        B, C = W_B x, W_C x                    (B, N, L) each, shared by the E channels
        y = selective_scan(x, Δ, A, B, C, D) ⊙ SiLU(z)
        out = out_proj(y)

    Initialisation as in Mamba: A = −exp(A_log) with A_log[e, n] = log(n + 1) (S4D-Real), D = 1,
    b_Δ = softplus⁻¹(Δ₀) with Δ₀ log-uniform in [dt_min, dt_max] (floored at dt_floor), W_Δ
    uniform in ±R^(−1/2); the projections are PyTorch's default Linear initialisation.

    ``memory_window`` (None, or a number of tokens) makes the scan forget everything older than
    that many tokens: the probes set it (``analysis/probes.py``).
    """

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 4,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, dt_floor: float = 1e-4):
        super().__init__()
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.d_model, self.d_state, self.expand, self.d_conv = d_model, d_state, expand, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        E, N, R = self.d_inner, d_state, self.dt_rank

        self.in_proj = nn.Linear(d_model, 2 * E, bias=False)
        self.conv = nn.Conv1d(E, E, d_conv, groups=E, padding=d_conv - 1)  # causal after cutting the last d_conv − 1
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E)
        nn.init.uniform_(self.dt_proj.weight, -R**-0.5, R**-0.5)
        dt = torch.exp(torch.rand(E) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))  # (E, N)
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, d_model, bias=False)
        self.memory_window: int | None = None

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, expand={self.expand}, d_conv={self.d_conv}"

    def A(self) -> torch.Tensor:
        """A (E, N) = −exp(A_log), real and negative."""
        return -torch.exp(self.A_log)

    def scan_inputs(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What the scan sees for input u (B, H, L): x, Δ (B, E, L), B, C (B, N, L), and the gate z (B, E, L)."""
        L = u.shape[-1]
        x, z = self.in_proj(u.transpose(1, 2)).transpose(1, 2).chunk(2, dim=1)  # (B, E, L) each
        x = F.silu(self.conv(x)[..., :L])  # (B, E, L)
        low_rank, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(low_rank)).transpose(1, 2)  # (B, E, L)
        return x, delta, B.transpose(1, 2), C.transpose(1, 2), z

    def selective_inputs(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(Δ (B, E, L), A (E, N), B, C (B, N, L)) for input u (B, H, L): the contract ``analysis.selective`` reads."""
        _, delta, B, C, _ = self.scan_inputs(u)
        return delta, self.A(), B, C

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x, delta, B, C, z = self.scan_inputs(u)
        y = selective_scan(x, delta, self.A(), B, C, self.D, window=self.memory_window)  # (B, E, L)
        return self.out_proj((y * F.silu(z)).transpose(1, 2)).transpose(1, 2)  # (B, H, L)

    # Recurrent mode: one token at a time, the same numbers as ``forward``.

    def default_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(the last d_conv − 1 inputs of the convolution (B, E, d_conv − 1), the SSM state h (B, E, N)), zeros."""
        weight = self.D
        return (torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=weight.device, dtype=weight.dtype),
                torch.zeros(batch_size, self.d_inner, self.d_state, device=weight.device, dtype=weight.dtype))

    def step(self, u_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """u_t (B, H) → y_t (B, H) and the new state; O(B·E·(N + d_conv)) per token at every position."""
        window, h = state
        x, z = self.in_proj(u_t).chunk(2, dim=-1)  # (B, E) each
        window = torch.cat([window, x[..., None]], dim=-1)  # (B, E, d_conv): the conv's receptive field
        x = F.silu((window * self.conv.weight[:, 0, :]).sum(-1) + self.conv.bias)  # (B, E)
        low_rank, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(low_rank))  # (B, E)
        h = torch.exp(delta[..., None] * self.A()) * h + (delta * x)[..., None] * B[:, None, :]  # (B, E, N)
        y = torch.einsum("ben,bn->be", h, C) + self.D * x  # (B, E)
        return self.out_proj(y * F.silu(z)), (window[..., 1:], h)
