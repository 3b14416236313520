"""compare_runs / compare_groups / study_groups on run directories written by hand: pairing by record index
and by seed, the errors for runs that cannot be paired, the JSON and the terminal table."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from scipy import stats as sps

from ssmscope.compare import (
    COMPARED_METRICS, PER_SEED_KEYS, SEED_METRIC_KEYS, compare_groups, compare_runs, format_comparison, study_groups,
)
from ssmscope.config import RunConfig
from ssmscope.errors import SsmscopeError
from ssmscope.train.loop import write_predictions
from ssmscope.train.metrics import binary_metrics, tuned_threshold


def _split(rng, n, first_index=0):
    index = np.arange(first_index, first_index + 3 * n, 3)  # record indices into the source: not 0..n-1
    labels = (rng.random(n) < 0.3).astype(int)
    labels[:2] = [0, 1]
    return index, labels


def _make_run(run_dir, arch, seed, test, probabilities, valid=None, threshold="from metrics", order=None):
    """A finished run directory: config.json, metrics.json and predictions.csv (test rows in ``order``)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(RunConfig(arch=arch, data_path="data.jsonl").with_train(seed=seed).to_dict()))
    index, labels = test
    order = np.arange(len(index)) if order is None else order
    splits = {"test": (index[order], labels[order], probabilities[order])}
    if valid is not None:
        splits["valid"] = valid
    write_predictions(run_dir / "predictions.csv", splits)
    metrics = {"f1": 0.0}  # compare_runs recomputes every metric from predictions.csv
    if threshold == "from metrics":
        metrics["tuned_threshold"] = 0.4
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def _probabilities(rng, labels, signal):
    return np.clip(signal * labels + 0.8 * rng.random(len(labels)), 0, 1)


@pytest.fixture
def two_runs(tmp_path):
    """Runs A and B on the same 200 test functions; B's predictions.csv lists them in shuffled order."""
    rng = np.random.default_rng(0)
    test = _split(rng, 200)
    pa, pb = _probabilities(rng, test[1], 0.4), _probabilities(rng, test[1], 0.25)
    shuffled = rng.permutation(200)
    run_a = _make_run(tmp_path / "a", "smr_s4d", 0, test, pa)
    run_b = _make_run(tmp_path / "b", "cnn", 0, test, pb, order=shuffled)
    run_b_in_order = _make_run(tmp_path / "b_in_order", "cnn", 0, test, pb)
    return run_a, run_b, run_b_in_order, test[1], pa, pb


def test_compare_runs_pairs_functions_by_index(two_runs):
    run_a, run_b, run_b_in_order, labels, pa, pb = two_runs
    result = compare_runs(run_a, run_b, n_boot=300)
    assert result["metrics"] == compare_runs(run_a, run_b_in_order, n_boot=300)["metrics"]  # file order does not matter
    a_right, b_right = (pa > 0.5) == labels, (pb > 0.5) == labels  # aligned by construction
    mcnemar = result["mcnemar"]["default"]
    assert (mcnemar["a_right_b_wrong"], mcnemar["a_wrong_b_right"]) == (np.sum(a_right & ~b_right), np.sum(~a_right & b_right))
    tuned = result["mcnemar"]["tuned"]  # both thresholds 0.4 from metrics.json
    a_right, b_right = (pa >= 0.4) == labels, (pb >= 0.4) == labels
    assert (tuned["a_right_b_wrong"], tuned["a_wrong_b_right"]) == (np.sum(a_right & ~b_right), np.sum(~a_right & b_right))
    assert result["delong"]["auc_a"] == pytest.approx(roc_auc_score(labels, pa))
    assert result["delong"]["auc_b"] == pytest.approx(roc_auc_score(labels, pb))
    for name in ("f1", "f1_weighted", "mcc", "roc_auc", "pr_auc", "vd_score"):
        m = result["metrics"][name]
        assert (m["a"], m["b"]) == pytest.approx((binary_metrics(labels, pa)[name], binary_metrics(labels, pb)[name]))
        assert m["ci_low"] <= m["difference"] <= m["ci_high"]
    f1_tuned = result["metrics"]["f1_tuned"]
    assert (f1_tuned["a"], f1_tuned["b"]) == pytest.approx((f1_score(labels, pa >= 0.4), f1_score(labels, pb >= 0.4)))


