"""Training: the loop, metrics, checkpoints."""

from .loop import evaluate_run, load_run, predict, prepare_data, resolve_device, train_run
from .metrics import METRIC_KEYS, binary_metrics

__all__ = ["METRIC_KEYS", "binary_metrics", "evaluate_run", "load_run", "predict", "prepare_data", "resolve_device", "train_run"]
