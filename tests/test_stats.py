"""Paired comparison statistics against independent truths: the metrics of explicitly resampled data,
scikit-learn, scipy, DeLong's placement formula written out, and the known sampling behaviour of
simulated test sets (interval coverage and width, p-values uniform under the null)."""

from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from ssmscope.stats import (
    RESAMPLED_METRICS, across_seeds, delong_test, f1_resampled, mcnemar_exact, paired_bootstrap, resample_counts,
    roc_auc_resampled, shared_test_interval, student_t_cdf, student_t_quantile, t_over_seeds,
)
from ssmscope.train.metrics import binary_metrics, metrics_at_threshold

PHI = NormalDist().cdf


def _scored(rng, n, ties=False):
    labels = (rng.random(n) < 0.3).astype(int)
    labels[:2] = [0, 1]
    scores = np.clip(0.35 * labels + 0.8 * rng.random(n), 0, 1)
    return labels, np.round(scores, 1) if ties else scores


def _binormal(rng, n, mu_a, mu_b, rho):
    """Labels ~ Bernoulli(0.3); scores of A and B bivariate normal with correlation rho, shifted by mu for
    positives. True ROC-AUC of a scorer: Φ(mu / √2)."""
    labels = (rng.random(n) < 0.3).astype(int)
    noise = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)  # (n, 2)
    return labels, noise[:, 0] + mu_a * labels, noise[:, 1] + mu_b * labels


def _accuracy(labels, scores, counts):
    """Accuracy at p > 0.5 as a resampled metric: a mean over functions."""
    return counts @ ((scores > 0.5) == labels) / counts.sum(axis=1)


@pytest.mark.parametrize("n, ties", [(60, False), (60, True), (7, False)])
def test_resampled_metrics_equal_the_metrics_of_the_resampled_data(n, ties):
    """Each row of counts is a data set (function i written counts[b, i] times); binary_metrics on it is the truth.
    With n = 7 some resamples hold one class: the ranking metrics must then be NaN (binary_metrics: None)."""
    rng = np.random.default_rng(n + ties)
    labels, scores = _scored(rng, n, ties)
    counts = resample_counts(rng, n, 40)  # (40, n)
    one_class_seen = False
    for row in counts:
        drawn = np.repeat(np.arange(n), row.astype(int))
        truth = binary_metrics(labels[drawn], scores[drawn])
        one_class_seen |= truth["roc_auc"] is None
        for name, metric in RESAMPLED_METRICS.items():
            got = metric(labels, scores, row[None, :])[0]
            assert (np.isnan(got) if truth[name] is None else got == pytest.approx(truth[name], rel=1e-12, abs=1e-12)), name
        decisions = (scores >= 0.45).astype(float)  # F1 at a tuned threshold = F1 of the decisions
        assert f1_resampled(labels, decisions, row[None, :])[0] == pytest.approx(metrics_at_threshold(labels[drawn], scores[drawn], 0.45)["f1_tuned"])
    assert one_class_seen == (n == 7)


def test_identical_predictions_give_zero_difference_and_p_one():
    labels, scores = _scored(np.random.default_rng(0), 300)
    for metric in RESAMPLED_METRICS.values():
        r = paired_bootstrap(labels, scores, scores.copy(), metric, n_boot=200)
        assert (r.difference, r.ci_low, r.ci_high, r.p_value, r.n_used) == (0.0, 0.0, 0.0, 1.0, 200)


def test_p_value_and_interval_of_a_mean_follow_the_normal_approximation():
    """For a mean over n = 2000 functions the bootstrap distribution is close to N(d̂, se²), se = sd(δ)/√n,
    so the interval is ≈ d̂ ± 1.96 se and p ≈ 2Φ(-|d̂|/se) (a one-sided or unpaired version is far off)."""
    n = 2000
    labels = np.ones(n, dtype=int)  # a score of 1 is then a right decision, 0 a wrong one
    u = np.random.default_rng(1).random(n)
    scores_a = (u < 0.6).astype(float)  # both right below 0.5, only A right in [0.5, 0.6)
    scores_b = ((u < 0.5) | ((0.6 <= u) & (u < 0.68))).astype(float)  # only B right in [0.6, 0.68)
    delta = scores_a - scores_b  # (n,) per-function difference of correctness
    d, se = delta.mean(), delta.std() / np.sqrt(n)  # z = d / se ≈ 2
    r = paired_bootstrap(labels, scores_a, scores_b, _accuracy, n_boot=4000, seed=2)
    assert r.difference == pytest.approx(d)
    assert (r.ci_low, r.ci_high) == pytest.approx((d - 1.96 * se, d + 1.96 * se), abs=0.15 * se)
    assert r.p_value == pytest.approx(2 * PHI(-d / se), abs=0.015)