def test_compare_runs_json(two_runs):
    run_a, run_b, *_ = two_runs
    result = compare_runs(run_a, run_b, n_boot=100, seed=3)
    json.dumps(result, allow_nan=False)  # the CLI's --json
    assert list(result["metrics"]) == ["f1", "f1_weighted", "mcc", "roc_auc", "pr_auc", "vd_score", "f1_tuned"] == list(COMPARED_METRICS)
    for m in result["metrics"].values():
        assert set(m) == {"a", "b", "difference", "ci_low", "ci_high", "p_value"}
    assert {"runs", "n_test", "delong", "mcnemar", "threshold", "bootstrap"} <= set(result)
    assert result["n_test"] == 200
    assert (result["runs"]["a"]["arch"], result["runs"]["b"]["arch"], result["runs"]["a"]["seed"]) == ("smr_s4d", "cnn", 0)
    assert result["bootstrap"]["n_boot"] == 100 and result["bootstrap"]["seed"] == 3
    assert set(result["delong"]) >= {"auc_a", "auc_b", "difference", "std_error", "z", "p_value", "ci_low", "ci_high"}


def test_same_run_twice_is_no_difference(two_runs):
    run_a, *_ = two_runs
    result = compare_runs(run_a, run_a, n_boot=100)
    for m in result["metrics"].values():
        assert (m["difference"], m["p_value"]) == (0.0, 1.0)
    assert result["mcnemar"]["default"]["p_value"] == 1.0 and result["delong"]["p_value"] == 1.0


def test_tuned_threshold_recomputed_from_validation_when_metrics_json_lacks_it(tmp_path):
    rng = np.random.default_rng(1)
    test = _split(rng, 150)
    valid_index, valid_labels = _split(rng, 80, first_index=1)
    valid_probabilities = _probabilities(rng, valid_labels, 0.3)
    pa, pb = _probabilities(rng, test[1], 0.4), _probabilities(rng, test[1], 0.3)
    run_a = _make_run(tmp_path / "a", "s4d", 0, test, pa, valid=(valid_index, valid_labels, valid_probabilities), threshold=None)
    run_b = _make_run(tmp_path / "b", "cnn", 0, test, pb)
    result = compare_runs(run_a, run_b, n_boot=50)
    t = tuned_threshold(valid_labels, valid_probabilities)
    assert result["runs"]["a"]["tuned_threshold"] == t
    assert result["metrics"]["f1_tuned"]["a"] == pytest.approx(f1_score(test[1], pa >= t))


def test_runs_with_other_test_functions_are_refused(tmp_path):
    rng = np.random.default_rng(2)
    index, labels = _split(rng, 40)
    p = _probabilities(rng, labels, 0.3)
    run_a = _make_run(tmp_path / "a", "s4d", 0, (index, labels), p)
    other = index.copy()
    other[:3] += 1  # three functions replaced by three others
    run_b = _make_run(tmp_path / "b", "cnn", 1, (other, labels), p)
    with pytest.raises(SsmscopeError) as error:
        compare_runs(run_a, run_b)
    message = str(error.value)
    assert "\n" not in message and str(run_a) in message and str(run_b) in message
    assert "6 of 43" in message and "same data, seed and split" in message
    relabelled = _make_run(tmp_path / "c", "cnn", 0, (index, 1 - labels), p)
    with pytest.raises(SsmscopeError, match="40 test functions have different labels"):
        compare_runs(run_a, relabelled)


def test_unfinished_run_and_bad_settings_are_refused(two_runs, tmp_path):
    run_a, *_ = two_runs
    (tmp_path / "empty").mkdir()
    with pytest.raises(SsmscopeError, match="config.json: missing"):
        compare_runs(run_a, tmp_path / "empty")
    with pytest.raises(SsmscopeError, match="--n-boot"):
        compare_runs(run_a, run_a, n_boot=0)


