"""The report's test-set interval of a metric averaged over runs (stats.bootstrap_mean_interval).

Truth: a binormal scorer (negatives N(0, 1), positives N(μ, 1)) has ROC-AUC Φ(μ/√2), so the
coverage of the interval over many simulated test sets can be counted against a known value.
"""

from statistics import NormalDist

import numpy as np

from ssmscope.stats import bootstrap_mean_interval, roc_auc_resampled


def _test_set(rng, n, mu):
    labels = (rng.random(n) < 0.3).astype(int)
    labels[:2] = [0, 1]
    return labels, rng.normal(size=n) + mu * labels


def test_the_interval_of_a_mean_over_runs_covers_the_true_value_95_times_in_100():
    rng = np.random.default_rng(1)
    mus = (0.8, 1.4)  # two "seeds" of different quality: the mean of their AUCs is the target
    truth = np.mean([NormalDist().cdf(mu / np.sqrt(2)) for mu in mus])
    repetitions, covered, widths = 300, 0, []
    for i in range(repetitions):
        runs = [_test_set(rng, 150, mu) for mu in mus]
        low, high = bootstrap_mean_interval(runs, roc_auc_resampled, n_boot=400, seed=i)
        covered += low <= truth <= high
        widths.append(high - low)
    # the percentile interval of an AUC covers a little less than 95% at n = 150 (measured 0.92-0.93
    # over two seeds of this simulation); 300 repetitions give a binomial sd of 1.5 points
    assert 0.89 <= covered / repetitions <= 0.985, covered / repetitions
    # the width of a mean of two independent AUC estimates: 2 · 1.96 · sd(mean) with sd from simulation
    sims = [np.mean([roc_auc_resampled(*_test_set(rng, 150, mu), np.ones((1, 150)))[0] for mu in mus]) for _ in range(400)]
    # measured 0.97-0.99; a 90% interval gives 0.82-0.84, one that forgets to average over runs ~1.4
    assert abs(np.median(widths) / (2 * 1.96 * np.std(sims)) - 1) < 0.10


def test_a_metric_undefined_everywhere_has_no_interval():
    one_class = (np.zeros(20, dtype=int), np.linspace(0, 1, 20))
    assert bootstrap_mean_interval([one_class], roc_auc_resampled, n_boot=50) is None