def test_p_value_is_never_zero():
    """Every resampled difference above 0: p = 2 (1 + 0) / (B + 1), the resolution of B resamples."""
    labels = np.ones(500, dtype=int)
    r = paired_bootstrap(labels, np.ones(500), np.zeros(500), _accuracy, n_boot=999)
    assert r.p_value == 2 / 1000 and r.difference == 1.0


def test_undefined_resamples_are_left_out():
    """4 functions, one vulnerable: a resample holds both classes with probability 1 - (3/4)^4 - (1/4)^4."""
    labels = np.array([1, 0, 0, 0])
    r = paired_bootstrap(labels, np.array([0.9, 0.2, 0.4, 0.6]), np.array([0.3, 0.2, 0.4, 0.6]), roc_auc_resampled, n_boot=4000)
    assert r.n_used / 4000 == pytest.approx(1 - 0.75**4 - 0.25**4, abs=0.03)
    assert r.ci_low <= r.difference <= r.ci_high
    one_class = paired_bootstrap(np.zeros(4, dtype=int), np.arange(4.0), np.arange(4.0), roc_auc_resampled)
    assert (one_class.a, one_class.difference, one_class.p_value) == (None, None, None)


def test_bootstrap_interval_covers_a_known_auc_difference():
    """1000 independent test sets of 150 functions from a binormal model with true AUC_A - AUC_B known:
    the 95% interval covers the truth in 92.5-97% of them (a correct implementation: 93.8-94.6% over six
    seeds; a 90% interval: 88.9-91.1%; unpaired resampling of strongly correlated scorers: ≈ 100%), and
    its mean width is 2·1.96 times the observed spread of the estimate (ratio 0.98-1.02; 90%: 0.82-0.85)."""
    rng = np.random.default_rng(1)
    truth = PHI(1.2 / np.sqrt(2)) - PHI(0.8 / np.sqrt(2))
    results = [paired_bootstrap(*_binormal(rng, 150, 1.2, 0.8, 0.8), roc_auc_resampled, n_boot=300, seed=r) for r in range(1000)]
    low, high, difference = (np.array([getattr(r, k) for r in results]) for k in ("ci_low", "ci_high", "difference"))
    assert 0.925 <= np.mean((low <= truth) & (truth <= high)) <= 0.97
    assert np.mean(high - low) / (2 * 1.96 * difference.std()) == pytest.approx(1, abs=0.08)


def test_bootstrap_p_value_is_uniform_under_the_null():
    """Equal true AUCs: P(p <= u) ≈ u for every u. Kolmogorov distance over 1000 test sets: 0.019-0.057 for 18
    simulation seeds (resampling noise and n = 150 keep it from exact uniformity); without the factor 2, ≈ 0.5."""
    rng = np.random.default_rng(2)
    p = np.sort([paired_bootstrap(*_binormal(rng, 150, 1.0, 1.0, 0.5), roc_auc_resampled, n_boot=300, seed=r).p_value for r in range(1000)])
    assert np.max(np.abs(np.arange(1, 1001) / 1000 - p)) < 0.08
    assert np.mean(p <= 0.05) == pytest.approx(0.05, abs=0.025)  # 0.035-0.057 over the same 18 seeds


# --- Student's t -----------------------------------------------------------------------------------

T_GRID = np.array([0, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 3, 4, 5, 7, 10, 15, 20, 30, 40, 50])
Q_GRID = [1e-10, 1e-6, 1e-4, 1e-3, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.999, 1 - 1e-4, 1 - 1e-6]