def _seed_runs(tmp_path, seeds, signal_a=0.4, signal_b=0.3):
    """Runs of s4d (A) and cnn (B) at each seed in a reproduce-like STUDY/runs/<arch>-seed<seed>/; every seed has
    its own test split (other indices and lengths). Returns {seed: (labels, pa, pb)} for checking."""
    data = {}
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        test = _split(rng, 120 + 10 * seed, first_index=seed)
        pa, pb = _probabilities(rng, test[1], signal_a), _probabilities(rng, test[1], signal_b)
        _make_run(tmp_path / "runs" / f"s4d-seed{seed}", "s4d", seed, test, pa)
        _make_run(tmp_path / "runs" / f"cnn-seed{seed}", "cnn", seed, test, pb, order=rng.permutation(len(pb)))
        data[seed] = (test[1], pa, pb)
    return data


def test_compare_groups_pairs_by_seed(tmp_path):
    """Per metric: per-seed paired bootstraps, and over seeds the t interval and t-test of the per-seed differences
    (scipy.stats.t.interval and ttest_1samp), with the sd split into within- and between-seed parts."""
    data = _seed_runs(tmp_path, [0, 1, 2])
    runs = tmp_path / "runs"
    result = compare_groups([runs / f"s4d-seed{s}" for s in (0, 1, 2)], [runs / f"cnn-seed{s}" for s in (2, 0, 1)], n_boot=200)
    json.dumps(result, allow_nan=False)
    assert result["seeds"] == [0, 1, 2] and result["n_test"] == [120, 130, 140]
    assert "t(2)" in result["combination"] and result["bootstrap"]["dropped"]["f1"] == [0, 0, 0]
    for name in COMPARED_METRICS:
        m = result["metrics"][name]
        assert tuple(m) == SEED_METRIC_KEYS and tuple(m["per_seed"]) == PER_SEED_KEYS and m["method"] == "student_t"
        d = np.array(m["per_seed"]["difference"])
        if name != "f1_tuned":
            assert d == pytest.approx([binary_metrics(y, pa)[name] - binary_metrics(y, pb)[name] for y, pa, pb in data.values()])
        assert m["difference"] == pytest.approx(d.mean()) and m["std_difference"] == pytest.approx(d.std(ddof=1))
        assert (m["ci_low"], m["ci_high"]) == pytest.approx(sps.t.interval(0.95, 2, loc=d.mean(), scale=sps.sem(d)), rel=1e-11)
        assert m["p_value"] == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue, rel=1e-11)
        within = np.sqrt(np.mean(np.square(m["per_seed"]["std_error"])))
        assert (m["within_seed_sd"], m["between_seed_sd"]) == pytest.approx((within, np.sqrt(max(0, d.var(ddof=1) - within**2))))
        for low, high, diff, p in zip(*(m["per_seed"][k] for k in ("ci_low", "ci_high", "difference", "p_value"))):
            assert low <= diff <= high and 0 < p <= 1


def test_compare_groups_with_one_seed_is_that_pairs_bootstrap(two_runs):
    """With one seed there is no spread over seeds: the pooled interval and p are the paired bootstrap of
    compare_runs on the same pair, and the result says so."""
    run_a, run_b, *_ = two_runs
    result = compare_groups([run_a], [run_b], n_boot=150, seed=7)
    single = compare_runs(run_a, run_b, n_boot=150, seed=7)
    for name in COMPARED_METRICS:
        m, alone = result["metrics"][name], single["metrics"][name]
        assert m["method"] == "bootstrap_one_seed" and (m["std_difference"], m["between_seed_sd"]) == (None, None)
        assert {k: m[k] for k in alone} == alone
        assert [m["per_seed"][k][0] for k in ("ci_low", "ci_high", "p_value")] == [alone["ci_low"], alone["ci_high"], alone["p_value"]]
    assert result["combination"].startswith("one seed")


def test_compare_groups_without_tuned_thresholds(tmp_path):
    rng = np.random.default_rng(3)
    for seed in (0, 1):
        test = _split(rng, 60, first_index=seed)
        _make_run(tmp_path / "runs" / f"s4d-seed{seed}", "s4d", seed, test, _probabilities(rng, test[1], 0.4), threshold=None)
        _make_run(tmp_path / "runs" / f"cnn-seed{seed}", "cnn", seed, test, _probabilities(rng, test[1], 0.3))
    result = compare_groups(*study_groups(tmp_path, "s4d", "cnn"), n_boot=50)
    assert result["metrics"]["f1_tuned"] == dict.fromkeys(SEED_METRIC_KEYS) and result["bootstrap"]["dropped"]["f1_tuned"] is None
    assert "n/a" in format_comparison(result)


