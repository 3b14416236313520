"""The untrained null (ssmscope.analysis.null): calibration, the percentile, the cache, analyze."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

import ssmscope.analysis.null as null_module
from ssmscope.analysis import analyze_bank
from ssmscope.analysis.kernels import kernel_modules
from ssmscope.analysis.run import analyze_run
from ssmscope.analysis.null import (
    CHANNEL_MEDIANS,
    DEFAULT_NULL_DRAWS,
    MODEL_KEY,
    READINGS,
    central_interval,
    null_cache_key,
    null_readings,
    outside_central,
    percentile_in_null,
)
from ssmscope.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ssmscope.errors import SsmscopeError
from ssmscope.models import S4D, build_model
from ssmscope.train import train_run

SMALL = ModelConfig(embed_dim=9, num_filters=5, d_state=8)  # odd H: each channel median is one channel's value


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SSMSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def readings_of_fresh_s4d(seed: int, cfg: ModelConfig, length: int) -> dict[str, float]:
    """The READINGS of one S4D layer built directly (not through build_model or the null code):
    medians over channels of analyze_bank's metrics and the share of band-pass channels."""
    torch.manual_seed(seed)
    layer = S4D(cfg.embed_dim, cfg.d_state, cfg.s4d_init, cfg.discretization, cfg.dt_min, cfg.dt_max)
    with torch.no_grad():
        channels = analyze_bank(layer.kernel(length).double().numpy())  # H metrics
    values = {name: float(np.median([getattr(c, name) for c in channels])) for name in CHANNEL_MEDIANS}
    values["band_pass_share"] = float(np.mean([c.filter_type == "band-pass" for c in channels]))
    return values


# (a) A reading drawn from the null itself


def test_a_reading_drawn_from_the_null_reads_as_a_null_draw():
    """Fresh untrained layers (seeds 0..199, outside the null's seeds) placed in a 199-draw null:
    n + 1 = 200 is a multiple of 40, so a continuous reading lands outside the central 95% with
    probability exactly 5% (ties in the grid-valued readings move it a little); the mean
    percentile of a null draw is exactly 50 whatever the ties. Ties at the null's edges make the
    mid-rank rule a little conservative (about 4% here), and the null being estimated from 199
    draws spreads the pooled share by about 2 points and each reading's mean percentile by about 3
    (standard deviations, seen over 8 other choices of both seed sets), hence the tolerances
    (about 3.5 and 4 of them). Layers whose steps Δ are ten times longer
    (kernels that decay faster, as training towards short memory would leave them) must land
    outside far more often: the check can fail."""
    length, n = 128, 199
    null = null_readings("s4d", SMALL, length, n)["branches.s4d"]
    fresh = [readings_of_fresh_s4d(seed, SMALL, length) for seed in range(200)]
    outside = [outside_central(f[r], null[r]) for f in fresh for r in READINGS]
    assert 0.01 <= np.mean(outside) <= 0.10
    for r in READINGS:
        assert abs(np.mean([percentile_in_null(f[r], null[r]) for f in fresh]) - 50) < 12, r
    faster = dataclasses.replace(SMALL, dt_min=10 * SMALL.dt_min, dt_max=10 * SMALL.dt_max)
    other = [readings_of_fresh_s4d(seed, faster, length) for seed in range(20)]
    assert np.mean([outside_central(f[r], null[r]) for f in other for r in READINGS]) > 0.4


# (b) The percentile and the 95% rule


def test_percentile_by_hand_with_ties():
    null = [1, 2, 2, 3, 5]
    # value: (#below + ½ #equal) / 5
    expected = {0: 0.0, 1: 10.0, 2: 40.0, 2.5: 60.0, 3: 70.0, 5: 90.0, 6: 100.0}
    for value, percent in expected.items():
        assert percentile_in_null(value, null) == pytest.approx(percent)


def test_percentile_matches_scipy_mean_kind():
    rng = np.random.default_rng(0)
    for _ in range(50):
        null = rng.integers(0, 10, size=rng.integers(1, 60))  # small integers: many ties
        for value in (-1, 0, 3, 3.5, 9, 10):
            assert percentile_in_null(value, null) == pytest.approx(stats.percentileofscore(null, value, kind="mean"))