@pytest.mark.parametrize("df", [*range(1, 31), 0.5, 2.5, 75, 200])
def test_student_t_cdf_and_quantile_match_scipy(df):
    """Relative error below 1e-11 in both tails: at t = -50, df = 30 the CDF is about 1e-30, so a tail
    computed as 1 - P(T <= |t|) would be 0 (observed worst: 4e-14 for the CDF, 1.2e-14 for the quantile).
    The grids leave out 0 < |t| < 0.05 and q within 1e-3 of 1/2, where scipy itself is off by up to 1e-9
    (checked with mpmath: P(T_1 <= 1e-8) = 1/2 + arctan(1e-8)/π, which student_t_cdf gives to 1e-16)."""
    t = np.concatenate([-T_GRID[::-1], T_GRID[1:]])
    assert [student_t_cdf(x, df) for x in t] == pytest.approx(sps.t.cdf(t, df), rel=1e-11, abs=0)
    assert [student_t_quantile(q, df) for q in Q_GRID] == pytest.approx(sps.t.ppf(Q_GRID, df), rel=1e-11, abs=0)
    assert (student_t_quantile(0.5, df), student_t_cdf(0.0, df), student_t_cdf(-np.inf, df), student_t_cdf(np.inf, df)) == (0, 0.5, 0, 1)


def test_student_t_small_df_closed_forms_and_bad_arguments():
    """df = 1 (Cauchy): P(T <= t) = 1/2 + arctan(t)/π; df = 2: 1/2 + t / (2√(2 + t²))."""
    for t in [-1e6, -50, -3, -0.2, 1e-9, 0.7, 12]:
        assert student_t_cdf(t, 1) == pytest.approx(0.5 + np.arctan(t) / np.pi, rel=1e-13)
        assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * np.sqrt(2 + t * t)), rel=1e-13)
    assert student_t_quantile(0.975, 2) == pytest.approx(4.302652729749464, rel=1e-13)  # the 3-seed critical value
    for bad in [lambda: student_t_cdf(1.0, 0), lambda: student_t_quantile(1.0, 3), lambda: student_t_quantile(0.5, np.inf)]:
        with pytest.raises(ValueError):
            bad()


# --- DeLong ----------------------------------------------------------------------------------------


def _delong_variance_by_placements(labels, scores_a, scores_b):
    """DeLong et al. (1988) written out: ψ over every (positive, negative) pair, placements, covariance matrices."""
    def placements(scores):
        x, y = scores[labels == 1][:, None], scores[labels == 0][None, :]
        psi = (x > y) + 0.5 * (x == y)  # (P, N)
        return psi.mean(axis=1), psi.mean(axis=0)  # V10 (P,), V01 (N,)

    (v10_a, v01_a), (v10_b, v01_b) = placements(scores_a), placements(scores_b)
    s10, s01 = np.cov(np.stack([v10_a, v10_b])), np.cov(np.stack([v01_a, v01_b]))  # (2, 2) each
    contrast = np.array([1.0, -1.0])
    return contrast @ (s10 / len(v10_a) + s01 / len(v01_a)) @ contrast


@pytest.mark.parametrize("ties", [False, True])
def test_delong_matches_sklearn_and_the_placement_formula(ties):
    rng = np.random.default_rng(3 + ties)
    labels, scores_a = _scored(rng, 250, ties)
    scores_b = np.clip(scores_a + 0.3 * rng.normal(size=250), 0, 1)
    if ties:
        scores_b = np.round(scores_b, 1)
    r = delong_test(labels, scores_a, scores_b)
    assert r.auc_a == pytest.approx(roc_auc_score(labels, scores_a), rel=1e-12)
    assert r.auc_b == pytest.approx(roc_auc_score(labels, scores_b), rel=1e-12)
    assert r.std_error**2 == pytest.approx(_delong_variance_by_placements(labels, scores_a, scores_b), rel=1e-10)
    assert r.p_value == pytest.approx(2 * sps.norm.sf(abs(r.difference / r.std_error)), rel=1e-10)
    assert (r.ci_low, r.ci_high) == pytest.approx(r.difference + np.array([-1, 1]) * sps.norm.ppf(0.975) * r.std_error)


