"""Reading a selective layer: its hidden attention on real functions.

A selective SSM has no kernel of its own: Δ, B and C depend on the token, so each function gets
its own causal mixing matrix α (``models.mamba.scan_attention``), y_t − D u_t = Σ_{s ≤ t} α[t, s] u_s.
Analysis knows a selective layer through one contract: a submodule with
``selective_inputs(u) -> (Δ (B, D, L), A (D, N), B (B, N, L), C (B, N, L))`` for its input
u (B, H, L). ``Mamba`` satisfies it.

Per layer, over the given functions (each run through the model alone, so nothing is padded),
with lag l = t − s and |α| the attention mass:

* lag profile: P[l] = mean of |α[t, t − l]| over positions t ≥ l, channels and functions;
* effective dependency range of a row (t, channel, function): the fewest lags 0 .. r − 1 that hold
  90% of the row's mass Σ_s |α[t, s]| (rows without mass are skipped); median and quartiles over
  all rows, and the spread between functions (each function's median row range);
* mean effective kernel: K̄[d, l] = mean over t ≥ l and functions of α[t, t − l] (signed), one
  (D, L) bank that the S4D analysis reads like any kernel bank (``kernels.analyze_kernels``),
  so a selective row sits in the same table. A lag no function reaches stays 0.

Memory stays bounded: one function at a time. On CPU in float32, compiled loops walk each row of
α once and keep only that row (``models.mamba.attention_lag_sums``); elsewhere (CUDA, float64)
``scan_attention`` forms a block of channels of the (L, L) maps at a time
(``models.mamba.channel_blocks``: about 2²³ numbers per map block, 8 channels at L = 1024). The
row ranges are kept as histograms over 1 .. L, not as lists.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..models.mamba import attention_lag_sums, channel_blocks, scan_attention

RANGE_FRACTION = 0.9  # share of a row's attention mass its effective range holds
DEFAULT_FUNCTIONS = 256  # test functions a selective layer is read on (``analyze --limit``); cost grows with each one's L²
NULL_FUNCTIONS = 8  # of those, the ones the selective null reads each fresh model on (its cost is null draws × this)


def selective_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(dotted name, module) of every submodule with ``selective_inputs(u)``, in definition order."""
    return [(name, m) for name, m in model.named_modules() if name and callable(getattr(m, "selective_inputs", None))]