def test_compare_groups_needs_the_same_seeds_once(tmp_path):
    _seed_runs(tmp_path, [0, 1])
    runs = tmp_path / "runs"
    with pytest.raises(SsmscopeError, match=r"only A has \[1\], only B has \[\]"):
        compare_groups([runs / "s4d-seed0", runs / "s4d-seed1"], [runs / "cnn-seed0"])
    with pytest.raises(SsmscopeError, match="both have training seed 0"):
        compare_groups([runs / "s4d-seed0", runs / "s4d-seed0"], [runs / "cnn-seed0"])


def test_study_groups_finds_finished_runs_by_arch(tmp_path):
    _seed_runs(tmp_path, [1, 0, 10])
    (tmp_path / "runs" / "s4d-seed11").mkdir()  # interrupted: no metrics.json
    runs_a, runs_b = study_groups(tmp_path, "s4d", "cnn")
    assert runs_a == [tmp_path / "runs" / f"s4d-seed{s}" for s in (0, 1, 10)]
    assert runs_b == [tmp_path / "runs" / f"cnn-seed{s}" for s in (0, 1, 10)]
    with pytest.raises(SsmscopeError, match="no finished run of 'lstm'; finished runs exist for: cnn, s4d"):
        study_groups(tmp_path, "s4d", "lstm")
    with pytest.raises(SsmscopeError, match="no runs/ folder"):
        study_groups(tmp_path / "runs", "s4d", "cnn")


def test_format_comparison_is_an_aligned_table(two_runs, tmp_path):
    run_a, run_b, *_ = two_runs
    text = format_comparison(compare_runs(run_a, run_b, n_boot=100))
    lines = text.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("metric"))):][:len(COMPARED_METRICS) + 1]
    assert len({len(line) for line in table}) == 1  # every row as wide as the header
    assert [line.split()[0] for line in table[1:]] == list(COMPARED_METRICS)
    assert "95% CI" in table[0] and any(line.startswith("DeLong (ROC-AUC)") for line in lines)
    assert sum(line.startswith("McNemar") for line in lines) == 2
    _seed_runs(tmp_path / "study", [0, 1])
    grouped = format_comparison(compare_groups(*study_groups(tmp_path / "study", "s4d", "cnn"), n_boot=100)).splitlines()
    assert "paired by seed: 0, 1" in grouped[0] and "t over the 2 per-seed differences (1 df)" in grouped[1]
    table = grouped[3:4 + len(COMPARED_METRICS)]
    assert len({len(line) for line in table}) == 1 and [line.split()[0] for line in table[1:]] == list(COMPARED_METRICS)
    assert all(column in table[0] for column in ("sd (seeds)", "within sd", "between sd", "pooled 95% CI"))
    start = grouped.index("per seed (paired bootstrap on the seed's own test functions):") + 1
    per_seed = grouped[start:start + 1 + 2 * len(COMPARED_METRICS)]
    assert len({len(line) for line in per_seed}) == 1 and per_seed[0].split()[:2] == ["metric", "seed"]
    assert per_seed[1].split()[:2] == ["f1", "0"] and per_seed[2].startswith(" ") and per_seed[2].split()[0] == "1"  # metric named once
    assert grouped[-1].startswith("seeds combined: per-seed differences")


def _shared_seed_runs(tmp_path, seeds, test=None):
    """Runs of s4d (A) and cnn (B) at each seed, every seed tested on the SAME test functions (a group or given split);
    each seed's models score them differently. Returns the shared (index, labels)."""
    rng = np.random.default_rng(40)
    test = _split(rng, 150) if test is None else test
    base_a, base_b = _probabilities(rng, test[1], 0.4), _probabilities(rng, test[1], 0.3)
    for seed in seeds:
        pa = np.clip(base_a + 0.1 * rng.normal(size=len(base_a)), 0, 1)
        pb = np.clip(base_b + 0.1 * rng.normal(size=len(base_b)), 0, 1)
        _make_run(tmp_path / "runs" / f"s4d-seed{seed}", "s4d", seed, test, pa)
        _make_run(tmp_path / "runs" / f"cnn-seed{seed}", "cnn", seed, test, pb, order=rng.permutation(len(pb)))
    return test


