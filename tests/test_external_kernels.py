"""``ssmscope analyze --kernels FILE.npz``: kernel banks and attention maps from another project."""

import json

import numpy as np
import pytest

from ssmscope.analysis.external import analyze_kernel_file
from ssmscope.cli import main


def decaying_cosines(frequencies, length=256, decay=40.0):
    lags = np.arange(length)
    return np.stack([np.exp(-lags / decay) * np.cos(2 * np.pi * f * lags) for f in frequencies])  # (H, L)


def toeplitz_maps(kernel: np.ndarray, n_functions: int) -> np.ndarray:
    """(B, H, L, L) with α[t, s] = K[t − s]: what a time-invariant layer's hidden attention is."""
    H, L = kernel.shape
    t, s = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    maps = np.where(t >= s, kernel[:, np.clip(t - s, 0, None)], 0.0)  # (H, L, L)
    return np.broadcast_to(maps, (n_functions, H, L, L)).copy()


def test_a_bank_and_attention_maps_are_read_like_the_models_layers(tmp_path):
    bank = decaying_cosines([0.05, 0.125, 0.25])  # dominant frequencies on the FFT grid of L = 256 (closed form)
    np.savez(tmp_path / "k.npz", lti=bank, selective=toeplitz_maps(bank[:, :64], 2))
    summary = analyze_kernel_file(tmp_path / "k.npz", tmp_path / "out")
    layers = {l["name"]: l for l in summary["layers"]}
    assert [c["dominant_frequency"] for c in layers["lti"]["channels"]] == pytest.approx([0.05, 0.125, 0.25], abs=1 / 256)
    # the maps of a time-invariant kernel average back to that kernel, so the two readings agree
    effective = np.load(tmp_path / "out" / "kernels.npz")["selective"]
    np.testing.assert_allclose(effective, bank[:, :64], rtol=1e-12, atol=1e-15)
    assert layers["selective"]["kind"] == "selective" and layers["selective"]["attention"]["functions"] == 2
    assert summary["model"] is None  # layers of different lengths are not pooled
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["source"] == str(tmp_path / "k.npz") and saved["null"] is None
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| lti | 0 |" in report and "| selective | 0 |" in report and (tmp_path / "out" / "report.html").is_file()
    assert (tmp_path / "out" / "selective_lag_profile.png").is_file()


@pytest.mark.parametrize("arrays,message", [
    ({"k": np.ones(5)}, "shape (5,); expected (H, L) kernels or (B, H, L, L)"),
    ({"k": np.array([[1.0, np.nan, 2.0]])}, "1 NaN or infinite values (first at index (0, 1))"),
    ({"k": np.zeros((3, 0))}, "empty or shorter than 2 taps"),
    ({}, "holds no arrays"),
    ({"k": np.ones((1, 2, 4, 4))}, "nonzero entries above the diagonal"),
    ({"k": np.ones((1, 2, 4, 3))}, "not square"),
    ({"k": np.ones((2, 4), dtype=complex)}, "take the real part"),
])
def test_bad_files_are_one_line_and_exit_2(tmp_path, capsys, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("earlier work")
    assert main(["analyze", "--kernels", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "bad.npz" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]  # nothing lost, nothing half-written


def test_not_an_npz_and_missing_out(tmp_path, capsys):
    (tmp_path / "x.npz").write_text("not a zip")
    assert main(["analyze", "--kernels", str(tmp_path / "x.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "not an .npz file" in capsys.readouterr().err
    np.savez(tmp_path / "ok.npz", k=np.ones((2, 8)))
    assert main(["analyze", "--kernels", str(tmp_path / "ok.npz")]) == 2
    assert "give --out DIR" in capsys.readouterr().err