def test_delong_standard_error_and_p_values_under_repeated_sampling():
    """Over 2000 simulated test sets with equal true AUCs: DeLong's se matches the spread of the difference
    (ratio 0.97-1.06 over 18 simulation seeds; without the covariance term 1.5) and its p-values are
    uniform (Kolmogorov distance 0.011-0.041)."""
    rng = np.random.default_rng(4)
    results = [delong_test(*_binormal(rng, 200, 1.0, 1.0, 0.6)) for _ in range(2000)]
    difference = np.array([r.difference for r in results])
    assert np.mean([r.std_error for r in results]) == pytest.approx(difference.std(), rel=0.1)
    p = np.sort([r.p_value for r in results])
    assert np.max(np.abs(np.arange(1, 2001) / 2000 - p)) < 0.06


def test_delong_degenerate_cases():
    labels, scores = _scored(np.random.default_rng(5), 50)
    same = delong_test(labels, scores, scores)
    assert (same.difference, same.std_error, same.z, same.p_value) == (0.0, 0.0, None, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        delong_test(np.array([1, 0, 0]), np.arange(3.0), np.arange(3.0))


# --- McNemar ---------------------------------------------------------------------------------------


def _decisions_with(b, c, both_right=5, both_wrong=3):
    """Labels and two decision vectors with b functions only A gets right and c only B gets right."""
    labels = np.ones(b + c + both_right + both_wrong, dtype=int)
    a_right = np.array([1] * b + [0] * c + [1] * both_right + [0] * both_wrong)
    b_right = np.array([0] * b + [1] * c + [1] * both_right + [0] * both_wrong)
    return labels, a_right, b_right  # label 1: a decision is right when it is 1


@pytest.mark.parametrize("b, c", [(0, 1), (1, 0), (3, 3), (2, 9), (10, 4), (25, 40), (0, 17), (300, 251)])
def test_mcnemar_matches_scipy_binomtest(b, c):
    result = mcnemar_exact(*_decisions_with(b, c))
    assert (result.a_right_b_wrong, result.a_wrong_b_right) == (b, c)
    assert result.p_value == pytest.approx(sps.binomtest(b, b + c, 0.5).pvalue, rel=1e-10)


def test_mcnemar_without_discordant_pairs_is_one():
    assert mcnemar_exact(*_decisions_with(0, 0)).p_value == 1.0


# --- across seeds ------------------------------------------------------------------------------------


def _noisy_pairs(rng, n_seeds, low=80, high=120):
    """One (labels, scores_a, scores_b) per seed, each seed with its own number of test functions."""
    per_seed = []
    for _ in range(n_seeds):
        labels, scores_a = _scored(rng, int(rng.integers(low, high)))
        per_seed.append((labels, scores_a, np.clip(scores_a + 0.2 * rng.normal(size=len(labels)), 0, 1)))
    return per_seed


@pytest.mark.parametrize("n_seeds", [2, 3, 4, 6])
def test_across_seeds_pooled_interval_and_p_are_scipys_t_test(n_seeds):
    """The pooled interval and p are scipy.stats.t.interval and scipy.stats.ttest_1samp on the per-seed differences;
    each seed's entry is the paired bootstrap of its own test functions; within_seed_sd and between_seed_sd
    split the variance of the differences."""
    per_seed = _noisy_pairs(np.random.default_rng(6 + n_seeds), n_seeds)
    r = across_seeds(per_seed, f1_resampled, n_boot=300)
    a = [binary_metrics(y, sa)["f1"] for y, sa, _ in per_seed]
    b = [binary_metrics(y, sb)["f1"] for y, _, sb in per_seed]
    d = np.subtract(a, b)
    assert [s.a for s in r.per_seed] == pytest.approx(a) and [s.b for s in r.per_seed] == pytest.approx(b)
    assert [s.difference for s in r.per_seed] == pytest.approx(d)
    assert all(s.ci_low <= s.difference <= s.ci_high and 0 < s.p_value <= 1 and s.n_used == 300 for s in r.per_seed)
    assert (r.mean_a, r.mean_b, r.mean_difference, r.std_difference) == pytest.approx((np.mean(a), np.mean(b), d.mean(), d.std(ddof=1)))
    assert (r.ci_low, r.ci_high) == pytest.approx(sps.t.interval(0.95, n_seeds - 1, loc=d.mean(), scale=sps.sem(d)), rel=1e-11)
    assert r.p_value == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue, rel=1e-11)
    assert r.method == "student_t"
    assert r.within_seed_sd == pytest.approx(np.sqrt(np.mean([s.std_error**2 for s in r.per_seed])))
    assert r.between_seed_sd == pytest.approx(np.sqrt(max(0.0, d.var(ddof=1) - r.within_seed_sd**2)))
    assert t_over_seeds(d, 0.8) == pytest.approx((*sps.t.interval(0.8, n_seeds - 1, loc=d.mean(), scale=sps.sem(d)), r.p_value))