@torch.no_grad()
def layer_inputs(model: nn.Module, tokens: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """What each named selective layer receives, u (1, H, L), when the model reads one function tokens (1, L)."""
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    hooks = [modules[name].register_forward_pre_hook(lambda _, args, name=name: captured.__setitem__(name, args[0])) for name in names]
    try:
        model(tokens, torch.tensor([tokens.shape[1]], device=tokens.device))
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def lag_major(alpha: torch.Tensor) -> torch.Tensor:
    """α (..., L, L) indexed [t, s] → (..., L, L) indexed [t, l] with l = t − s (0 where s would be < 0)."""
    length = alpha.shape[-1]
    t = torch.arange(length, device=alpha.device)[:, None]
    lag = torch.arange(length, device=alpha.device)[None, :]
    source = (t - lag).clamp(min=0).expand(*alpha.shape[:-2], length, length)  # s = t − l
    return torch.gather(alpha, -1, source).masked_fill(lag > t, 0.0)


def row_ranges(alpha_by_lag: torch.Tensor, fraction: float = RANGE_FRACTION) -> torch.Tensor:
    """Effective range of each row of |α| by lag (..., L, L): the fewest lags holding ``fraction``
    of the row's mass, 1 .. L; rows without mass give 0."""
    mass = alpha_by_lag.abs()
    total = mass.sum(-1, keepdim=True)  # (..., L, 1)
    reached = mass.cumsum(-1) >= fraction * total  # (..., L, L)
    ranges = reached.to(torch.uint8).argmax(-1) + 1  # first lag that reaches, as a count of lags
    return torch.where(total[..., 0] > 0, ranges, torch.zeros_like(ranges))


class LayerReading:
    """Running sums of one selective layer over functions (see the module docstring)."""

    def __init__(self, channels: int, length: int):
        self.length = length
        self.kernel_sum = np.zeros((channels, length))  # Σ α[t, t − l] over t and functions
        self.lag_mass = np.zeros(length)  # Σ |α[t, t − l]| over t, channels and functions
        self.lag_count = np.zeros(length)  # number of (t, function) with t ≥ l
        self.range_histogram = np.zeros(length + 1, dtype=np.int64)  # rows by effective range 0 .. L
        self.function_medians: list[float] = []

    def add(self, delta, A, B, C) -> None:
        """One function's scan inputs: Δ (1, D, L_f), A (D, N), B, C (1, N, L_f). On CPU in float32 the
        compiled loops read the attention row by row (``mamba.attention_lag_sums``); elsewhere
        ``scan_attention`` forms it a block of channels at a time."""
        sums = attention_lag_sums(delta, A, B, C, RANGE_FRACTION)
        if sums is None:
            self.add_maps(delta, A, B, C)
            return
        kernel_sum, lag_mass, range_counts = sums
        self._add_function(kernel_sum, lag_mass.sum(0), range_counts.sum(0))

    def add_maps(self, delta, A, B, C) -> None:
        """``add`` through ``scan_attention``'s maps, a block of channels at a time (any device and dtype)."""
        L_f = delta.shape[-1]
        self.add_attention(lag_major(scan_attention(delta[:, block], A[block], B, C))[0] for block in channel_blocks(delta.shape[1], L_f))

    def add_attention(self, blocks) -> None:
        """One function's hidden attention by lag, as consecutive channel blocks (c, L_f, L_f) [channel, t, l]."""
        kernel_sum, lag_mass, range_counts = [], 0.0, 0
        for by_lag in blocks:
            kernel_sum.append(by_lag.sum(1).double().cpu().numpy())
            lag_mass = lag_mass + by_lag.abs().sum((0, 1)).double().cpu().numpy()
            range_counts = range_counts + np.bincount(row_ranges(by_lag).flatten().cpu().numpy(), minlength=by_lag.shape[-1] + 1)
        self._add_function(np.concatenate(kernel_sum), lag_mass, range_counts)

    def _add_function(self, kernel_sum: np.ndarray, lag_mass: np.ndarray, range_counts: np.ndarray) -> None:
        """One function's sums over its rows t: α by lag per channel (D, L_f), |α| by lag (L_f,), and
        its rows counted by effective range 0 .. L_f."""
        L_f = kernel_sum.shape[-1]
        self.kernel_sum[:, :L_f] += kernel_sum
        self.lag_mass[:L_f] += lag_mass
        self.lag_count[:L_f] += np.arange(L_f, 0, -1)  # positions t ≥ l of this function, per channel
        histogram = np.zeros(self.length + 1, dtype=np.int64)
        histogram[: L_f + 1] = range_counts
        self.range_histogram += histogram
        if histogram[1:].sum():
            self.function_medians.append(_histogram_quantiles(histogram)[1])

    def result(self) -> tuple[np.ndarray, dict]:
        """The mean effective kernel (D, L) and the layer's attention readings."""
        reached = self.lag_count > 0
        kernel = np.zeros_like(self.kernel_sum)
        kernel[:, reached] = self.kernel_sum[:, reached] / self.lag_count[reached]
        channels = self.kernel_sum.shape[0]
        profile = np.where(reached, self.lag_mass / np.maximum(self.lag_count * channels, 1), 0.0)
        q1, median, q3 = _histogram_quantiles(self.range_histogram)
        between = np.asarray(self.function_medians, dtype=float)
        readings = {
            "functions": len(self.function_medians),
            "lag_profile": profile.tolist(),
            "effective_range": {"q1": q1, "median": median, "q3": q3, "fraction": RANGE_FRACTION},
            "between_functions": {  # each function's median row range, across functions
                "q1": float(np.percentile(between, 25)), "median": float(np.median(between)), "q3": float(np.percentile(between, 75)),
                "min": float(between.min()), "max": float(between.max()),
            } if between.size else None,
        }
        return kernel, readings


def _histogram_quantiles(histogram: np.ndarray) -> tuple[float, float, float]:
    """Quartiles (q1, median, q3) of the values 1 .. L counted in ``histogram`` (index 0, rows without mass, left out).

    The lower-median convention: the smallest value whose cumulative count reaches the quantile."""
    counts = histogram[1:]
    cumulative = np.cumsum(counts)
    if cumulative[-1] == 0:
        return (float("nan"),) * 3
    return tuple(float(np.searchsorted(cumulative, q * cumulative[-1]) + 1) for q in (0.25, 0.5, 0.75))


@torch.no_grad()
def selective_layer_inputs(model: nn.Module, functions: list[torch.Tensor], length: int) -> dict[str, list[torch.Tensor]]:
    """{selective layer name: [its input u (1, H, L_f) for each function]} (functions: tokens (L_f,), cut to ``length``)."""
    model.eval()
    names = [name for name, _ in selective_modules(model)]
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for tokens in functions:
        for name, u in layer_inputs(model, tokens[None, :length], names).items():
            inputs[name].append(u)
    return inputs


@torch.no_grad()
def read_layer_on_inputs(module: nn.Module, inputs: list[torch.Tensor], length: int) -> tuple[np.ndarray, dict]:
    """(mean effective kernel (D, length), readings) of one selective layer over its inputs u (1, H, L_f)."""
    reading = None
    for u in inputs:
        delta, A, B, C = module.selective_inputs(u)
        reading = reading or LayerReading(delta.shape[1], length)
        reading.add(delta, A, B, C)
    return reading.result()
