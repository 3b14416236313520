"""Is detector A better than detector B? Paired tests on the same test functions.

Pure numpy functions, arrays in, frozen dataclass out. Every test below is *paired*: A and B scored
the same n test functions, and what varies from one test sample to the next varies for both at once,
so the comparison resamples (or conditions on) functions, never A and B separately.

    paired_bootstrap   any metric: percentile interval and p-value of metric(A) - metric(B),
                       resampling the n test functions with replacement (the same draw for A and B)
    delong_test        ROC-AUC: DeLong's asymptotic variance of AUC_A - AUC_B, z test and interval
    mcnemar_exact      hard decisions: exact binomial test on the functions where A and B disagree
    across_seeds       several training seeds: per-seed paired bootstraps, and over seeds the t interval
                       and t-test of the per-seed differences (each seed with its own split), or, when
                       every seed was tested on one shared test set, Banerjee's interval combining the
                       seeds' t part with the bootstrap variance of the mean difference over that test
                       set (shared_test_interval); with the variance split into a test-sample
                       (within-seed) and a training (between-seed) part
    bootstrap_mean_interval   test-set interval of one metric's mean over runs (independent or shared test sets)
    student_t_cdf, student_t_quantile   Student's t in plain Python (scipy is only a test dependency)

Metrics for the bootstrap are "resampled metrics": ``metric(labels, scores, counts)`` with
``counts`` of shape (B, n) saying how often each test function was drawn in each of B resamples,
returning the metric of every resample, shape (B,), NaN where it is undefined. A resample that
draws function i twice *is* the data set with function i written twice, so this form computes
exactly the metric of the resampled data without building it, and all B resamples at once. The
point estimate is the same function at counts = 1. :data:`RESAMPLED_METRICS` holds the ones that
``ssmscope compare`` reports, equal (tests: to 1e-12) to :mod:`ssmscope.train.metrics`.

References: Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 13 (percentile
interval) and ch. 16 (tests); Davison & Hinkley (1997), Bootstrap Methods and their Application,
ch. 4 (p-values); Phipson & Smyth (2010), Stat. Appl. Genet. Mol. Biol. 9(1):39 (never p = 0);
DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44(3):837-845; Sun & Xu (2014), IEEE Signal
Processing Letters 21(11):1389-1393; McNemar (1947), Psychometrika 12(2):153-157; Abramowitz &
Stegun (1964), Handbook of Mathematical Functions, 26.5.27 and 26.7.1; Press, Teukolsky, Vetterling
& Flannery (2007), Numerical Recipes, 3rd ed., §6.4 (incomplete beta continued fraction); Hartung &
Knapp (2001), Stat. Med. 20(12):1771-1782; IntHout, Ioannidis & Borm (2014), BMC Med. Res. Methodol.
14:25; DerSimonian & Laird (1986), Control. Clin. Trials 7(3):177-188; Banerjee (1960), Sankhyā 22:357-358
(approximate interval for linear functions of means when the variances are not equal).
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np

from .config import DECISION_THRESHOLD
from .train.metrics import VD_MAX_FPR

ResampledMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (labels (n,), scores (n,), counts (B, n)) -> (B,)
RESAMPLE_CHUNK = 256  # resamples evaluated together: bounds memory at a few (256, n) float64 arrays


# --- metrics of many resamples at once ------------------------------------------------------------


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0 where den = 0 (the convention of ssmscope.train.metrics)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def confusion_counts(labels: np.ndarray, predicted: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """(tp, fp, fn, tn) of every resample, each (B,): tp = Σ_i counts_bi [y_i = 1, ŷ_i = 1], etc."""
    y, p = np.asarray(labels) == 1, np.asarray(predicted) == 1  # (n,)
    cells = np.stack([y & p, ~y & p, y & ~p, ~y & ~p], axis=1).astype(np.float64)  # (n, 4)
    tp, fp, fn, tn = (np.asarray(counts, dtype=np.float64) @ cells).T  # (B, 4) -> four (B,)
    return tp, fp, fn, tn


def f1_resampled(labels, scores, counts) -> np.ndarray:
    """Vulnerable-class F1 = 2tp / (2tp + fp + fn) at "vulnerable when p > 0.5" (0 if the denominator is 0).

    For F1 at another threshold t pass the decisions (scores >= t) as 0/1 scores."""
    tp, fp, fn, _ = confusion_counts(labels, np.asarray(scores) > DECISION_THRESHOLD, counts)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def f1_weighted_resampled(labels, scores, counts) -> np.ndarray:
    """(n_0 F1_0 + n_1 F1_1) / n with F1_0 = 2tn / (2tn + fn + fp), n_c the true count of class c."""
    tp, fp, fn, tn = confusion_counts(labels, np.asarray(scores) > DECISION_THRESHOLD, counts)
    f1_pos, f1_neg = _ratio(2 * tp, 2 * tp + fp + fn), _ratio(2 * tn, 2 * tn + fn + fp)
    return _ratio((tn + fp) * f1_neg + (tp + fn) * f1_pos, tp + fp + fn + tn)


def mcc_resampled(labels, scores, counts) -> np.ndarray:
    """(tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)), 0 when a factor is 0."""
    tp, fp, fn, tn = confusion_counts(labels, np.asarray(scores) > DECISION_THRESHOLD, counts)
    return _ratio(tp * tn - fp * fn, np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))


def _ranked_groups(labels, scores, counts) -> tuple[np.ndarray, np.ndarray]:
    """(pos, neg), each (B, G): how many vulnerable / safe functions each resample holds at each of the
    G distinct scores, highest score first. Scores absent from a resample have pos = neg = 0, which
    leaves every sum below unchanged, so the sums equal those over the resample's own distinct scores."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")  # (n,) highest first
    starts = np.concatenate([[0], np.flatnonzero(np.diff(scores[order])) + 1])  # (G,) first position of each distinct score
    drawn = np.asarray(counts, dtype=np.float64)[:, order]  # (B, n)
    pos = np.add.reduceat(drawn * (np.asarray(labels)[order] == 1), starts, axis=1)  # (B, G)
    return pos, np.add.reduceat(drawn, starts, axis=1) - pos


