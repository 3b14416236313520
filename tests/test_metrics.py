"""Metrics against scikit-learn, an independent implementation."""

import numpy as np
import pytest
from sklearn import metrics as skm

from ssmscope.train.metrics import METRIC_KEYS, binary_metrics


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