def test_across_seeds_with_one_seed_is_that_seeds_bootstrap():
    (one,) = per_seed = _noisy_pairs(np.random.default_rng(9), 1)
    r = across_seeds(per_seed, f1_resampled, n_boot=300, seed=4)
    alone = paired_bootstrap(*one, f1_resampled, n_boot=300, seed=4)
    assert r.per_seed == (alone,) and r.method == "bootstrap_one_seed"
    assert (r.mean_difference, r.ci_low, r.ci_high, r.p_value, r.within_seed_sd) == (
        alone.difference, alone.ci_low, alone.ci_high, alone.p_value, alone.std_error)
    assert (r.std_difference, r.between_seed_sd) == (None, None)


def test_t_over_seeds_without_spread():
    assert t_over_seeds([0.02, 0.02, 0.02]) == (0.02, 0.02, 0.0)  # |t| -> ∞ (scipy: NaN)
    assert t_over_seeds([0.0, 0.0]) == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        t_over_seeds([0.1])


def _simulated_study(rng, n_seeds, tau, true_difference, n=(180, 220), accuracy_b=0.5):
    """Each seed trains its own models on its own split: A's accuracy is accuracy_b + true_difference + u_s,
    u_s ~ N(0, tau²) (the training seed), B's is accuracy_b; each seed then scores its own n_s test functions
    (the test sample). Returns the per-seed triples (label 1: a score of 1 is a right decision) and the u_s."""
    per_seed, seed_effects = [], rng.normal(0, tau, size=n_seeds)
    for u in seed_effects:
        size = int(rng.integers(*n))
        right_a = rng.random(size) < np.clip(accuracy_b + true_difference + u, 0, 1)
        per_seed.append((np.ones(size, dtype=int), right_a.astype(float), (rng.random(size) < accuracy_b).astype(float)))
    return per_seed, seed_effects


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_pooled_interval_covers_the_true_difference_under_seed_and_test_noise(n_seeds):
    """2000 simulated studies of S seeds with seed effect τ = 0.15 and test-sample sd ≈ 0.05 per seed (n ≈ 200
    accuracy differences): the 95% pooled interval covers the true mean difference 0.03 in 93-97% of them
    (observed 0.940-0.964 over 10 simulation seeds for each S). From the same studies, the z interval
    d̄ ± 1.96 sd/√S covers 0.80-0.84 (S = 3) and 0.87-0.89 (S = 5); intervals from the within-seed bootstrap
    variance alone cover 0.59-0.83 with the t quantile and about 0.45 with z; and the normal interval with the
    two-level bootstrap's variance (1/S)[((S-1)/S) sd² + within²] about 0.80 (S = 3) and 0.89 (S = 5): all fail."""
    rng = np.random.default_rng(10 + n_seeds)
    truth, studies = 0.03, 2000
    covered, z_covered, within_covered = 0, 0, 0
    t_critical = student_t_quantile(0.975, n_seeds - 1)
    for study in range(studies):
        r = across_seeds(_simulated_study(rng, n_seeds, 0.15, truth)[0], _accuracy, n_boot=10, seed=study)
        covered += r.ci_low <= truth <= r.ci_high
        error = abs(r.mean_difference - truth) * np.sqrt(n_seeds)
        z_covered += error <= 1.96 * r.std_difference
        within_covered += error <= max(1.96, t_critical) * r.within_seed_sd
    assert 0.93 <= covered / studies <= 0.97
    assert max(z_covered, within_covered) / studies < 0.9  # the simulation tells the right interval from the wrong ones


