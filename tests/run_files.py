"""Reading run directories in tests: the weights, the per-epoch lines, and whether two runs trained the same."""

import json

import torch


def model_file(run_dir) -> dict:
    """model.pt of a run: best epoch, state dict, config, vocabulary."""
    return torch.load(run_dir / "model.pt", weights_only=True)


def epoch_lines(run_dir) -> list[dict]:
    """metrics.jsonl without "seconds", the one field that differs between two identical runs."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def same_weights(run_a, run_b) -> bool:
    """Both runs saved the same tensors, bit for bit."""
    a, b = model_file(run_a)["state_dict"], model_file(run_b)["state_dict"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