@pytest.mark.parametrize("n", [20, 39, 40, 41, 79, 80, 199])
def test_share_of_rank_positions_outside_is_the_documented_level(n):
    """One value in each of the n + 1 gaps of a tie-free null is every rank a continuous null draw
    can take, equally likely; the share outside is 2⌈n/40⌉/(n + 1): 5% at n = 39, 79, 199."""
    null = np.arange(1, n + 1, dtype=float)
    gaps = np.arange(n + 1) + 0.5
    share = np.mean([outside_central(v, null) for v in gaps])
    assert share == pytest.approx(2 * math.ceil(n / 40) / (n + 1))
    if (n + 1) % 40 == 0:
        assert share == pytest.approx(0.05)


def test_exact_boundary_percentiles_are_inside():
    null = np.arange(1, 41, dtype=float)  # n = 40: steps of 2.5 points
    assert percentile_in_null(1.5, null) == 2.5 and not outside_central(1.5, null)
    assert percentile_in_null(39.5, null) == 97.5 and not outside_central(39.5, null)
    assert outside_central(1.0, null) and outside_central(40.0, null)  # 1.25 and 98.75


@pytest.mark.parametrize("n", [20, 39, 40, 79, 200])
def test_central_interval_is_where_the_rule_switches(n):
    null = np.random.default_rng(n).standard_normal(n)
    low, high = central_interval(null)
    x = np.sort(null)
    for v in np.concatenate([x[:-1] + np.diff(x) / 2, [x[0] - 1, x[-1] + 1]]):  # one value per gap
        assert outside_central(v, null) == (v < low or v > high)
    if n == 39:
        assert (low, high) == (x[0], x[-1])


# (c) The cache


def test_second_call_reads_the_cache(cache_dir, monkeypatch):
    first = null_readings("conv_s4d", SMALL, 32, 20)
    names = [name for name, _ in kernel_modules(build_model("conv_s4d", 2, SMALL))] + [MODEL_KEY]
    assert list(first) == names and len(names) == 4  # every kernel layer, in model order, then the model
    assert all(first[name][r].shape == (20,) for name in names for r in READINGS)
    key = null_cache_key("conv_s4d", SMALL, 32, 20)
    assert [p.name for p in cache_dir.iterdir()] == [f"null-{key}.json"]

    def no_building(*args, **kwargs):
        raise AssertionError("the cached null was not used")

    monkeypatch.setattr(null_module, "build_model", no_building)
    again = null_readings("conv_s4d", SMALL, 32, 20)
    assert all(np.array_equal(again[name][r], first[name][r]) for name in names for r in READINGS)


def test_every_setting_of_the_null_has_its_own_key():
    base = null_cache_key("s4d", SMALL, 64, 39)
    assert null_cache_key("s4d", ModelConfig(embed_dim=9, num_filters=5, d_state=8), 64, 39) == base
    others = [
        null_cache_key("smr_s4d", SMALL, 64, 39),
        null_cache_key("s4d", dataclasses.replace(SMALL, d_state=16), 64, 39),
        null_cache_key("s4d", dataclasses.replace(SMALL, dt_max=0.2), 64, 39),
        null_cache_key("s4d", SMALL, 65, 39),
        null_cache_key("s4d", SMALL, 64, 40),
    ]
    assert len({base, *others}) == 1 + len(others)


