"""analyze, report, reproduce and --track-kernels on small runs."""

import dataclasses
import json
from pathlib import Path
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from ssmscope.analysis import analyze_bank
from ssmscope.analysis.kernels import extract_kernels, kernel_modules
from ssmscope.analysis.run import analyze_run
from run_files import same_weights
from ssmscope.cli import main
from ssmscope.compare import format_p
from ssmscope.data import lex
from ssmscope.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ssmscope.errors import SsmscopeError
from ssmscope.pipeline import reproduce
from ssmscope.report import render
from ssmscope.report.render import RunRecord, runs_named_in, write_report
from ssmscope.train import load_run, train_run

SNIPPETS = [
    ("int f(int n) { char buf[16]; for (int i = 0; i <= n; i++) buf[i] = 0; return buf[0]; }", 1),
    ("int g(int n) { if (n < 0) return -1; return n * 2; }", 0),
    ("void h(char *s) { char d[8]; strcpy(d, s); }", 1),
    ("size_t k(const char *s) { return s ? strlen(s) : 0; }", 0),
    ("int m(int *p) { free(p); return *p; }", 1),
    ("int q(int a, int b) { return a > b ? a : b; }", 0),
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A small synthetic dataset: 120 functions from the snippets with renamed variables."""
    path = tmp_path_factory.mktemp("data") / "tiny.jsonl"
    rows = []
    for i in range(120):
        code, label = SNIPPETS[i % len(SNIPPETS)]
        rows.append({"code": code.replace("n", f"n{i}").replace("(", f"( /*{i}*/ ", 1) + f" // {i}", "label": label})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_config(arch, data, **train):
    return RunConfig(arch, str(data), DataConfig(max_len=64, min_count=1), ModelConfig(embed_dim=16, num_filters=8, d_state=8), TrainConfig(epochs=2, **train))


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for arch in ("cnn", "s4d", "conv_s4d"):
        train_run(tiny_config(arch, tiny_data, track_kernels=arch == "s4d"), root / arch, log=lambda s: None)
        runs[arch] = root / arch
    return runs


def test_analyze_writes_kernels_summary_and_figures(trained):
    summary = analyze_run(trained["conv_s4d"])
    out = trained["conv_s4d"] / "analysis"
    names = ["branches.conv3.s4d", "branches.conv5.s4d", "branches.conv7.s4d"]
    with np.load(out / "kernels.npz") as npz:
        assert sorted(npz.files) == names and all(npz[n].shape == (8, 64) for n in names)
        _, _, model = load_run(trained["conv_s4d"])
        with torch.no_grad():
            np.testing.assert_allclose(npz[names[1]], model.branches["conv5"].s4d.kernel(64).double().numpy(), rtol=1e-6, atol=1e-9)
        reference = analyze_bank(npz[names[0]])
    on_disk = json.loads((out / "summary.json").read_text())
    assert [l["name"] for l in on_disk["layers"]] == names and on_disk == json.loads(json.dumps(summary))
    channel = on_disk["layers"][0]["channels"][3]
    assert channel["dominant_frequency"] == pytest.approx(reference[3].dominant_frequency)
    assert channel["spectral_entropy_bits"] == pytest.approx(reference[3].spectral_entropy_bits)
    assert len(on_disk["model"]["spectrum"]["power"]) == 33 and sum(on_disk["model"]["spectrum"]["power"]) == pytest.approx(1)
    for kind in ("time", "spectrum", "heatmap", "histograms"):
        for ext in ("png", "svg"):
            assert (out / f"branches_conv3_s4d_{kind}.{ext}").stat().st_size > 1000


def test_analyze_length_and_model_without_ssm(trained, capsys, tmp_path):
    assert main(["analyze", "--run", str(trained["s4d"]), "--length", "100", "--out", str(tmp_path / "l100")]) == 0
    with np.load(tmp_path / "l100" / "kernels.npz") as npz:
        assert npz["branches.s4d"].shape == (16, 100)
    assert json.loads((tmp_path / "l100" / "summary.json").read_text())["length"] == 100
    assert main(["analyze", "--run", str(trained["cnn"])]) == 0
    assert "no SSM layer" in capsys.readouterr().out
    summary = json.loads((trained["cnn"] / "analysis" / "summary.json").read_text())
    assert summary["layers"] == [] and summary["model"] is None


def test_an_all_zero_kernel_is_a_clear_error():
    from ssmscope.analysis.kernels import analyze_kernels

    bank = np.random.default_rng(0).standard_normal((3, 16))
    bank[1] = 0
    with pytest.raises(SsmscopeError, match=r"layer x: channel\(s\) \[1\] have an all-zero kernel"):
        analyze_kernels({"x": bank})


def test_kernel_contract_is_any_module_with_kernel():
    class Toy(torch.nn.Module):
        def kernel(self, L):
            return torch.ones(2, L)

    holder = torch.nn.Sequential(torch.nn.Linear(2, 2), Toy())
    assert [n for n, _ in kernel_modules(holder)] == ["1"]
    assert extract_kernels(holder, 5)["1"].shape == (2, 5)


def test_analyze_refuses_an_unfinished_run(trained, tmp_path):
    (tmp_path / "model.pt").write_bytes((trained["s4d"] / "model.pt").read_bytes())
    with pytest.raises(SsmscopeError, match="has not finished"):
        analyze_run(tmp_path)


def test_track_kernels_records_every_epoch_and_analyze_plots_them(trained):
    lines = [json.loads(l) for l in (trained["s4d"] / "kernels.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [0, 1, 2] and {l["layers"][0]["name"] for l in lines} == {"branches.s4d"}
    _, _, model = load_run(trained["s4d"])
    best = json.loads((trained["s4d"] / "metrics.json").read_text())["best_epoch"]
    from ssmscope.analysis import summarize_layer

    with torch.no_grad():
        expected, _ = summarize_layer(model.branches["s4d"].kernel(64).double().numpy())
    recorded = lines[best]["layers"][0]["mean_spectrum"]
    assert recorded["dominant_frequency"] == pytest.approx(expected["mean_spectrum"]["dominant_frequency"])
    assert recorded["spectral_entropy_bits"] == pytest.approx(expected["mean_spectrum"]["spectral_entropy_bits"], rel=1e-5)
    assert analyze_run(trained["s4d"])["epochs"] == lines
    assert (trained["s4d"] / "analysis" / "training_spectra.png").is_file()
    assert not (trained["conv_s4d"] / "kernels.jsonl").exists()  # only with --track-kernels


class _TextCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_report_escapes_data_derived_text(trained, tmp_path):
    evil = tmp_path / "<script>alert(1)"  # a run directory whose name is markup
    evil.mkdir()
    for name in ("config.json", "metrics.json", "model.pt"):
        (evil / name).write_bytes((trained["s4d"] / name).read_bytes())
    config = json.loads((evil / "config.json").read_text())
    config["arch"] = "s4d<img src=x onerror=alert(2)>"
    (evil / "config.json").write_text(json.dumps(config))
    analyze_run(evil)
    html_path = write_report([evil, trained["cnn"]], tmp_path / "report")
    page = html_path.read_text()
    assert "<script>" not in page and "<img src=x" not in page
    parser = _TextCollector()
    parser.feed(page)
    assert "script" not in parser.tags and "<script>alert(1)" in "".join(parser.text)
    assert page.count("data:image/png;base64,") >= 5 and "src=\"figures" not in page  # self-contained
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| cnn | 1 |" in md and "no SSM kernel" in md


def test_tracking_kernels_does_not_change_training(tiny_data, tmp_path):
    plain = train_run(tiny_config("smr_s4d", tiny_data), tmp_path / "plain", log=lambda s: None)
    tracked = train_run(tiny_config("smr_s4d", tiny_data, track_kernels=True), tmp_path / "tracked", log=lambda s: None)
    assert plain == tracked
    assert same_weights(tmp_path / "plain", tmp_path / "tracked")


def test_report_table_is_mean_and_std_over_seeds(tiny_data, tmp_path, capsys):
    base = tiny_config("s4d", tiny_data)
    rows, report = reproduce(base, tmp_path, archs=["s4d", "smr_s4d-none"], seeds=[0, 1], log=lambda s: None)
    f1 = [100 * json.loads((tmp_path / "runs" / f"s4d-seed{s}" / "metrics.json").read_text())["f1"] for s in (0, 1)]
    assert rows[0]["architecture"] == "s4d" and rows[0]["runs"] == "2"
    assert rows[0]["F1"] == f"{np.mean(f1):.2f} ± {np.std(f1, ddof=1):.2f}"
    assert report.is_file() and rows[1]["architecture"] == "smr_s4d-none"
    dominant = []
    for seed in (0, 1):  # channel median of the dominant frequency, recomputed from the saved kernels
        with np.load(tmp_path / "runs" / f"s4d-seed{seed}" / "analysis" / "kernels.npz") as npz:
            dominant.append(np.median([m.dominant_frequency for m in analyze_bank(npz["branches.s4d"])]))
    assert rows[0]["dominant frequency"].startswith(f"{np.mean(dominant):.4f} ± {np.std(dominant, ddof=1):.4f}")
    vd = [json.loads((tmp_path / "runs" / f"s4d-seed{s}" / "metrics.json").read_text())["vd_score"] for s in (0, 1)]
    assert rows[0]["VD-S"] == f"{np.mean(vd):.3f} ± {np.std(vd, ddof=1):.3f}"
    # the report's pairwise row is `ssmscope compare --study` (a second path: the CLI on the same files)
    assert main(["compare", "--study", str(tmp_path), "s4d", "smr_s4d-none", "--json"]) == 0
    f1 = json.loads(capsys.readouterr().out)["metrics"]["f1"]
    md = report.with_name("report.md").read_text()
    assert f"| s4d | smr_s4d-none | 2 | {f1['difference']:+.3f} [{f1['ci_low']:+.3f}, {f1['ci_high']:+.3f}] p {format_p(f1['p_value'])}" in md
    stamp = (tmp_path / "runs" / "s4d-seed0" / "model.pt").stat().st_mtime_ns
    assert runs_named_in(report.with_name("report.md")) == [str(tmp_path / "runs" / f"{arch}-seed{seed}") for arch in ("s4d", "smr_s4d-none") for seed in (0, 1)]
    assert runs_named_in(tmp_path / "no-report.md") == []
    messages, written = [], report.with_name("report.md").stat().st_mtime_ns
    assert reproduce(base, tmp_path, archs=["s4d"], seeds=[0], log=messages.append, report=False)[1] is None
    assert messages == ["s4d seed 0: finished before, skipped"]
    assert report.with_name("report.md").stat().st_mtime_ns == written  # report=False leaves OUT/report alone
    assert (tmp_path / "runs" / "s4d-seed0" / "model.pt").stat().st_mtime_ns == stamp
    with pytest.raises(SsmscopeError, match="other settings"):
        reproduce(dataclasses.replace(base, train=TrainConfig(epochs=3)), tmp_path, archs=["s4d"], seeds=[0], log=lambda s: None)


def test_probe_command_and_report_column(trained, tiny_data, tmp_path, capsys):
    assert main(["probe", "--run", str(trained["s4d"]), "--data", str(tiny_data)]) == 0
    assert "used range" in capsys.readouterr().out
    results = json.loads((trained["s4d"] / "probes" / "tiny.json").read_text())
    assert results["functions"] == 120 and results["has_ssm_layers"]
    full = results["truncation"][-1]
    longest = max(len(lex(json.loads(line)["code"])) for line in tiny_data.read_text().splitlines())
    assert [t["taps"] for t in results["truncation"]] == [0, 1, 2, 4, 8, 16, 32, longest]
    # m = 0 through a second path: the same model with C = 0 has an all-zero kernel
    from ssmscope.data import load_dataset
    from ssmscope.train.loop import encode_for_run, predict
    from ssmscope.train.metrics import binary_metrics

    config, vocab, model = load_run(trained["s4d"])
    with torch.no_grad():
        model.branches["s4d"].C.zero_()
    split = encode_for_run(config, vocab, load_dataset(tiny_data))
    silenced = binary_metrics(split.labels, predict(model, split, 64, torch.device("cpu")))
    assert results["truncation"][0]["f1"] == silenced["f1"] and results["truncation"][0]["roc_auc"] == pytest.approx(silenced["roc_auc"])
    assert (trained["s4d"] / "probes" / "tiny.png").is_file()
    assert main(["probe", "--run", str(trained["cnn"]), "--data", str(tiny_data)]) == 0
    assert "no SSM layer" in capsys.readouterr().out
    analyze_run(trained["s4d"])
    write_report([trained["s4d"], trained["cnn"]], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "probed range" in md and f"| {results['used_range_tokens']:.1f} |" in md and "probes-tiny.png" in md


def _record(arch, outside: dict[str, bool], auc_interval=None):
    """A RunRecord whose analysis places each model-level reading inside or outside the null."""
    placed = {reading: {"value": 0.1, "null_median": 0.1, "null_central": [0, 1], "percentile": 1.0 if out else 50.0, "outside": out}
              for reading, out in outside.items()}
    return RunRecord(Path(arch), arch, 0, {}, {"model": {"null": placed}, "null": {"n": 39}, "layers": []})


def test_null_marks_and_the_learned_verdict_follow_their_rules():
    inside_both = [_record("a", {"dominant_frequency": False}), _record("a", {"dominant_frequency": False})]
    inside_one = [_record("a", {"dominant_frequency": False}), _record("a", {"dominant_frequency": True})]
    outside_both = [_record("a", {"dominant_frequency": True}), _record("a", {"dominant_frequency": True})]
    assert render._null_mark(inside_both, "dominant_frequency") == " ≈ init"
    assert render._null_mark(inside_one, "dominant_frequency") == " ≈ init 1/2"
    assert render._null_mark(outside_both, "dominant_frequency") == ""
    assert render._learned((0.55, 0.70)) == "yes"
    assert render._learned((0.45, 0.60)) == "no: ROC-AUC interval includes 0.5"
    assert render._learned((0.30, 0.45)).startswith("no: worse than chance")
    assert render._learned(None) == "–"