def test_variance_decomposition_recovers_the_seed_and_test_sample_parts():
    """1000 seeds, known seed sd τ = 0.03 and test-sample variance var(δ_s)/n_s (the variance of a mean of n_s
    per-function differences δ_s, n_s ≈ 500): within_seed_sd matches √(mean var(δ_s)/n_s) within 2% (observed
    at most 0.5% over 24 simulation seeds), between_seed_sd matches the sd of the drawn seed effects within 12%
    (observed at most 8%; its own sd is about 3% here), and within² + between² = std_difference²."""
    rng = np.random.default_rng(11)
    per_seed, seed_effects = _simulated_study(rng, 1000, 0.03, 0.02, n=(450, 550), accuracy_b=0.68)
    r = across_seeds(per_seed, _accuracy, n_boot=100, seed=1)
    test_variance = np.mean([np.var(sa - sb) / len(y) for y, sa, sb in per_seed])  # sd ≈ 0.029, as large as τ
    assert r.within_seed_sd == pytest.approx(np.sqrt(test_variance), rel=0.02)
    assert r.between_seed_sd == pytest.approx(np.std(seed_effects, ddof=1), rel=0.12)


def test_across_seeds_identical_predictions():
    rng = np.random.default_rng(8)
    per_seed = []
    for _ in range(3):
        labels, scores = _scored(rng, 100)
        per_seed.append((labels, scores, scores.copy()))
    r = across_seeds(per_seed, RESAMPLED_METRICS["roc_auc"], n_boot=200)
    assert (r.mean_difference, r.std_difference, r.ci_low, r.ci_high, r.p_value) == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert (r.within_seed_sd, r.between_seed_sd) == (0.0, 0.0)


def test_across_seeds_with_an_undefined_seed_reports_nothing_pooled():
    """ROC-AUC is undefined on a one-class test split: that seed's entry and every value over seeds are None."""
    rng = np.random.default_rng(12)
    per_seed = [_noisy_pairs(rng, 1)[0], (np.zeros(50, dtype=int), rng.random(50), rng.random(50))]
    r = across_seeds(per_seed, roc_auc_resampled, n_boot=100)
    assert r.per_seed[0].difference is not None and r.per_seed[1].difference is None
    assert (r.mean_a, r.mean_difference, r.std_difference, r.within_seed_sd, r.between_seed_sd, r.ci_low, r.p_value) == (None,) * 7


# --- several seeds on one shared test set ---------------------------------------------------------------


def _mean_score(labels, scores, counts):
    """The mean score over functions as a resampled metric: d_s is then exactly a mean of per-function differences."""
    return counts @ scores / counts.sum(axis=1)


def _shared_test_study(rng, n_seeds, tau, true_difference, n=400, unshared=0.1):
    """All seeds tested on ONE test set of n functions (a group or given split): function i scores a_i for A and b_i
    for B whatever the seed (a_i ~ N(0.6 + true_difference, 0.5²), b_i ~ N(0.6, 0.5²): the common test-sample
    noise), plus A's seed effect u_s ~ N(0, tau²) and a little per-seed, per-function noise (sd ``unshared``).
    E[d_s] = true_difference. Returns the per-seed triples and the u_s."""
    a, b = rng.normal(0.6 + true_difference, 0.5, n), rng.normal(0.6, 0.5, n)
    seed_effects = rng.normal(0, tau, size=n_seeds)
    labels = np.ones(n, dtype=int)
    return [(labels, a + u + unshared * rng.normal(size=n), b + unshared * rng.normal(size=n)) for u in seed_effects], seed_effects