@pytest.mark.parametrize("damage", ["{not json", '{"layers": {"branches.s4d": {}}}', "truncate"])
def test_a_damaged_cache_file_is_recomputed(cache_dir, monkeypatch, damage):
    first = null_readings("s4d", SMALL, 32, 20)
    path = cache_dir / f"null-{null_cache_key('s4d', SMALL, 32, 20)}.json"
    if damage == "truncate":  # valid JSON, one draw short
        data = json.loads(path.read_text())
        data["layers"]["branches.s4d"]["spectral_entropy_bits"].pop()
        damage = json.dumps(data)
    path.write_text(damage)

    def failing_build(*args, **kwargs):
        raise RuntimeError("recomputing")

    with monkeypatch.context() as m:  # the damaged file is not trusted: the null is drawn again
        m.setattr(null_module, "build_model", failing_build)
        with pytest.raises(RuntimeError, match="recomputing"):
            null_readings("s4d", SMALL, 32, 20)
    again = null_readings("s4d", SMALL, 32, 20)
    assert all(np.array_equal(again["branches.s4d"][r], first["branches.s4d"][r]) for r in READINGS)
    assert json.loads(path.read_text())["layers"]["branches.s4d"]["spectral_entropy_bits"] == first["branches.s4d"]["spectral_entropy_bits"].tolist()


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("SSMSCOPE_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert null_module.null_cache_dir() == tmp_path / "home" / ".cache" / "ssmscope"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert null_module.null_cache_dir() == tmp_path / "xdg" / "ssmscope"
    monkeypatch.setenv("SSMSCOPE_CACHE_DIR", str(tmp_path / "own"))
    assert null_module.null_cache_dir() == tmp_path / "own"


def test_no_kernels_no_null_and_the_callers_rng_is_untouched(cache_dir):
    assert null_readings("cnn", SMALL, 32, 20) == {}
    assert not cache_dir.exists()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    null_readings("s4d", SMALL, 32, 20)
    assert torch.equal(torch.rand(3), expected)
    with pytest.raises(SsmscopeError, match="at least 20 draws"):
        null_readings("s4d", SMALL, 32, 19)


# (d) analyze_run


@pytest.fixture(scope="module")
def tiny_runs(small_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for arch in ("conv_s4d", "cnn"):
        config = RunConfig(arch, str(small_corpus), DataConfig(max_len=64, min_count=1), SMALL, TrainConfig(epochs=1))
        train_run(config, root / arch, log=lambda s: None)
    return root


def test_analyze_places_every_kernel_layer_in_the_null(tiny_runs, cache_dir):
    run = tiny_runs / "conv_s4d"
    summary = analyze_run(run, figures=False)
    key = null_cache_key("conv_s4d", SMALL, 64, DEFAULT_NULL_DRAWS)
    assert summary["null"] == {"n": DEFAULT_NULL_DRAWS, "level": 0.95, "cache_key": key, "functions": None}  # functions: selective layers only
    assert json.loads((run / "analysis" / "summary.json").read_text())["null"] == summary["null"]
    null = json.loads((cache_dir / f"null-{key}.json").read_text())["layers"]
    with np.load(run / "analysis" / "kernels.npz") as npz:
        banks = {name: npz[name] for name in npz.files}
    banks[MODEL_KEY] = np.concatenate([banks[name] for name in sorted(banks)], axis=0)  # the model: every channel pooled
    model_level = {"name": MODEL_KEY, "null": summary["model"]["null"]}
    assert sorted([l["name"] for l in summary["layers"]] + [MODEL_KEY]) == sorted(banks) == sorted(null)
    for layer in [*summary["layers"], model_level]:
        channels = analyze_bank(banks[layer["name"]])
        trained = {name: np.median([getattr(c, name) for c in channels]) for name in CHANNEL_MEDIANS}
        trained["band_pass_share"] = np.mean([c.filter_type == "band-pass" for c in channels])
        assert set(layer["null"]) == set(READINGS)
        for r in READINGS:
            placed, x = layer["null"][r], np.array(null[layer["name"]][r])
            percent = stats.percentileofscore(x, trained[r], kind="mean")
            assert placed["value"] == pytest.approx(trained[r])
            assert placed["percentile"] == pytest.approx(percent)
            assert placed["outside"] == (percent < 2.5 or percent > 97.5)
            assert placed["null_median"] == pytest.approx(np.median(x))
            assert placed["null_central"] == [x.min(), x.max()]  # n = 39: the null's range


def test_analyze_without_kernels_or_with_the_null_off_writes_no_null(tiny_runs, cache_dir, tmp_path):
    assert analyze_run(tiny_runs / "cnn", figures=False)["null"] is None
    summary = analyze_run(tiny_runs / "conv_s4d", figures=False, out=tmp_path / "off", null_draws=None)
    assert summary["null"] is None and all("null" not in layer for layer in summary["layers"])
    assert not cache_dir.exists()