def roc_auc_resampled(labels, scores, counts) -> np.ndarray:
    """P(score of a random positive > a random negative), ties 1/2; NaN for one class.

    With pos_k, neg_k the counts at the k-th highest distinct score, N = Σ neg and P = Σ pos:
    AUC = Σ_k pos_k (N - Σ_{j<=k} neg_j + neg_k / 2) / (P N)   (negatives strictly below, plus half the ties)."""
    pos, neg = _ranked_groups(labels, scores, counts)  # (B, G)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)  # (B,)
    below = n_neg[:, None] - np.cumsum(neg, axis=1)  # (B, G) negatives scoring strictly lower
    auc = _ratio(np.sum(pos * (below + neg / 2), axis=1), n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def pr_auc_resampled(labels, scores, counts) -> np.ndarray:
    """Average precision Σ_k (R_k - R_{k-1}) P_k = Σ_k (pos_k / P) TP_k / (TP_k + FP_k), TP_k and FP_k
    the cumulative counts down to the k-th highest distinct score; NaN for one class."""
    pos, neg = _ranked_groups(labels, scores, counts)  # (B, G)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)  # (B,)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)  # (B, G)
    ap = _ratio(np.sum(pos * _ratio(tp, tp + fp), axis=1), n_pos)
    return np.where((n_pos > 0) & (n_neg > 0), ap, np.nan)


def vd_score_resampled(labels, scores, counts, max_fpr: float = VD_MAX_FPR) -> np.ndarray:
    """min over thresholds t with FP(t) <= max_fpr·N of FN(t) / P, vulnerable when p >= t; t above every
    score (FNR 1) is always allowed. Lower is better; NaN for one class."""
    pos, neg = _ranked_groups(labels, scores, counts)  # (B, G)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)  # (B,)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)  # (B, G)
    best_tp = np.max(np.where(fp <= max_fpr * n_neg[:, None], tp, 0.0), axis=1)  # (B,)
    return np.where((n_pos > 0) & (n_neg > 0), 1 - _ratio(best_tp, n_pos), np.nan)


RESAMPLED_METRICS: dict[str, ResampledMetric] = {
    "f1": f1_resampled,
    "f1_weighted": f1_weighted_resampled,
    "mcc": mcc_resampled,
    "roc_auc": roc_auc_resampled,
    "pr_auc": pr_auc_resampled,
    "vd_score": vd_score_resampled,
}


# --- the paired bootstrap -------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapComparison:
    """metric(A), metric(B), their difference A - B, its percentile interval, bootstrap p-value and
    bootstrap standard error (sd of the resampled differences, ddof 1; None below 2 resamples).
    None where the metric is undefined on the data (e.g. ROC-AUC of a one-class test set)."""

    a: float | None
    b: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    std_error: float | None
    confidence: float
    n_boot: int
    n_used: int  # resamples on which both metrics were defined (the others are left out)


def resample_counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """(n_resamples, n) float64: counts[b, i] = how often function i is among n draws with replacement."""
    drawn = rng.integers(0, n, size=(n_resamples, n))  # (B, n) drawn function indices
    flat = drawn + n * np.arange(n_resamples)[:, None]  # (B, n) index into the flattened (B, n) counts
    return np.bincount(flat.ravel(), minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def _resampled_differences(labels, scores_a, scores_b, metric_fn: ResampledMetric, n_resamples: int, rng) -> np.ndarray:
    """(n_resamples,) metric(A*) - metric(B*), each resample * drawing the same functions for A and B."""
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, RESAMPLE_CHUNK):
        counts = resample_counts(rng, len(labels), min(RESAMPLE_CHUNK, n_resamples - start))  # (C, n)
        out[start:start + len(counts)] = metric_fn(labels, scores_a, counts) - metric_fn(labels, scores_b, counts)
    return out


def _interval_and_p(differences: np.ndarray, confidence: float) -> tuple[float | None, float | None, float | None, int]:
    """Percentile interval, bootstrap p-value and count of the defined (non-NaN) ``differences``.

    Interval: the (1-c)/2 and (1+c)/2 quantiles (numpy's linear interpolation) of the B defined D*_b.
    p-value: p = min(1, 2 min(1 + #{D*_b <= 0}, 1 + #{D*_b >= 0}) / (B + 1)), i.e. the smallest α whose
    percentile interval excludes 0 (twice the smaller tail beyond 0), with the +1 that keeps a finite
    bootstrap from ever reporting p = 0 (Davison & Hinkley 1997, ch. 4; Phipson & Smyth 2010).
    Equal predictions give D*_b = 0 for every b, so p = 1 and the interval is [0, 0]."""
    d = differences[~np.isnan(differences)]
    if d.size == 0:
        return None, None, None, 0
    low, high = np.quantile(d, [(1 - confidence) / 2, (1 + confidence) / 2])
    tail = min(np.count_nonzero(d <= 0), np.count_nonzero(d >= 0))
    return float(low), float(high), min(1.0, 2 * (1 + int(tail)) / (d.size + 1)), int(d.size)


def _defined(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _check_paired(labels, *scores) -> tuple[np.ndarray, ...]:
    labels = np.asarray(labels, dtype=np.int64)
    arrays = [np.asarray(s, dtype=np.float64) for s in scores]
    if labels.ndim != 1 or any(a.shape != labels.shape for a in arrays):
        raise ValueError(f"labels and scores must be 1-D of one length, got shapes {[labels.shape] + [a.shape for a in arrays]}")
    return labels, *arrays


def _check_bootstrap(n_boot: int, confidence: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def _point_estimates(labels, scores_a, scores_b, metric_fn: ResampledMetric) -> tuple[float, float]:
    """(metric(A), metric(B)) on the test set itself (counts = 1), NaN where undefined."""
    everything = np.ones((1, len(labels)))  # (1, n): the test set itself
    return float(metric_fn(labels, scores_a, everything)[0]), float(metric_fn(labels, scores_b, everything)[0])


def _bootstrap_comparison(a: float, b: float, differences, confidence: float, n_boot: int) -> BootstrapComparison:
    """The BootstrapComparison of point estimates ``a``, ``b`` and resampled differences (None: a or b undefined)."""
    if math.isnan(a) or math.isnan(b):
        return BootstrapComparison(_defined(a), _defined(b), None, None, None, None, None, confidence, n_boot, 0)
    ci_low, ci_high, p_value, n_used = _interval_and_p(differences, confidence)
    std_error = float(np.std(differences[~np.isnan(differences)], ddof=1)) if n_used >= 2 else None
    return BootstrapComparison(a, b, a - b, ci_low, ci_high, p_value, std_error, confidence, n_boot, n_used)


def _paired_bootstrap(labels, scores_a, scores_b, metric_fn: ResampledMetric, n_boot: int, rng, confidence: float) -> BootstrapComparison:
    """:func:`paired_bootstrap` on checked arrays, drawing from the generator ``rng``."""
    a, b = _point_estimates(labels, scores_a, scores_b, metric_fn)
    if math.isnan(a) or math.isnan(b):
        return _bootstrap_comparison(a, b, None, confidence, n_boot)
    differences = _resampled_differences(labels, scores_a, scores_b, metric_fn, n_boot, rng)  # (n_boot,)
    return _bootstrap_comparison(a, b, differences, confidence, n_boot)


def paired_bootstrap(
    labels, scores_a, scores_b, metric_fn: ResampledMetric, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> BootstrapComparison:
    """metric(A) - metric(B) on n test functions, with a paired percentile bootstrap interval and p-value.

    Each of the ``n_boot`` resamples draws n test functions with replacement, the same draw for A and
    B, and records D*_b = metric(A*_b) - metric(B*_b). The interval is the percentile interval of the
    D*_b (Efron & Tibshirani 1993, ch. 13), the p-value the smallest α whose interval excludes 0
    (see :func:`_interval_and_p`) and std_error their sd. A resample on which the metric of A or B is
    undefined (NaN: one class drawn, for ROC-AUC, PR-AUC and VD-S) is left out, so the interval is
    conditional on both classes being present, as the metric itself is; ``n_used`` says how many
    resamples remained.

    ``metric_fn(labels, scores, counts)`` is a resampled metric (module docstring), e.g. accuracy:
    ``lambda y, s, counts: counts @ ((s > 0.5) == y) / counts.sum(axis=1)``.
    """
    labels, scores_a, scores_b = _check_paired(labels, scores_a, scores_b)
    _check_bootstrap(n_boot, confidence)
    return _paired_bootstrap(labels, scores_a, scores_b, metric_fn, n_boot, np.random.default_rng(seed), confidence)


# --- Student's t distribution --------------------------------------------------------------------


def _incomplete_beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (Press et al. 2007, Numerical Recipes, 3rd ed., §6.4):

        I_x(a, b) = x^a (1-x)^b / (a B(a, b)) · 1/(1+ d_1/(1+ d_2/(1+ ...))),
        d_{2m+1} = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1)),   d_{2m} = m(b-m) x / ((a+2m-1)(a+2m)),

    evaluated by the modified Lentz method. Returns the fraction (the part after the prefactor); it
    converges fast for x < (a+1)/(a+b+2), the only case :func:`_regularized_incomplete_beta` uses."""
    tiny, eps = 1e-300, 4 * sys.float_info.epsilon
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # d_{2m}
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # d_{2m+1}
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < eps:
            return fraction
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _regularized_incomplete_beta(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b) for a, b > 0, 0 <= x <= 1 and y = 1 - x, to about 1e-14 relative.

    y is passed by the caller, computed without cancellation, so that x near 1 loses nothing. Below
    x = (a+1)/(a+b+2) the continued fraction at x, above it 1 - I_y(b, a) (the fraction at y), so the
    fraction always converges fast and a small I is never the difference of two numbers near 1; the
    prefactor x^a y^b / B(a, b) is taken in logarithms (math.lgamma)."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _incomplete_beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _incomplete_beta_fraction(b, a, y) / b


def _check_df(df: float) -> None:
    if not df > 0 or math.isinf(df):
        raise ValueError(f"degrees of freedom must be a positive finite number, got {df}")


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's T with ``df`` > 0 degrees of freedom (not only integers).

    P(|T| > |t|) = I_x(df/2, 1/2) with x = df / (df + t²) = 1 / (1 + r²), r = t / √df (Abramowitz &
    Stegun 26.7.1 with 26.5.27), so P(T <= t) = I_x / 2 for t <= 0 and 1 - I_x / 2 for t > 0; 1 - x is
    passed as r² / (1 + r²), exact for small t. The lower tail is computed directly, never as 1 minus
    something, so 2·student_t_cdf(-|t|, df), the two-sided p-value, keeps its relative accuracy however
    small it is (tests: scipy.stats.t.cdf to 1e-11 relative for df 1-30 and |t| <= 50). Beyond
    |t| = 1e150 √df (r² near overflow) the tail is reported as 0."""
    _check_df(df)
    if math.isnan(t):
        return math.nan
    r2 = (t / math.sqrt(df)) ** 2 if abs(t) < 1e150 * math.sqrt(df) else math.inf
    x, y = (1 / (1 + r2), r2 / (1 + r2)) if r2 < math.inf else (0.0, 1.0)
    tail = 0.5 * _regularized_incomplete_beta(df / 2, 0.5, x, y)  # P(T > |t|) = P(T < -|t|)
    return tail if t <= 0 else 1.0 - tail


@functools.lru_cache(maxsize=256)  # pure; compare asks for the same (0.975, S - 1) for every metric
def student_t_quantile(q: float, df: float) -> float:
    """t with P(T <= t) = ``q``, 0 < q < 1, for Student's T with ``df`` > 0 degrees of freedom.

    The tail probability p = min(q, 1 - q) = P(T < -|t|) falls as θ = arctan(|t| / √df) rises on
    [0, π/2), so θ is found by bisection (20 halvings) for a start |t| = √df tanθ. Newton steps in
    u = log|t| then solve log P(T < -|t|) = log p, where the tail is close to a power of |t| (so a
    bisection that cannot resolve θ near π/2 still converges): d/du log F(-t) = -t f(t) / F(-t), with
    the density f(t) = Γ((df+1)/2) / (√(df π) Γ(df/2)) (1 + t²/df)^(-(df+1)/2). The sign is that of
    q - 1/2; ±inf where |t| is beyond the float range. Tests: scipy.stats.t.ppf to 1e-11 relative for
    df 1-30 and 1e-10 <= q <= 1 - 1e-6."""
    _check_df(df)
    if not 0 < q < 1:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    p = min(q, 1.0 - q)
    if p == 0.5:
        return 0.0
    low, high = 0.0, math.pi / 2
    for _ in range(20):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_cdf(-math.sqrt(df) * math.tan(middle), df) > p else (low, middle)
    t = math.sqrt(df) * math.tan((low + high) / 2)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    for _ in range(50):
        tail = student_t_cdf(-t, df)
        if tail == 0.0:
            break
        log_density = log_norm - (df + 1) / 2 * math.log1p((t / math.sqrt(df)) ** 2)
        step = (math.log(tail) - math.log(p)) / math.exp(math.log(t) + log_density - math.log(tail))
        t *= math.exp(min(step, 700.0))  # a t past the float range becomes inf, whose tail 0 ends the loop
        if abs(step) < 1e-15:
            break
    return t if q > 0.5 else -t


# --- several training seeds ----------------------------------------------------------------------


SHARED_TEST_METHOD = "student_t_shared_test"


@dataclass(frozen=True)
class SeedComparison:
    """A against B over S training seeds.

    Per seed s: ``per_seed[s]``, the paired bootstrap of that seed's test functions (a, b, difference
    d_s = a - b, its interval, p-value and bootstrap std_error). Over seeds: mean_a, mean_b,
    mean_difference d̄, std_difference s (sd of the d_s, ddof 1) and the pooled interval and p-value.
    ``method`` says how they were pooled: "student_t" (S >= 2 seeds, each with its own test split: the
    t interval and one-sample t-test over the d_s), "student_t_shared_test" (S >= 2 seeds tested on one
    shared test set: :func:`shared_test_interval` of the seed part s²/S and the bootstrap variance of d̄
    over resamples of that test set, whose sd is ``shared_test_sd``) or "bootstrap_one_seed" (S = 1: the single seed's
    paired bootstrap). within_seed_sd² is the mean of the per-seed bootstrap variances (one seed's
    test-sample variance); between_seed_sd² = max(0, s² - w²) estimates the training-seed variance, w²
    the part of the test-sample variance that s² holds: within_seed_sd² when every seed has its own
    test split, the part that differs between seeds when they share one (across_seeds). None where
    undefined; shared_test_sd is None unless the method is "student_t_shared_test"."""

    per_seed: tuple[BootstrapComparison, ...]
    mean_a: float | None
    mean_b: float | None
    mean_difference: float | None
    std_difference: float | None
    within_seed_sd: float | None
    between_seed_sd: float | None
    shared_test_sd: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    method: str
    confidence: float
    n_boot: int


def _t_interval(mean: float, std_error: float, df: float, confidence: float) -> tuple[float, float, float]:
    """mean ± t_{df,(1+c)/2} · std_error and p = 2 P(T_df < -|mean| / std_error); with std_error = 0 the
    interval is [mean, mean] and p = 1 if mean = 0, else 0 (the limit |t| -> ∞)."""
    if std_error == 0:
        return mean, mean, 1.0 if mean == 0 else 0.0
    half_width = student_t_quantile((1 + confidence) / 2, df) * std_error
    return mean - half_width, mean + half_width, min(1.0, 2 * student_t_cdf(-abs(mean / std_error), df))


def t_over_seeds(differences, confidence: float = 0.95) -> tuple[float, float, float]:
    """(ci_low, ci_high, p_value): t interval and one-sample t-test of mean 0 over S >= 2 per-seed differences.

    d̄ ± t_{S-1,(1+c)/2} · s/√S and p = 2 P(T_{S-1} < -|t|), t = d̄ / (s/√S), s the sd (ddof 1): the
    values of scipy.stats.t.interval and scipy.stats.ttest_1samp. With s = 0 the interval is [d̄, d̄] and
    p = 1 if d̄ = 0, else 0 (the limit |t| -> ∞; scipy gives NaN)."""
    d = np.asarray(differences, dtype=np.float64)
    n_seeds = d.size
    if n_seeds < 2:
        raise ValueError(f"the t interval needs at least 2 seeds, got {n_seeds}")
    return _t_interval(float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n_seeds), n_seeds - 1, confidence)


def _banerjee_half_width(alpha: float, seed_variance: float, test_variance: float, df: float) -> float:
    """√(t²_{df,1-α/2} · seed_variance + z²_{1-α/2} · test_variance) (a zero variance drops its term, even at t = ∞)."""
    t2 = student_t_quantile(alpha / 2, df) ** 2 if seed_variance > 0 else 0.0  # q = α/2 keeps tiny α exact
    z2 = NormalDist().inv_cdf(alpha / 2) ** 2 if test_variance > 0 else 0.0
    return math.sqrt(t2 * seed_variance + z2 * test_variance)


def _banerjee_p(distance: float, seed_variance: float, test_variance: float, df: float) -> float:
    """The smallest α whose interval (:func:`shared_test_interval`) excludes a point ``distance`` > 0 from its
    centre: the root of h(α) = distance, h the half-width, decreasing in α.

    Bracket: t >= z gives max(t√a, z√b) <= h(α) <= t√(a + b), so the root lies between
    p_lo = max(2 P(T_df < -d/√a), 2 Φ(-d/√b)) and p_hi = 2 P(T_df < -d/√(a + b)). It is found by the
    Illinois variant of regula falsi on log h against log α (smooth and monotone), to ~1e-12 relative."""
    a, b = seed_variance, test_variance
    upper = min(1.0, 2 * student_t_cdf(-distance / math.sqrt(a + b), df))
    lower = max(2 * student_t_cdf(-distance / math.sqrt(a), df) if a > 0 else 0.0,
                2 * NormalDist().cdf(-distance / math.sqrt(b)) if b > 0 else 0.0)
    if upper <= lower or upper == 0.0:  # b = 0 (then p is the t-test's), or beyond the float range
        return upper
    lo, hi = max(lower, 1e-300), min(upper, 1 - 1e-12)  # h(1) = 0 has no logarithm

    def g(u: float) -> float:  # > 0 while the interval at α = e^u still holds the point
        return math.log(_banerjee_half_width(math.exp(u), a, b, df)) - math.log(distance)

    u0, u1 = math.log(lo), math.log(hi)
    g0, g1 = g(u0), g(u1)
    if g0 <= 0 or g1 >= 0:  # the root is below 1e-300 or above 1 - 1e-12
        return lo if g0 <= 0 else upper
    side, u = 0, u1
    for _ in range(200):
        u = (u0 * g1 - u1 * g0) / (g1 - g0)
        gu = g(u)
        if abs(gu) < 1e-14 or u1 - u0 < 1e-13:
            break
        if gu > 0:
            u0, g0 = u, gu
            g1, side = (g1 / 2, 1) if side == 1 else (g1, 1)
        else:
            u1, g1 = u, gu
            g0, side = (g0 / 2, -1) if side == -1 else (g0, -1)
    return min(1.0, math.exp(u))


def shared_test_interval(mean: float, seed_variance: float, test_variance: float, df: float,
                         confidence: float = 0.95) -> tuple[float, float, float]:
    """(ci_low, ci_high, p_value) for a mean difference whose variance is seed_variance (estimated from df + 1
    seeds: t with df degrees of freedom) plus test_variance (a bootstrap variance from many resamples:
    normal), Banerjee's (1960) interval for a sum of two variance components:

        mean ± √(t²_{df,(1+c)/2} · seed_variance + z²_{(1+c)/2} · test_variance),

    and p = the smallest α whose interval at confidence 1 - α excludes 0. With test_variance = 0 it is
    the t interval and t-test; with seed_variance = 0 the normal interval and 2Φ(-|mean|/√test_variance).
    Between the two its coverage is at least c whatever the ratio of the true variances (Banerjee 1960;
    in simulation 0.95-0.98 for df = 2), where the t quantile on √(seed_variance + test_variance) would
    reach 0.99-1.0 once the test part is a sizeable share. Its p lies below that t interval's p,
    2 P(T_df < -|mean| / √(seed_variance + test_variance)), and above the p of either part alone. Both
    variances 0: the interval is [mean, mean] and p is 1 if mean = 0, else 0."""
    if seed_variance < 0 or test_variance < 0 or math.isnan(seed_variance + test_variance):
        raise ValueError(f"variances must be >= 0, got {seed_variance} and {test_variance}")
    if seed_variance == 0 and test_variance == 0:
        return mean, mean, 1.0 if mean == 0 else 0.0
    half_width = _banerjee_half_width(1 - confidence, seed_variance, test_variance, df)
    p_value = 1.0 if mean == 0 else _banerjee_p(abs(mean), seed_variance, test_variance, df)
    return mean - half_width, mean + half_width, p_value


def _shared_resampled_differences(triples: list[tuple], points: list[tuple[float, float]], metric_fn: ResampledMetric,
                                  n_resamples: int, rng) -> np.ndarray:
    """(S, n_resamples): metric(A_s*) - metric(B_s*) for every seed s on the SAME resamples * of the one test
    set the seeds share (one draw of counts per chunk, used for every seed and for A and B); NaN rows
    for seeds whose metric is undefined (``points``). Drawn in the order of :func:`_resampled_differences`,
    so each row is what paired_bootstrap draws for that seed alone with the same generator state."""
    n = len(triples[0][0])
    out = np.full((len(triples), n_resamples), np.nan)
    for start in range(0, n_resamples, RESAMPLE_CHUNK):
        counts = resample_counts(rng, n, min(RESAMPLE_CHUNK, n_resamples - start))  # (C, n)
        for row, (labels, scores_a, scores_b), (a, b) in zip(out, triples, points):
            if not (math.isnan(a) or math.isnan(b)):
                row[start:start + len(counts)] = metric_fn(labels, scores_a, counts) - metric_fn(labels, scores_b, counts)
    return out


def across_seeds(
    per_seed: list[tuple], metric_fn: ResampledMetric, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95,
    shared_test: bool = False,
) -> SeedComparison:
    """Combine paired comparisons of A and B over several training seeds.

    ``per_seed`` holds one (labels, scores_a, scores_b) triple per training seed; A and B share the
    test functions within a triple. ``seed`` seeds the resampling, not a training run; with one seed
    the result is paired_bootstrap(..., seed=seed).

    **Each seed with its own test split** (``shared_test=False``; the random split, which each seed
    draws anew): the triples differ in functions and length, and one generator serves the seeds'
    bootstraps in turn. Each seed trains its own model on its own split and tests it on its own test
    functions, so the per-seed differences d_s are independent, each with variance τ² + σ_s²: τ² from
    training (weights and split) and σ_s² from the finite test sample. Their sample variance s²
    estimates the mean total variance τ² + σ̄² without bias, so the t interval d̄ ± t_{S-1} s/√S and the
    one-sample t-test over the d_s combine both sources (:func:`t_over_seeds`, method "student_t";
    exact for normal d_s; the Hartung-Knapp random-effects interval with equal weights, Hartung & Knapp
    2001, IntHout et al. 2014). The per-seed paired bootstraps measure σ_s² alone: within_seed_sd² is
    the mean of their variances, between_seed_sd² = max(0, s² - within_seed_sd²) the method-of-moments
    estimate of τ² (DerSimonian & Laird 1986). A two-level bootstrap (seeds, then functions) is not
    used: its variance has expectation (1/S)[((S-1)/S) τ² + ((2S-1)/S) σ̄²], counting σ̄² about twice
    and shrinking τ², so with few seeds and a large τ it is too narrow.

    **All seeds tested on one shared test set** (``shared_test=True``, S >= 2; a group split or a given
    split, where the test split does not depend on the seed): every triple must hold the same labels
    (the same functions in the same order). Then d_s = Δ + u_s + e_s with the test-sample errors e_s
    strongly correlated (the same functions are easy or hard for every seed), s² holds τ² but little
    of the test-sample variance, and the t interval above is too narrow (it can be narrower than one
    seed's bootstrap interval). Instead each resample b draws the shared functions ONCE (the same
    counts for every seed and for A and B), d̄*_b = mean_s (M(A_s*) - M(B_s*)), and with

        v_boot = var_b(d̄*_b)   (ddof 1, over the resamples defined on every seed; shared_test_sd = √v_boot)

    the variance of d̄ is estimated by s²/S + v_boot: the seed part with S - 1 degrees of freedom, the
    test part from many resamples. :func:`shared_test_interval` combines them (Banerjee 1960):
    d̄ ± √(t²_{S-1} s²/S + z² v_boot), p the smallest α whose interval excludes 0 (method
    "student_t_shared_test"). Slightly conservative, for two reasons: s²/S also holds the small part
    of the test-sample variance that differs between seeds, which v_boot holds too (counted twice),
    and Banerjee's interval covers at least c for every ratio of the two parts (0.95-0.98 for S = 3).
    The t quantile on the whole, d̄ ± t_{S-1} √(s²/S + v_boot), would treat v_boot as estimated from S
    values and cover 0.99-1.0 once the test part is a sizeable share (t_{2,0.975} = 4.30 vs 1.96).
    Each seed's entry is still its own paired bootstrap, on the
    shared resamples (so each equals paired_bootstrap(..., seed=seed) on that triple).
    within_seed_sd² is again the mean of the per-seed bootstrap variances; between_seed_sd² =
    max(0, s² - w²) with w² = (tr Σ - 1ᵀΣ1/S) / (S - 1), Σ the (S, S) bootstrap covariance of the
    resampled d*_s, the expected test-sample part of s² for correlated e_s (w² = within² when Σ is
    diagonal). With one seed ``shared_test`` changes nothing.

    If the metric is undefined on a seed (NaN), everything over seeds is None."""
    _check_bootstrap(n_boot, confidence)
    if not per_seed:
        raise ValueError("across_seeds needs at least one seed")
    triples = [_check_paired(*t) for t in per_seed]
    n_seeds = len(triples)
    shared = shared_test and n_seeds > 1
    rng = np.random.default_rng(seed)
    resampled = None
    if shared:
        if any(not np.array_equal(t[0], triples[0][0]) for t in triples[1:]):
            raise ValueError("shared_test: every seed must hold the same labels in the same order (the one test set they share)")
        points = [_point_estimates(*t, metric_fn) for t in triples]
        resampled = _shared_resampled_differences(triples, points, metric_fn, n_boot, rng)  # (S, n_boot)
        results = [_bootstrap_comparison(a, b, row, confidence, n_boot) for (a, b), row in zip(points, resampled)]
        method = SHARED_TEST_METHOD
    else:
        results = [_paired_bootstrap(*t, metric_fn, n_boot, rng, confidence) for t in triples]
        method = "student_t" if n_seeds > 1 else "bootstrap_one_seed"
    mean_a, mean_b = (None if None in xs else float(np.mean(xs)) for xs in ([r.a for r in results], [r.b for r in results]))
    pooled = dict(mean_a=mean_a, mean_b=mean_b, mean_difference=None, std_difference=None, within_seed_sd=None, between_seed_sd=None,
                  shared_test_sd=None, ci_low=None, ci_high=None, p_value=None)
    if all(r.difference is not None for r in results):
        d = np.array([r.difference for r in results])  # (S,)
        errors = [r.std_error for r in results]
        within = None if None in errors else math.sqrt(float(np.mean(np.square(errors))))
        pooled.update(mean_difference=float(d.mean()), within_seed_sd=within)
        if n_seeds == 1:
            pooled.update(ci_low=results[0].ci_low, ci_high=results[0].ci_high, p_value=results[0].p_value)
        elif not shared:
            std = float(np.std(d, ddof=1))
            ci_low, ci_high, p_value = t_over_seeds(d, confidence)
            pooled.update(std_difference=std, between_seed_sd=None if within is None else math.sqrt(max(0.0, std**2 - within**2)),
                          ci_low=ci_low, ci_high=ci_high, p_value=p_value)
        else:
            std = float(np.std(d, ddof=1))
            pooled.update(std_difference=std)
            joint = resampled[:, ~np.isnan(resampled).any(axis=0)]  # (S, B') the resamples defined on every seed
            if joint.shape[1] >= 2:
                v_boot = float(np.var(joint.mean(axis=0), ddof=1))
                cov = np.cov(joint)  # (S, S)
                unshared = (float(np.trace(cov)) - float(cov.sum()) / n_seeds) / (n_seeds - 1)
                ci_low, ci_high, p_value = shared_test_interval(float(d.mean()), std**2 / n_seeds, v_boot, n_seeds - 1, confidence)
                pooled.update(between_seed_sd=math.sqrt(max(0.0, std**2 - unshared)), shared_test_sd=math.sqrt(v_boot),
                              ci_low=ci_low, ci_high=ci_high, p_value=p_value)
    return SeedComparison(per_seed=tuple(results), **pooled, method=method, confidence=confidence, n_boot=n_boot)


# --- DeLong's test for two correlated ROC-AUCs ----------------------------------------------------


@dataclass(frozen=True)
class DeLongTest:
    """AUC_A, AUC_B, difference, its standard error, z = difference / std_error, two-sided p and interval.
    z is None when std_error = 0 (then p = 1 for a zero difference, else 0)."""

    auc_a: float
    auc_b: float
    difference: float
    std_error: float
    z: float | None
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, tied values sharing the average of their ranks."""
    order = np.argsort(x, kind="mergesort")
    starts = np.concatenate([[0], np.flatnonzero(np.diff(x[order])) + 1])  # first position of each run of ties
    lengths = np.diff(np.concatenate([starts, [len(x)]]))
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(starts + (lengths + 1) / 2, lengths)  # run [s, s+L) holds ranks s+1..s+L, average s + (L+1)/2
    return ranks


def _placements(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components (placement values) via midranks (Sun & Xu 2014).

    V10_i = (1/N) Σ_j ψ(x_i, y_j) for each positive x_i and V01_j = (1/P) Σ_i ψ(x_i, y_j) for each
    negative y_j, ψ(x, y) = 1 if x > y, 1/2 if x = y, 0 otherwise. With R the midranks among all
    functions and R⁺ (R⁻) those among the positives (negatives) alone: V10_i = (R_i - R⁺_i) / N and
    V01_j = 1 - (R_j - R⁻_j) / P. AUC = mean V10 = mean V01."""
    pos, neg = labels == 1, labels == 0
    ranks = _midranks(scores)  # (n,)
    v10 = (ranks[pos] - _midranks(scores[pos])) / neg.sum()  # (P,)
    v01 = 1 - (ranks[neg] - _midranks(scores[neg])) / pos.sum()  # (N,)
    return v10, v01


def delong_test(labels, scores_a, scores_b, confidence: float = 0.95) -> DeLongTest:
    """DeLong, DeLong & Clarke-Pearson (1988): are two ROC-AUCs on the same functions different?

    With the placement values of :func:`_placements` for A and B, δ10 = V10_A - V10_B (P values) and
    δ01 = V01_A - V01_B (N values):  Var(AUC_A - AUC_B) = s²(δ10) / P + s²(δ01) / N  (s², ddof 1),
    which equals DeLong's contrast [1, -1] (S10 / P + S01 / N) [1, -1]ᵀ of the covariance matrices.
    z = (AUC_A - AUC_B) / se,  p = 2 (1 - Φ(|z|)),  interval (AUC_A - AUC_B) ± z_{(1+c)/2} se.
    Needs at least two functions of each class."""
    labels, scores_a, scores_b = _check_paired(labels, scores_a, scores_b)
    n_pos, n_neg = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    if n_pos < 2 or n_neg < 2:
        raise ValueError(f"DeLong's test needs at least 2 functions of each class, got {n_pos} vulnerable and {n_neg} safe")
    v10_a, v01_a = _placements(labels, scores_a)
    v10_b, v01_b = _placements(labels, scores_b)
    auc_a, auc_b = float(v10_a.mean()), float(v10_b.mean())
    difference = auc_a - auc_b
    std_error = math.sqrt(np.var(v10_a - v10_b, ddof=1) / n_pos + np.var(v01_a - v01_b, ddof=1) / n_neg)
    normal = NormalDist()
    if std_error > 0:
        z = difference / std_error
        p_value = math.erfc(abs(z) / math.sqrt(2))  # = 2 Φ(-|z|) without erf's cancellation: no 0 for |z| > 8.3
    else:
        z, p_value = None, 1.0 if difference == 0 else 0.0
    half_width = normal.inv_cdf((1 + confidence) / 2) * std_error
    return DeLongTest(auc_a, auc_b, difference, std_error, z, p_value, difference - half_width, difference + half_width, confidence)


# --- McNemar's exact test on the decisions ---------------------------------------------------------


@dataclass(frozen=True)
class McNemarTest:
    """Discordant pairs (A right and B wrong, A wrong and B right) and the exact two-sided p-value."""

    a_right_b_wrong: int
    a_wrong_b_right: int
    p_value: float


def mcnemar_exact(labels, predicted_a, predicted_b) -> McNemarTest:
    """McNemar's test (1947), exact (conditional binomial) form, on two classifiers' 0/1 decisions.

    Only the functions on which exactly one classifier is right carry information: b = #{A right, B
    wrong}, c = #{A wrong, B right}. Under H0 (equal accuracy) each is A's with probability 1/2, so
    p = min(1, 2 P(X <= min(b, c))) with X ~ Bin(b + c, 1/2), computed in exact integers; p = 1 when
    b + c = 0. Conservative (its size is below α), the usual price of an exact conditional test."""
    labels = np.asarray(labels, dtype=np.int64)
    right_a, right_b = np.asarray(predicted_a) == labels, np.asarray(predicted_b) == labels
    b, c = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    tail = sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c)  # exact big integers, one rounding
    return McNemarTest(b, c, min(1.0, 2 * tail))