@pytest.mark.parametrize("seed_variance, test_variance", [(0.002, 0.0), (0.0, 0.002), (0.001, 0.002), (1e-4, 1e-3), (0.01, 1e-3)])
def test_shared_test_interval_is_banerjees_and_its_p_matches_it(seed_variance, test_variance):
    """With no test part it is scipy's t interval and t-test; with no seed part the normal interval and 2Φ(-|d|/se);
    between them the half-width √(t² a + z² b), and p is the α at which that interval's end reaches 0 (checked by
    recomputing the interval at confidence 1 - p), between the p of either part alone and the t-on-the-total p."""
    mean, df = 0.1, 2
    low, high, p = shared_test_interval(mean, seed_variance, test_variance, df)
    t, z = sps.t.ppf(0.975, df), sps.norm.ppf(0.975)
    assert (low, high) == pytest.approx((mean - np.hypot(t * np.sqrt(seed_variance), z * np.sqrt(test_variance)),
                                         mean + np.hypot(t * np.sqrt(seed_variance), z * np.sqrt(test_variance))), rel=1e-11)
    if test_variance == 0:
        assert p == pytest.approx(2 * sps.t.cdf(-mean / np.sqrt(seed_variance), df), rel=1e-11)
    elif seed_variance == 0:
        assert p == pytest.approx(2 * sps.norm.cdf(-mean / np.sqrt(test_variance)), rel=1e-11)
    else:
        assert max(2 * sps.t.cdf(-mean / np.sqrt(seed_variance), df), 2 * sps.norm.cdf(-mean / np.sqrt(test_variance))) < p
        assert p < 2 * sps.t.cdf(-mean / np.sqrt(seed_variance + test_variance), df)
    edge = shared_test_interval(mean, seed_variance, test_variance, df, confidence=1 - p)[0]
    assert edge == pytest.approx(0.0, abs=1e-10 * (high - low))
    assert shared_test_interval(-mean, seed_variance, test_variance, df)[2] == p
    assert shared_test_interval(0.0, seed_variance, test_variance, df)[2] == 1.0


def test_shared_test_interval_degenerate_cases():
    assert shared_test_interval(0.02, 0.0, 0.0, 2) == (0.02, 0.02, 0.0)
    assert shared_test_interval(0.0, 0.0, 0.0, 2) == (0.0, 0.0, 1.0)
    assert 0 <= shared_test_interval(50.0, 1e-4, 1e-4, 2)[2] < 1e-5  # far out: tiny, never negative or NaN
    with pytest.raises(ValueError, match=">= 0"):
        shared_test_interval(0.1, -1e-3, 1e-3, 2)


def test_across_seeds_on_a_shared_test_set_draws_one_resample_for_every_seed():
    """Each seed's entry is paired_bootstrap on its triple with the same seed (so the seeds saw the same resamples);
    seeds with identical predictions have sd 0 and the pooled interval is d ± z·se of the shared test set, where the
    independent-test t interval collapses to [d, d] with p = 0 (the bug); other labels per seed are refused."""
    rng = np.random.default_rng(21)
    labels, scores_a = _scored(rng, 150)
    per_seed = [(labels, np.clip(scores_a + 0.1 * rng.normal(size=150), 0, 1), rng.random(150)) for _ in range(3)]
    r = across_seeds(per_seed, f1_resampled, n_boot=300, seed=4, shared_test=True)
    assert r.method == "student_t_shared_test"
    assert r.per_seed == tuple(paired_bootstrap(*t, f1_resampled, n_boot=300, seed=4) for t in per_seed)
    d = np.array([s.difference for s in r.per_seed])
    assert r.mean_difference == pytest.approx(d.mean()) and r.std_difference == pytest.approx(d.std(ddof=1))
    # the sd of a mean of correlated values is at most the mean of their sds, and here (shared functions) close to it
    assert 0.7 * np.mean([s.std_error for s in r.per_seed]) < r.shared_test_sd <= np.mean([s.std_error for s in r.per_seed])
    assert (r.ci_low, r.ci_high, r.p_value) == pytest.approx(shared_test_interval(d.mean(), d.var(ddof=1) / 3, r.shared_test_sd**2, 2))

    same = [per_seed[0]] * 3
    r = across_seeds(same, f1_resampled, n_boot=300, seed=4, shared_test=True)
    alone = paired_bootstrap(*per_seed[0], f1_resampled, n_boot=300, seed=4)
    assert (r.std_difference, r.shared_test_sd) == pytest.approx((0.0, alone.std_error), abs=1e-15)
    half_width = sps.norm.ppf(0.975) * alone.std_error
    assert (r.ci_low, r.ci_high) == pytest.approx((alone.difference - half_width, alone.difference + half_width), rel=1e-9)
    assert r.p_value == pytest.approx(2 * sps.norm.cdf(-abs(alone.difference) / alone.std_error), rel=1e-6)
    independent = across_seeds(same, f1_resampled, n_boot=300, seed=4)
    assert independent.ci_high - independent.ci_low < 1e-12 and independent.p_value < 1e-12  # sd ≈ 0: a zero-width interval

    assert across_seeds(per_seed[:1], f1_resampled, n_boot=300, seed=4, shared_test=True).method == "bootstrap_one_seed"
    with pytest.raises(ValueError, match="same labels"):
        across_seeds([per_seed[0], (1 - labels, *per_seed[1][1:])], f1_resampled, n_boot=10, shared_test=True)


