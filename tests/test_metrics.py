"""Metrics against scikit-learn, an independent implementation."""

import numpy as np
import pytest
from sklearn import metrics as skm

from ssmscope.train.metrics import METRIC_KEYS, binary_metrics, metrics_at_threshold, tuned_threshold, vd_score


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    labels = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    labels[:2] = [0, 1]
    scores = np.clip(labels * rng.uniform(0, 0.5) + rng.random(n) * 0.8, 0, 1)
    if seed % 2:
        scores = np.round(scores, 1)  # many ties
    m = binary_metrics(labels, scores)
    assert set(m) == set(METRIC_KEYS)
    pred = (scores > 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(labels, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(labels, pred, zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(labels, pred, zero_division=0))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(labels, pred, average="macro", zero_division=0))
    assert m["f1_weighted"] == pytest.approx(skm.f1_score(labels, pred, average="weighted", zero_division=0))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(labels, scores))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(labels, pred))
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, pred, labels=[0, 1]).tolist()


def test_degenerate_cases():
    labels = np.array([0, 0, 1, 1])
    m = binary_metrics(labels, np.zeros(4))  # predicts nothing vulnerable
    assert m["precision"] == 0 and m["recall"] == 0 and m["f1"] == 0 and m["mcc"] == 0
    assert m["roc_auc"] == 0.5 and m["pr_auc"] == 0.5
    one_class = binary_metrics(np.zeros(5, dtype=int), np.linspace(0, 1, 5))
    assert one_class["roc_auc"] is None and one_class["pr_auc"] is None
    perfect = binary_metrics(labels, np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect["f1"] == perfect["roc_auc"] == perfect["pr_auc"] == perfect["mcc"] == 1.0


def _brute_force(labels, scores):
    """vd_score and the tuned threshold by trying every threshold with scikit-learn's confusion matrix."""
    candidates = sorted(set(scores), reverse=True)
    n_neg, n_pos = int((labels == 0).sum()), int(labels.sum())
    best_fnr, best_f1, best_t = 1.0, -1.0, None
    for t in candidates:
        (tn, fp), (fn, tp) = skm.confusion_matrix(labels, (scores >= t).astype(int), labels=[0, 1])
        if fp / n_neg <= 0.005:
            best_fnr = min(best_fnr, fn / n_pos)
        f1 = skm.f1_score(labels, (scores >= t).astype(int), zero_division=0)
        if f1 > best_f1:  # strictly: the first (highest) threshold keeps ties
            best_f1, best_t = f1, t
    return best_fnr, best_t, best_f1


@pytest.mark.parametrize("seed", range(8))
def test_vd_score_and_tuned_threshold_match_a_brute_force_search(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(50, 700))
    labels = (rng.random(n) < 0.2).astype(int)
    labels[:2] = [0, 1]
    scores = np.clip(labels * rng.uniform(0, 0.6) + rng.random(n) * 0.7, 0, 1)
    if seed % 2:
        scores = np.round(scores, 2)  # ties across classes
    fnr, t, f1 = _brute_force(labels, scores)
    assert vd_score(labels, scores) == pytest.approx(fnr)
    assert tuned_threshold(labels, scores) == t
    assert metrics_at_threshold(labels, scores, t)["f1_tuned"] == pytest.approx(f1)
    assert binary_metrics(labels, scores)["brier"] == pytest.approx(skm.brier_score_loss(labels, scores))


def test_vd_score_and_tuned_threshold_by_hand():
    # 400 safe functions: at most 0.5% = 2 false alarms. Scores, highest first:
    # 0.99 (vuln), 0.95 (safe), 0.9 (vuln), 0.8 (safe), 0.7 (safe), 0.6 (vuln), then 395 safe at 0.1, one vuln at 0.05
    labels = np.array([1, 0, 1, 0, 0, 1] + [0] * 395 + [1])
    scores = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6] + [0.1] * 395 + [0.05])
    # t = 0.8 flags 2 safe (fpr 0.5%) and 2 of 4 vulnerable: FNR 0.5; t = 0.7 would flag 3 safe
    assert vd_score(labels, scores) == 0.5
    # F1 = 2tp / (tp + fp + 4): t=0.99 → 2/5, 0.95 → 2/6, 0.9 → 4/7, 0.8 → 4/8, 0.7 → 4/9, 0.6 → 6/10; best 0.6 at t = 0.6
    assert tuned_threshold(labels, scores) == 0.6
    tuned = metrics_at_threshold(labels, scores, 0.6)
    assert (tuned["precision_tuned"], tuned["recall_tuned"], tuned["f1_tuned"]) == pytest.approx((0.5, 0.75, 0.6))
    # a detector that needs more than 2 false alarms to flag anything: FNR 1
    assert vd_score(np.array([0, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.1])) == 1.0
    assert vd_score(np.zeros(5, dtype=int), np.linspace(0, 1, 5)) is None and tuned_threshold(np.zeros(3, dtype=int), np.ones(3)) is None