def test_compare_groups_on_a_shared_test_set_resamples_it_once_for_every_seed(tmp_path):
    """Seeds sharing one test set: the shared-test method for every metric; each seed's entry is compare_runs on that
    seed's pair with the same resampling seed (the seeds saw the same resamples); the pooled interval is Banerjee's,
    at least as wide as the seeds' t part and as the shared test set's normal part, and no wider than t on both."""
    _shared_seed_runs(tmp_path, [0, 1, 2])
    result = compare_groups(*study_groups(tmp_path, "s4d", "cnn"), n_boot=200, seed=5)
    json.dumps(result, allow_nan=False)
    assert result["shared_test"] is True and result["n_test"] == [150, 150, 150]
    assert "shared" in result["combination"] and "Banerjee" in result["combination"]
    runs = tmp_path / "runs"
    alone = [compare_runs(runs / f"s4d-seed{s}", runs / f"cnn-seed{s}", n_boot=200, seed=5)["metrics"] for s in (0, 1, 2)]
    t, z = sps.t.ppf(0.975, 2), sps.norm.ppf(0.975)
    for name in COMPARED_METRICS:
        m = result["metrics"][name]
        assert tuple(m) == SEED_METRIC_KEYS and m["method"] == "student_t_shared_test"
        for i, one in enumerate(alone):
            assert [m["per_seed"][k][i] for k in ("a", "b", "difference", "ci_low", "ci_high", "p_value")] == [
                one[name][k] for k in ("a", "b", "difference", "ci_low", "ci_high", "p_value")]
        d = np.array(m["per_seed"]["difference"])
        seed_part, test_part = d.var(ddof=1) / 3, m["shared_test_sd"] ** 2
        half = (m["ci_high"] - m["ci_low"]) / 2
        assert m["difference"] == pytest.approx((m["ci_low"] + m["ci_high"]) / 2)
        assert max(t * np.sqrt(seed_part), z * np.sqrt(test_part)) <= half * (1 + 1e-12) <= t * np.sqrt(seed_part + test_part) * (1 + 1e-12)
        # the sd of a mean is at most the mean of the sds, and close to it for seeds scored on the same functions
        assert 0.5 * np.mean(m["per_seed"]["std_error"]) < m["shared_test_sd"] <= np.mean(m["per_seed"]["std_error"])
    text = format_comparison(result).splitlines()
    assert "one shared test set" in text[1] and "shared test sd" in text[3]
    assert "per seed (paired bootstrap on the shared test functions, the same resamples for every seed):" in text


def test_compare_groups_refuses_seeds_that_share_test_sets_only_partly(tmp_path):
    """Seeds 0 and 1 on one test set (a group split), seed 2 on another (a random split): a one-line error."""
    test = _shared_seed_runs(tmp_path, [0, 1])
    rng = np.random.default_rng(41)
    other = _split(rng, 150, first_index=1)
    _make_run(tmp_path / "runs" / "s4d-seed2", "s4d", 2, other, _probabilities(rng, other[1], 0.4))
    _make_run(tmp_path / "runs" / "cnn-seed2", "cnn", 2, other, _probabilities(rng, other[1], 0.3))
    with pytest.raises(SsmscopeError) as error:
        compare_groups(*study_groups(tmp_path, "s4d", "cnn"), n_boot=20)
    message = str(error.value)
    assert "\n" not in message and "mix split settings" in message and "0, 1 | 2" in message
    relabelled = (test[0], test[1].copy())
    relabelled[1][5] = 1 - relabelled[1][5]  # same functions, one other label: not the same test set
    _shared_seed_runs(tmp_path / "labels", [0, 1])
    _shared_seed_runs(tmp_path / "labels", [2], test=relabelled)
    with pytest.raises(SsmscopeError, match="mix split settings"):
        compare_groups(*study_groups(tmp_path / "labels", "s4d", "cnn"), n_boot=20)