# --- one detector's metric, averaged over runs -----------------------------------------------------


def bootstrap_mean_interval(
    runs: list[tuple], metric_fn: ResampledMetric, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95,
    shared_test: bool = False,
) -> tuple[float, float] | None:
    """Percentile interval of the mean over runs of metric(labels_r, scores_r) under resampling of the
    test functions.

    Resample b draws test functions with replacement and records M*_b = (1/R) Σ_r metric(run r
    resampled); the interval is the (1-c)/2 and (1+c)/2 quantiles of the M*_b whose metric is defined
    on every run. It measures how much the reported mean would move with other test functions, not
    how much it moves between training seeds (the seeds' spread is reported beside it).
    ``runs``: [(labels (n_r,), scores (n_r,)), ...]. None if the metric is undefined on every resample.

    ``shared_test=False`` (the runs are seeds of a random split, each with its own test functions):
    every run's n_r functions are resampled independently. ``shared_test=True`` (the runs share one
    test set: a group split or a given split): every run must have the same n, and each resample
    draws the counts ONCE and uses them for every run, so M*_b is the mean over runs of the metric of
    run r on the same resample. With a shared test set the runs' metrics move together from one test
    sample to the next; resampling them independently would average that movement away and make
    the interval too narrow by up to √R (R runs with near-equal scores)."""
    _check_bootstrap(n_boot, confidence)
    rng = np.random.default_rng(seed)
    checked = [_check_paired(labels, scores) for labels, scores in runs]
    values = np.zeros(n_boot)  # (n_boot,) running sum over runs
    if shared_test:
        lengths = sorted({len(labels) for labels, _ in checked})
        if len(lengths) > 1:
            raise ValueError(f"shared_test: every run must have the same test functions, got test sets of {lengths} functions")
        for start in range(0, n_boot, RESAMPLE_CHUNK):
            counts = resample_counts(rng, lengths[0], min(RESAMPLE_CHUNK, n_boot - start))  # (C, n), the same for every run
            for labels, scores in checked:
                values[start:start + len(counts)] += metric_fn(labels, scores, counts)
    else:
        for labels, scores in checked:
            for start in range(0, n_boot, RESAMPLE_CHUNK):
                counts = resample_counts(rng, len(labels), min(RESAMPLE_CHUNK, n_boot - start))  # (C, n_r)
                values[start:start + len(counts)] += metric_fn(labels, scores, counts)
    means = values[~np.isnan(values)] / len(checked)
    if means.size == 0:
        return None
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)
