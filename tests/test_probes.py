"""Probes on a model whose kernel is built by hand, so every intervention has a known effect."""


import numpy as np
import pytest
import torch

from ssmscope.analysis.probes import band_pass, intervene, run_probes, truncate, truncation_grid, used_range, used_range_auc
from ssmscope.config import ModelConfig
from ssmscope.models import build_model
from ssmscope.train.metrics import binary_metrics

LAG = 5
A, X = 2, 4  # token ids: the marker and filler


def delay_model():
    """One channel: embedding 1 for token A, kernel = impulse at lag 5, D = 0; the pooled feature is 1
    iff an A sits at least 5 tokens before the end; the head maps that to a confident logit."""
    model = build_model("s4d", 5, ModelConfig(embed_dim=1, d_state=2))
    with torch.no_grad():
        model.embedding.weight.zero_()
        model.embedding.weight[A, 0] = 1.0
        model.head.weight.fill_(10.0)
        model.head.bias.fill_(-5.0)
        layer = model.branches["s4d"]
        layer.D.zero_()

    def impulse(L):
        K = torch.zeros(1, L)
        if L > LAG:
            K[0, LAG] = 1.0
        return K

    layer.kernel = impulse
    return model.eval()


def delay_data(n=200, L=40, seed=0):
    rng = np.random.default_rng(seed)
    positions = rng.integers(0, L, size=n)
    tokens = torch.full((n, L), X)
    tokens[torch.arange(n), torch.from_numpy(positions)] = A
    labels = (positions <= L - 1 - LAG).astype(int)
    return tokens, labels


def score_fn(tokens, labels):
    def score(model):
        with torch.no_grad():
            p = torch.sigmoid(model(tokens, torch.full((len(tokens),), tokens.shape[1])).double()).numpy()
        return binary_metrics(labels, p)

    return score


def test_truncation_has_the_known_effect():
    tokens, labels = delay_data()
    results = run_probes(delay_model(), score_fn(tokens, labels), length=40)
    assert results["unmodified"]["f1"] == 1.0
    by_taps = {t["taps"]: t["f1"] for t in results["truncation"]}
    assert [t["taps"] for t in results["truncation"]] == [0, 1, 2, 4, 8, 16, 32, 40]
    assert all(by_taps[m] == 0.0 for m in (0, 1, 2, 4))  # lag 5 cut away: nothing reaches the pool
    assert all(by_taps[m] == 1.0 for m in (8, 16, 32, 40))
    assert results["used_range_tokens"] == 8  # the first grid point beyond the true lag
    assert results["used_range_auc_tokens"] == 8  # AUC 0.5 without the lag-5 tap, 1 with it


def test_interventions_are_undone():
    model = delay_model()
    tokens, labels = delay_data(50)
    before = score_fn(tokens, labels)(model)
    with intervene(model, truncate(0)):
        assert score_fn(tokens, labels)(model)["f1"] == 0.0
    assert score_fn(tokens, labels)(model) == before
    plain = build_model("s4d", 5, ModelConfig(embed_dim=2, d_state=2))
    reference = plain.branches["s4d"].kernel(16).detach().clone()
    with intervene(plain, truncate(3)):
        assert torch.equal(plain.branches["s4d"].kernel(16)[:, 3:], torch.zeros(2, 13))
    assert "kernel" not in plain.branches["s4d"].__dict__
    assert torch.equal(plain.branches["s4d"].kernel(16).detach(), reference)


@pytest.mark.parametrize("L", [32, 33])
def test_bands_partition_the_kernel_and_match_numpy(L):
    K = torch.randn(3, L, dtype=torch.float64)
    parts = [band_pass(a, b)(K) for a, b in ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5))]
    torch.testing.assert_close(sum(parts), K)  # the bands cover every DFT bin exactly once
    f = np.fft.rfftfreq(L)
    expected = np.fft.irfft(np.fft.rfft(K.numpy()) * ((f >= 0.1) & (f < 0.25)), n=L)
    np.testing.assert_allclose(parts[1].numpy(), expected, atol=1e-12)


def test_grid_and_used_range():
    assert truncation_grid(1024) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert truncation_grid(5) == [0, 1, 2, 4, 5]
    rows = [{"taps": 0, "f1": 0.1}, {"taps": 4, "f1": 0.5}, {"taps": 8, "f1": 0.45}, {"taps": 16, "f1": 0.5}]
    assert used_range(rows, 0.5) == 4 and used_range(rows, 0.0) is None
    aucs = [{"taps": 0, "roc_auc": 0.70}, {"taps": 4, "roc_auc": 0.72}, {"taps": 8, "roc_auc": 0.737}, {"taps": 16, "roc_auc": 0.75}]
    assert used_range_auc(aucs, 0.74) == 8  # 0.037 >= 0.9 * 0.04
    assert used_range_auc(aucs, 0.69) == 0 and used_range_auc(aucs, None) is None