def test_pooled_interval_on_a_shared_test_set_covers_the_true_difference():
    """1000 simulated studies of S = 3 seeds on one shared test set of 400 functions: seed effect τ = 0.035 (τ²/S ≈ 4e-4)
    and a common test-sample noise of variance ≈ 1.25e-3 in d̄ (about 3/4 of the total). The shared-test interval
    covers the true difference 0.03 in 0.94-0.99 of them (observed 0.974-0.983 over 6 simulation seeds: Banerjee's
    interval is conservative, ≈ 0.977 at this variance ratio). The independent-test t interval on the same data, which
    sees only what varies between seeds, covers 0.83-0.86; d̄ ± t_2·√(s²/S + v_boot), the t quantile on the whole
    standard error, covers 0.999-1.0 (too wide: t_2 = 4.30 applied to a variance known from 100 resamples)."""
    rng = np.random.default_rng(3)
    truth, studies = 0.03, 1000
    t_critical = student_t_quantile(0.975, 2)
    covered = independent_covered = t_on_total_covered = 0
    for study in range(studies):
        per_seed, _ = _shared_test_study(rng, 3, 0.035, truth)
        r = across_seeds(per_seed, _mean_score, n_boot=100, seed=study, shared_test=True)
        covered += r.ci_low <= truth <= r.ci_high
        t_on_total_covered += abs(r.mean_difference - truth) <= t_critical * np.sqrt(r.std_difference**2 / 3 + r.shared_test_sd**2)
        independent = across_seeds(per_seed, _mean_score, n_boot=2, seed=study)  # today's method on a shared test set
        independent_covered += independent.ci_low <= truth <= independent.ci_high
    assert 0.94 <= covered / studies <= 0.99, covered / studies
    assert independent_covered / studies < 0.9 and t_on_total_covered / studies > 0.99


def test_variance_decomposition_on_a_shared_test_set():
    """150 seeds on one test set of 500 functions, seed sd τ = 0.03, per-function difference sd ≈ 0.7: shared_test_sd
    matches √(var(δ̄_i)/n), δ̄_i the per-function difference averaged over seeds (for a mean metric the bootstrap
    variance of d̄ is exactly that, up to resampling noise of about 4% at 300 resamples; observed within 11% over 5
    simulation seeds), and between_seed_sd the sd of the drawn seed effects (observed within 3%). The independent-test decomposition √max(0, s² - within²) subtracts a
    test-sample variance that s² does not hold here and reports 0."""
    rng = np.random.default_rng(22)
    per_seed, seed_effects = _shared_test_study(rng, 150, 0.03, 0.02, n=500)
    r = across_seeds(per_seed, _mean_score, n_boot=300, seed=1, shared_test=True)
    delta = np.mean([sa - sb for _, sa, sb in per_seed], axis=0)  # (n,)
    assert r.shared_test_sd == pytest.approx(np.sqrt(np.var(delta) / len(delta)), rel=0.15)
    assert r.between_seed_sd == pytest.approx(np.std(seed_effects, ddof=1), rel=0.12)
    assert across_seeds(per_seed, _mean_score, n_boot=300, seed=1).between_seed_sd < 0.5 * np.std(seed_effects, ddof=1)


def test_delong_p_stays_positive_for_a_large_z():
    """Far apart scorers: z of about 20, where 2(1 - Φ(|z|)) in floating point is 0; the p must be the
    normal tail 2Φ(-|z|) (scipy.stats.norm.sf, an independent implementation)."""
    rng = np.random.default_rng(0)
    labels = (rng.random(4000) < 0.3).astype(int)
    good, bad = rng.normal(size=4000) + 2.0 * labels, rng.normal(size=4000) + 1.0 * labels
    result = delong_test(labels, good, bad)
    assert 10 < result.z < 35 and result.p_value > 0  # 2(1 - Φ(z)) is exactly 0 in float64 from z ≈ 8.3
    assert result.p_value == pytest.approx(2 * sps.norm.sf(abs(result.z)), rel=1e-9)
