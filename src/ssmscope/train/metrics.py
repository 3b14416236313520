"""Binary classification metrics, the vulnerable class (label 1) being the positive one.

Pure numpy, so that the tests can hold them against scikit-learn as an independent reference.
Formulas (tp, fp, fn, tn from the 0.5-probability threshold, i.e. logit > 0):

    accuracy   (tp + tn) / n
    precision  tp / (tp + fp)              recall  tp / (tp + fn)       (0 when the denominator is 0)
    f1         2 tp / (2 tp + fp + fn)     of the vulnerable class
    f1_macro   (f1 of class 0 + f1 of class 1) / 2
    f1_weighted  (n_0 f1_0 + n_1 f1_1) / n   with n_c the true count of class c
    roc_auc    P(score of a random positive > score of a random negative), ties counting 1/2
               (Mann-Whitney U / (n_0 n_1), average ranks for ties)
    pr_auc     average precision Σ_k (R_k - R_{k-1}) P_k over the distinct score thresholds, descending
    mcc        (tp tn - fp fn) / sqrt((tp + fp)(tp + fn)(tn + fp)(tn + fn))   (0 when a factor is 0)
    confusion_matrix  [[tn, fp], [fn, tp]]   (rows: true label, columns: prediction)
    vd_score   min over thresholds t with FPR(t) <= 0.5% of FNR(t), vulnerable when p >= t
               (PrimeVul's VD-S, Ding et al. 2025; lower is better; 1 when no t flags a vulnerable
               function without exceeding the false-alarm budget)
    brier      mean (p - y)^2

roc_auc, pr_auc and vd_score are None when the labels hold one class only.

Threshold tuning (:func:`tuned_threshold`, :func:`metrics_with_tuned_threshold`): the threshold t
that maximises the vulnerable-class F1 on the validation split (vulnerable when p >= t; the highest
such t on ties, i.e. the fewest alarms), then precision, recall, F1 and MCC on test at that t.
"""

from __future__ import annotations

import math

import numpy as np

from ..config import DECISION_THRESHOLD

METRIC_KEYS = ("accuracy", "precision", "recall", "f1", "f1_macro", "f1_weighted", "roc_auc", "pr_auc", "mcc", "confusion_matrix", "vd_score", "brier")
TUNED_KEYS = ("tuned_threshold", "f1_tuned", "precision_tuned", "recall_tuned", "mcc_tuned")
SELECTION_METRICS = ("f1", "mcc", "roc_auc", "pr_auc", "accuracy")  # --select-by: validation metrics, higher is better
VD_MAX_FPR = 0.005  # PrimeVul's false-alarm budget for VD-S


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank-sum (Mann-Whitney) identity, ties at average rank."""
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average rank (1-based) over each run of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2
    u = ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Σ_k (R_k - R_{k-1}) P_k with one step per distinct score, highest score first."""
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        return None
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_run = np.concatenate([np.flatnonzero(np.diff(s)), [len(s) - 1]])  # index where each threshold ends
    tp = np.cumsum(y)[last_of_run]
    predicted = last_of_run + 1
    precision = tp / predicted
    recall = tp / n_pos
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def _threshold_runs(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct score t, highest first: (t, tp(t), fp(t)) with "vulnerable when p >= t"."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last_of_run = np.concatenate([np.flatnonzero(np.diff(s)), [len(s) - 1]])
    tp = np.cumsum(y)[last_of_run]
    return s[last_of_run], tp, last_of_run + 1 - tp


def vd_score(labels, scores, max_fpr: float = VD_MAX_FPR) -> float | None:
    """Lowest false-negative rate over thresholds t whose false-positive rate is at most ``max_fpr``
    (vulnerable when p >= t); t above every score (FNR 1) is always allowed. None for one class."""
    labels, scores = np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, tp, fp = _threshold_runs(labels, scores)
    allowed = fp <= max_fpr * n_neg  # fp grows as t falls: the allowed thresholds are the highest ones
    return float(1 - tp[allowed].max() / n_pos) if allowed.any() else 1.0


def tuned_threshold(labels, scores) -> float | None:
    """The t maximising vulnerable-class F1 = 2 tp / (tp + fp + n_pos) with "vulnerable when p >= t";
    the highest such t on ties. None when ``labels`` hold no vulnerable function."""
    labels, scores = np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return None
    thresholds, tp, fp = _threshold_runs(labels, scores)
    return float(thresholds[int(np.argmax(2 * tp / (tp + fp + n_pos)))])  # argmax: the first (highest) maximum


def _decision_metrics(labels: np.ndarray, predicted: np.ndarray) -> dict:
    tp = int(np.sum((predicted == 1) & (labels == 1)))
    fp = int(np.sum((predicted == 1) & (labels == 0)))
    fn = int(np.sum((predicted == 0) & (labels == 1)))
    tn = int(np.sum((predicted == 0) & (labels == 0)))
    n = len(labels)
    f1_pos = _ratio(2 * tp, 2 * tp + fp + fn)
    f1_neg = _ratio(2 * tn, 2 * tn + fn + fp)
    den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    return {
        "accuracy": _ratio(tp + tn, n),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": f1_pos,
        "f1_macro": (f1_pos + f1_neg) / 2,
        "f1_weighted": _ratio((tn + fp) * f1_neg + (tp + fn) * f1_pos, n),
        "mcc": float((tp * tn - fp * fn) / math.sqrt(den)) if den else 0.0,
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def binary_metrics(labels, scores, threshold: float = DECISION_THRESHOLD) -> dict:
    """Every metric in METRIC_KEYS from true labels (0/1) and predicted probabilities of label 1
    (vulnerable when p > ``threshold``)."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    decided = _decision_metrics(labels, (scores > threshold).astype(np.int64))
    return {
        **{k: decided[k] for k in ("accuracy", "precision", "recall", "f1", "f1_macro", "f1_weighted")},
        "roc_auc": roc_auc(labels, scores),
        "pr_auc": average_precision(labels, scores),
        "mcc": decided["mcc"],
        "confusion_matrix": decided["confusion_matrix"],
        "vd_score": vd_score(labels, scores),
        "brier": float(np.mean((scores - labels) ** 2)) if len(labels) else 0.0,
    }


def metrics_at_threshold(labels, scores, threshold: float | None) -> dict:
    """TUNED_KEYS for ``labels``/``scores`` decided at "vulnerable when p >= threshold" (None: all None)."""
    if threshold is None:
        return dict.fromkeys(TUNED_KEYS)
    labels, scores = np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    decided = _decision_metrics(labels, (scores >= threshold).astype(np.int64))
    return {"tuned_threshold": threshold, **{f"{k}_tuned": decided[k] for k in ("f1", "precision", "recall", "mcc")}}


def metrics_with_tuned_threshold(valid_labels, valid_scores, test_labels, test_scores) -> dict:
    """binary_metrics on test, plus TUNED_KEYS: test decided at the threshold tuned on validation."""
    return {**binary_metrics(test_labels, test_scores), **metrics_at_threshold(test_labels, test_scores, tuned_threshold(valid_labels, valid_scores))}
