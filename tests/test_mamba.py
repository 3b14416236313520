"""The selective scan, its hidden attention, the windowed (probe) scan and the Mamba block.

The independent truth throughout is the recurrence written as a plain loop over tokens in float64
(``loop_scan``), differentiated by autograd.
"""

import math

import pytest
import torch

from ssmscope.models import mamba
from ssmscope.models.mamba import Mamba, scan_attention, selective_scan


def loop_scan(u, delta, A, B, C, D=None):
    """h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t u_t, y_t = C_t·h_t (+ D u_t), one token at a time."""
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    outputs = []
    for t in range(u.shape[-1]):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        outputs.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(outputs, dim=-1)
    return y if D is None else y + D[:, None] * u


def scan_problem(batch=2, channels=6, n_state=5, length=70, dtype=torch.float32, seed=0):
    """Inputs in Mamba's ranges: Δ log-uniform in [1e-3, 1] (up to 10× Mamba's initial range), A = −(n+1)·U(0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, channels, length, generator=g, dtype=dtype)
    delta = torch.exp(torch.empty(batch, channels, length, dtype=dtype).uniform_(math.log(1e-3), 0.0, generator=g))
    A = -torch.arange(1, n_state + 1, dtype=dtype) * torch.empty(channels, n_state, dtype=dtype).uniform_(0.5, 1.5, generator=g)
    B = torch.randn(batch, n_state, length, generator=g, dtype=dtype)
    C = torch.randn(batch, n_state, length, generator=g, dtype=dtype)
    D = torch.randn(channels, generator=g, dtype=dtype)
    return u, delta, A, B, C, D


def relative_error(a, b):
    """max |a − b| / max |b| (0 when both are all zero, as ∂A is at L = 1)."""
    scale = b.double().abs().max().clamp(min=1e-300)
    return ((a.double() - b.double()).abs().max() / scale).item()


def value_and_grads(fn, inputs, seed=1):
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    y = fn(*inputs)
    grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(y.device, y.dtype)  # same draws at every dtype and device
    return y, torch.autograd.grad(y, inputs, grad_y)


NAMES = ("u", "delta", "A", "B", "C", "D")


@pytest.mark.parametrize("length", [1, 37, 300])
def test_compiled_scan_and_gradients_match_a_float64_loop(length):
    problem = scan_problem(length=length)
    assert mamba._numba_applies(*problem)  # float32 on CPU takes the compiled path
    y, grads = value_and_grads(selective_scan, problem)
    y64, grads64 = value_and_grads(loop_scan, [x.double() for x in problem])
    assert relative_error(y, y64) < 1e-5
    for name, g, g64 in zip(NAMES, grads, grads64):
        assert relative_error(g, g64) < 1e-4, name


def test_torch_scan_matches_the_loop_in_float64():
    problem = [x.double() for x in scan_problem(length=150)]  # float64: the PyTorch path (chunks of TORCH_SCAN_CHUNK, several here)
    assert not mamba._numba_applies(*problem)
    y, grads = value_and_grads(selective_scan, problem)
    y_ref, grads_ref = value_and_grads(loop_scan, problem)
    assert relative_error(y, y_ref) < 1e-12
    for name, g, g_ref in zip(NAMES, grads, grads_ref):
        assert relative_error(g, g_ref) < 1e-12, name


def test_torch_scan_keeps_states_only_at_chunk_boundaries(monkeypatch):
    """Autograd saves nothing of size (batch, D, N, L): peak saved bytes stay those of one chunk."""
    problem = [x.double().requires_grad_() for x in scan_problem(batch=1, channels=4, n_state=8, length=512)]
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        selective_scan(*problem).sum()
    full_states = 1 * 4 * 8 * 512
    assert max(saved) < full_states / 4


def test_scan_attention_reproduces_the_scan():
    u, delta, A, B, C, D = scan_problem(length=90, dtype=torch.float64)
    alpha = scan_attention(delta, A, B, C)  # (batch, D, L, L)
    assert torch.equal(alpha, alpha.tril())
    mixed = torch.einsum("bdts,bds->bdt", alpha, u)
    assert relative_error(mixed, selective_scan(u, delta, A, B, C, D) - D[:, None] * u) < 1e-12
    # one entry by its definition: α[t, s] = Σ_n C_t[n] exp(A[n] Σ_{k=s+1..t} Δ_k) Δ_s B_s[n]
    b, d, t, s = 1, 3, 50, 20
    gap = delta[b, d, s + 1 : t + 1].sum()
    expected = (C[b, :, t] * torch.exp(A[d] * gap) * delta[b, d, s] * B[b, :, s]).sum()
    assert torch.isclose(alpha[b, d, t, s], expected, rtol=1e-12)


@pytest.mark.parametrize("window", [0, 1, 7, 33, 200])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # compiled and PyTorch paths
def test_windowed_scan_equals_a_scan_restarted_window_tokens_back(window, dtype):
    u, delta, A, B, C, D = scan_problem(length=80, dtype=dtype)
    y = selective_scan(u, delta, A, B, C, D, window=window)
    expected = D[:, None] * u.double()
    restarted = torch.zeros_like(expected)
    for t in range(u.shape[-1]):
        start = max(0, t - window + 1)
        if window > 0:  # a fresh scan over tokens start..t, read at t
            part = slice(start, t + 1)
            restarted[..., t] = loop_scan(*(x.double()[..., part] for x in (u, delta)), A.double(), B.double()[..., part], C.double()[..., part])[..., -1]
    assert relative_error(y, expected + restarted) < (1e-5 if dtype == torch.float32 else 1e-12)


def test_bad_shapes_are_named():
    u, delta, A, B, C, D = scan_problem()
    with pytest.raises(ValueError, match="B has shape"):
        selective_scan(u, delta, A, B[:, :-1], C, D)


def test_mamba_step_by_step_equals_forward():
    torch.manual_seed(0)
    block = Mamba(d_model=12, d_state=6, expand=2, d_conv=4).double()
    u = torch.randn(3, 12, 25, dtype=torch.float64)
    full = block(u)
    state = block.default_state(3)
    steps = []
    for t in range(u.shape[-1]):
        y_t, state = block.step(u[..., t], state)
        steps.append(y_t)
    assert relative_error(torch.stack(steps, dim=-1), full) < 1e-12


def test_mamba_is_causal_and_float32_matches_float64():
    torch.manual_seed(1)
    block = Mamba(d_model=16)
    u = torch.randn(2, 16, 40)
    y = block(u)
    changed = u.clone()
    changed[..., 30:] = torch.randn(2, 16, 10)
    assert torch.equal(block(changed)[..., :30], y[..., :30])
    assert relative_error(y, block.double()(u.double())) < 1e-5


def test_mamba_initialisation():
    torch.manual_seed(2)
    block = Mamba(d_model=64, d_state=16, dt_min=1e-3, dt_max=1e-1)
    assert torch.allclose(block.A()[5], -torch.arange(1, 17, dtype=torch.float32), rtol=1e-6, atol=0)  # S4D-Real: −exp(log(n + 1))
    dt = torch.nn.functional.softplus(block.dt_proj.bias)  # Δ of a zero low-rank input
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    assert block.dt_rank == 4 and tuple(block.x_proj.weight.shape) == (4 + 32, 128)


# Reading selective layers (analysis.selective), probes and a whole run.

import copy  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

from ssmscope.analysis.probes import run_probes, truncated  # noqa: E402
from ssmscope.analysis.selective import LayerReading, lag_major, read_layer_on_inputs, row_ranges  # noqa: E402
from ssmscope.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from ssmscope.models import build_model  # noqa: E402
from ssmscope.pipeline import reproduce  # noqa: E402
from ssmscope.train.metrics import binary_metrics  # noqa: E402

SMALL = ModelConfig(embed_dim=16, mamba_d_state=4)


class TimeInvariant(torch.nn.Module):
    """A 'selective' layer whose Δ, B and C do not depend on the token: its hidden attention is the
    Toeplitz matrix of the kernel K[l] = Σ_n C[n] exp(A[n] Δ l) Δ B[n] (closed form)."""

    def __init__(self, dt, A, B, C):
        super().__init__()
        self.dt, self.A, self.B, self.C = dt, A, B, C  # (D,), (D, N), (N,), (N,)

    def selective_inputs(self, u):
        L = u.shape[-1]
        return (self.dt[None, :, None].expand(1, -1, L), self.A, self.B[None, :, None].expand(1, -1, L), self.C[None, :, None].expand(1, -1, L))

    def kernel(self, L):  # (D, L), the closed form
        lags = torch.arange(L, dtype=torch.float64)
        decay = torch.exp(self.A[:, :, None] * self.dt[:, None, None] * lags)  # (D, N, L)
        return torch.einsum("n,dnl->dl", self.C * self.B, decay) * self.dt[:, None]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # attention maps (PyTorch); compiled row-by-row loops
def test_a_time_invariant_layer_reads_as_its_kernel(dtype):
    g = torch.Generator().manual_seed(3)
    parameters = (torch.tensor([0.05, 0.2, 0.5], dtype=torch.float64), -torch.rand(3, 4, generator=g, dtype=torch.float64) - 0.1,
                  torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64))
    layer = TimeInvariant(*(p.to(dtype) for p in parameters))
    inputs = [torch.zeros(1, 3, n, dtype=dtype) for n in (40, 25, 60)]  # only the lengths matter
    kernel, readings = read_layer_on_inputs(layer, inputs, length=64)
    K = TimeInvariant(*(p.to(dtype).double() for p in parameters)).kernel(64).numpy()  # closed form of the same (rounded) numbers
    np.testing.assert_allclose(kernel[:, :60], K[:, :60], rtol=1e-10, atol=1e-14)  # every lag reached is the kernel
    assert np.all(kernel[:, 60:] == 0)  # lags no function reaches
    # lag profile: mean |K[l]| over channels, weighted alike at every lag
    np.testing.assert_allclose(readings["lag_profile"][:60], np.abs(K[:, :60]).mean(0), rtol=1e-10)
    # effective range of row t, by hand: fewest lags r with Σ_{l<r} |K[l]| ≥ 0.9 Σ_{l≤t} |K[l]|
    by_hand = [next(r for r in range(1, t + 2) if np.abs(K[d, :r]).sum() >= 0.9 * np.abs(K[d, : t + 1]).sum())
               for n in (40, 25, 60) for d in range(3) for t in range(n)]
    q1, median, q3 = (float(np.percentile(by_hand, q, method="inverted_cdf")) for q in (25, 50, 75))
    assert (readings["effective_range"]["q1"], readings["effective_range"]["median"], readings["effective_range"]["q3"]) == (q1, median, q3)
    assert readings["functions"] == 3


def test_compiled_lag_readings_equal_the_attention_maps():
    """The compiled row walk (float32 inputs, float64 arithmetic) against scan_attention in float64 on the
    same numbers: kernel sums, lag mass, every row's effective range, each function's median."""
    from ssmscope.models.mamba import attention_lag_sums

    g = torch.Generator().manual_seed(5)
    D, N = 6, 4
    A = -torch.exp(torch.randn(D, N, generator=g)) * torch.tensor([1.0, 1, 1, 1, 1, 20])[:, None]  # one fast-decaying channel
    functions = []
    for L in (37, 100, 9, 64):
        delta = torch.exp(torch.empty(1, D, L).uniform_(-7, -1, generator=g))  # Δ from 1e-3 to 0.37
        functions.append((delta, torch.randn(1, N, L, generator=g), torch.randn(1, N, L, generator=g)))
    assert attention_lag_sums(*functions[0][:1], A, *functions[0][1:], fraction=0.9) is not None  # the compiled path applies
    compiled, maps = LayerReading(D, 128), LayerReading(D, 128)
    for delta, B, C in functions:
        compiled.add(delta, A, B, C)
        maps.add(delta.double(), A.double(), B.double(), C.double())
    np.testing.assert_allclose(compiled.kernel_sum, maps.kernel_sum, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(compiled.lag_mass, maps.lag_mass, rtol=1e-10, atol=1e-14)
    assert np.array_equal(compiled.range_histogram, maps.range_histogram) and compiled.range_histogram.sum() == D * (37 + 100 + 9 + 64)
    assert compiled.function_medians == maps.function_medians
    (_, ours), (_, theirs) = compiled.result(), maps.result()
    np.testing.assert_allclose(ours.pop("lag_profile"), theirs.pop("lag_profile"), rtol=1e-10)
    assert ours == theirs  # effective range quartiles, spread between functions, function count


def test_the_selective_null_reads_the_attention_range_of_fresh_layers_on_the_same_inputs():
    """Draw i of the null is a fresh model under seed NULL_SEED_BASE + i; its layer read on the trained
    model's inputs, here again by hand through the float64 attention maps, gives draw i's attention range."""
    from ssmscope.analysis.null import ATTENTION_RANGE, MIN_NULL_DRAWS, NULL_SEED_BASE, selective_null_readings
    from ssmscope.analysis.selective import selective_layer_inputs

    torch.manual_seed(0)
    model = build_model("mamba-2layers", 30, SMALL)
    functions = [torch.randint(2, 30, (n,)) for n in (23, 40)]
    inputs = selective_layer_inputs(model, functions, 48)
    null = selective_null_readings("mamba-2layers", SMALL, inputs, 48, n=MIN_NULL_DRAWS)
    for name, us in inputs.items():
        assert len(null[name][ATTENTION_RANGE]) == MIN_NULL_DRAWS
        for draw in (0, 7):
            torch.manual_seed(NULL_SEED_BASE + draw)
            fresh = dict(build_model("mamba-2layers", 2, SMALL).named_modules())[name].double()
            _, readings = read_layer_on_inputs(fresh, [u.double() for u in us], 48)
            assert null[name][ATTENTION_RANGE][draw] == readings["effective_range"]["median"]


def test_lag_major_and_row_ranges_by_hand():
    alpha = torch.tensor([[[1.0, 0, 0], [2.0, 3.0, 0], [4.0, 5.0, 6.0]]])  # [t, s]
    assert torch.equal(lag_major(alpha), torch.tensor([[[1.0, 0, 0], [3.0, 2.0, 0], [6.0, 5.0, 4.0]]]))  # [t, l]
    # row 2 by lag: 6, 5, 4 (total 15): 90% = 13.5 needs all three lags; row 1: 3, 2 → both
    assert row_ranges(lag_major(alpha)).tolist() == [[1, 2, 3]]
    assert row_ranges(torch.zeros(1, 2, 2)).tolist() == [[0, 0]]  # no mass: no range


def test_truncating_every_mamba_layer_to_zero_equals_the_model_without_B():
    """Memory 0 everywhere leaves D·u in each block; a second path: W_B = 0 makes every state 0."""
    torch.manual_seed(4)
    model = build_model("mamba-2layers", 30, SMALL).eval()
    tokens, lengths = torch.randint(1, 30, (3, 21)), torch.tensor([21, 14, 5])
    without_B = copy.deepcopy(model)
    with torch.no_grad():
        for _, block in without_B.named_modules():
            if isinstance(block, Mamba):
                block.x_proj.weight[block.dt_rank : block.dt_rank + block.d_state] = 0
        with truncated(model, 0):
            forgetful = model(tokens, lengths)
        assert not torch.equal(forgetful, model(tokens, lengths))
        torch.testing.assert_close(forgetful, without_B(tokens, lengths), rtol=0, atol=0)
        whole = model(tokens, lengths)
        with truncated(model, 21):  # memory as long as the longest function: the model itself
            assert torch.equal(model(tokens, lengths), whole)
        with truncated(model, 4):  # a shorter memory changes the output
            assert not torch.equal(model(tokens, lengths), whole)
    assert all(m.memory_window is None for m in model.modules() if isinstance(m, Mamba))  # restored


def test_mamba_probes_have_every_layer_and_no_bands():
    torch.manual_seed(5)
    model = build_model("mamba-2layers", 30, SMALL).eval()
    tokens, lengths = torch.randint(1, 30, (50, 20)), torch.randint(4, 21, (50,))
    with torch.no_grad():
        logits = model(tokens, lengths)
    labels = (logits > logits.median()).long().numpy()

    def score(m):
        with torch.no_grad():
            return binary_metrics(labels, torch.sigmoid(m(tokens, lengths)).double().numpy())

    results = run_probes(model, score, length=20)
    assert list(results["layers"]) == ["branches.mamba.blocks.0.mamba", "branches.mamba.blocks.1.mamba"]
    assert results["bands"] == {} and results["truncation"][-1]["roc_auc"] == results["unmodified"]["roc_auc"]


def test_a_mamba_run_is_trained_analysed_probed_and_reported(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"code": f"int f{i}(int a) {{ int b = a * {i % 7}; return b > {i % 3}; }}", "label": i % 2}) + "\n"
                            for i in range(80)))
    base = RunConfig("mamba", str(data), DataConfig(max_len=32, min_count=1), SMALL, TrainConfig(epochs=1, track_kernels=True))
    rows, report = reproduce(base, tmp_path / "study", archs=("mamba-2layers",), seeds=(0,), log=lambda s: None)
    run = tmp_path / "study" / "runs" / "mamba-2layers-seed0"
    summary = json.loads((run / "analysis" / "summary.json").read_text())
    names = ["branches.mamba.blocks.0.mamba", "branches.mamba.blocks.1.mamba"]
    assert [(l["name"], l["depth"], l["kind"]) for l in summary["layers"]] == [(names[0], 0, "selective"), (names[1], 1, "selective")]
    assert all(l["null"] and l["attention"]["functions"] == summary["functions"]["n"] for l in summary["layers"])
    assert all(0 <= l["null"]["attention_range"]["percentile"] <= 100 for l in summary["layers"])  # placed among fresh layers
    assert summary["functions"]["n"] == len(json.loads((run / "splits.json").read_text())["test"])
    assert sorted(np.load(run / "analysis" / "kernels.npz").files) == sorted(names)
    assert (run / "kernels.jsonl").is_file() and not (run / "analysis" / "training_spectra.png").exists()  # no kernel to track
    assert "epochs" not in summary
    probes = json.loads((run / "probes" / "test-split.json").read_text())
    assert probes["has_ssm_layers"] and list(probes["layers"]) == names
    md = (report.parent / "report.md").read_text()
    assert "| mamba-2layers | 1 |" in md and "attention range" in md.split("## mamba-2layers (seed 0)")[1]


def test_the_compiled_exponential_is_float32_accurate():
    """exp32 (scan_kernels) against float64 exp over the scan's range of Δ·A and a little beyond."""
    from ssmscope.models.scan_kernels import exp32

    x = np.concatenate([-np.geomspace(1e-8, 87, 4000), [0.0], np.linspace(0.001, 20, 500)]).astype(np.float32)
    ours = np.array([exp32(v) for v in x], dtype=np.float64)
    exact = np.exp(x.astype(np.float64))
    assert np.max(np.abs(ours - exact) / exact) < 5e-7
    assert exp32(np.float32(-200.0)) == pytest.approx(math.exp(-87), rel=1e-6)  # clamped: the smallest normal decays


def test_the_embedded_study_includes_mamba_and_a_dataset_study_asks_for_it_by_name(monkeypatch, tmp_path):
    """`make demo` (reproduce without --data) trains mamba beside the study's eight models; with --data the
    default stays the eight (a mamba ReVeal run costs several s4d runs)."""
    from ssmscope import cli, pipeline

    studied = []
    monkeypatch.setattr(pipeline, "reproduce", lambda base, out, archs, seeds: (studied.append(tuple(archs)), ([], tmp_path / "report.html"))[1])
    monkeypatch.setattr(pipeline, "format_table", lambda rows: "")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"code": "int f ( ) { return 0 ; }", "label": 0}) + "\n")
    assert cli.main(["reproduce", "--out", str(tmp_path / "demo")]) == 0
    assert cli.main(["reproduce", "--out", str(tmp_path / "study"), "--data", str(data)]) == 0
    embedded, dataset = studied
    assert dataset == pipeline.STUDY_ARCHS and "mamba" not in dataset
    assert embedded == (*dataset, "mamba")
