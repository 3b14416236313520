"""End to end: every architecture for one epoch on a small stratified ReVeal subset.

The run's files are checked for content, and its test metrics are recomputed through a second
path (``ssmscope evaluate`` on the test split written out as JSONL) and must agree.
"""

import dataclasses
import gzip
import json

import numpy as np
import pytest
import torch

from run_files import same_weights
from ssmscope.cli import main
from ssmscope.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ssmscope.errors import SsmscopeError
from ssmscope.models import ARCHITECTURES
from ssmscope.data import lex
from ssmscope.train import METRIC_KEYS, evaluate_run, prepare_data, train_run
from ssmscope.train.loop import read_predictions
from ssmscope.train.metrics import TUNED_KEYS, binary_metrics, metrics_at_threshold, tuned_threshold

pytestmark = pytest.mark.reveal


def small_config(arch: str, data_path, **train) -> RunConfig:
    return RunConfig(
        arch=arch,
        data_path=str(data_path),
        data=DataConfig(limit=500, max_len=256),
        model=ModelConfig(embed_dim=32, num_filters=32, d_state=16),
        train=TrainConfig(epochs=1, **train),
    )


@pytest.fixture(scope="module")
def runs(reveal_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {arch: (root / arch, train_run(small_config(arch, reveal_path), root / arch, log=lambda s: None)) for arch in ARCHITECTURES}


@pytest.fixture(scope="module")
def reveal_labels(reveal_path):
    with gzip.open(reveal_path, "rt") as f:
        return [json.loads(line)["label"] for line in f]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_run_directory_contents(runs, reveal_labels, arch):
    run_dir, returned = runs[arch]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    splits = json.loads((run_dir / "splits.json").read_text())
    assert set(metrics) == set(METRIC_KEYS) | set(TUNED_KEYS) | {"best_epoch", "select_by"} and metrics == returned and metrics["best_epoch"] == 1
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    assert tn + fp + fn + tp == 50 and fn + tp == sum(reveal_labels[i] for i in splits["test"])
    assert metrics["accuracy"] == pytest.approx((tn + tp) / 50)
    for key in ("accuracy", "precision", "recall", "f1", "f1_macro", "f1_weighted", "roc_auc", "pr_auc"):
        assert 0.0 <= metrics[key] <= 1.0

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    epoch = json.loads(lines[0])
    assert len(lines) == 1 and epoch["epoch"] == 1 and np.isfinite(epoch["train_loss"]) and set(epoch["valid"]) == set(METRIC_KEYS)

    config = json.loads((run_dir / "config.json").read_text())
    assert RunConfig.from_dict(config) == small_config(arch, config["data_path"])
    assert config["environment"]["torch"] == torch.__version__

    train, valid, test = (set(splits[k]) for k in ("train", "valid", "test"))
    assert (len(train), len(valid), len(test)) == (400, 50, 50) and not (train & valid or train & test or valid & test)
    assert splits["counts"]["conflicting_dropped"] == 702

    payload = torch.load(run_dir / "model.pt", weights_only=True)
    assert payload["vocab"][:2] == ["<pad>", "<unk>"] and payload["epoch"] == 1
    assert payload["state_dict"]["embedding.weight"].shape[0] == len(payload["vocab"])


@pytest.mark.parametrize("arch", ["s4d", "smr_s4d", "cnn"])
def test_evaluate_reproduces_test_metrics_through_a_second_path(runs, reveal_path, arch, tmp_path, capsys):
    run_dir, metrics = runs[arch]
    test_ids = set(json.loads((run_dir / "splits.json").read_text())["test"])
    with gzip.open(reveal_path, "rt") as f:
        rows = [json.loads(line) for i, line in enumerate(f) if i in test_ids]
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"func": r["code"], "y": str(r["label"])}) + "\n" for r in rows))
    assert main(["evaluate", "--run", str(run_dir), "--data", str(data), "--code-field", "func", "--label-field", "y", "--device", "cpu"]) == 0
    written = json.loads((run_dir / "evaluations" / "test.json").read_text())
    assert written["confusion_matrix"] == metrics["confusion_matrix"]
    for key in ("f1", "f1_weighted", "roc_auc", "pr_auc", "mcc", "vd_score", "brier", "f1_tuned", "mcc_tuned"):
        assert written[key] == pytest.approx(metrics[key], abs=1e-9)
    assert written["tuned_threshold"] == metrics["tuned_threshold"]  # the run's threshold, not one tuned on test
    evaluated = read_predictions(run_dir / "evaluations" / "test.predictions.csv")["test"]
    trained = read_predictions(run_dir / "predictions.csv")["test"]
    order = np.argsort(trained["index"])
    by_position = dict(zip(range(len(rows)), sorted(test_ids)))  # evaluate indexes the rows of its own file
    assert [by_position[i] for i in evaluated["index"]] == sorted(test_ids)
    np.testing.assert_allclose(evaluated["probability"], trained["probability"][order], atol=1e-9)
    assert "f1_weighted" in capsys.readouterr().out


@pytest.mark.parametrize("arch", ["s4d", "cnn"])
def test_metrics_json_follows_from_predictions_csv(runs, arch):
    """Every number of metrics.json recomputed from predictions.csv alone (a second path: the file, not the model)."""
    run_dir, metrics = runs[arch]
    predictions = read_predictions(run_dir / "predictions.csv")
    splits = json.loads((run_dir / "splits.json").read_text())
    assert set(predictions) == {"valid", "test"}
    for name, columns in predictions.items():
        assert sorted(columns["index"]) == sorted(splits[name])  # index = the record index of splits.json
    valid, test = predictions["valid"], predictions["test"]
    threshold = tuned_threshold(valid["label"], valid["probability"])
    assert metrics["tuned_threshold"] == threshold
    recomputed = {**binary_metrics(test["label"], test["probability"]), **metrics_at_threshold(test["label"], test["probability"], threshold)}
    assert recomputed == {k: v for k, v in metrics.items() if k not in ("best_epoch", "select_by")}  # exact: 17 digits in the file


def test_select_by_picks_the_epoch_with_the_best_chosen_validation_metric(reveal_path, tmp_path):
    config = dataclasses.replace(small_config("cnn", reveal_path), train=TrainConfig(epochs=3, select_by="roc_auc"))
    metrics = train_run(config, tmp_path / "run", log=lambda s: None)
    aucs = [json.loads(line)["valid"]["roc_auc"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics["select_by"] == "roc_auc" and metrics["best_epoch"] == 1 + int(np.argmax(aucs))
    valid = read_predictions(tmp_path / "run" / "predictions.csv")["valid"]
    assert binary_metrics(valid["label"], valid["probability"])["roc_auc"] == max(aucs)  # the saved model is that epoch's
    with pytest.raises(SsmscopeError, match="--select-by: unknown metric 'brier'"):
        train_run(dataclasses.replace(config, train=TrainConfig(select_by="brier")), tmp_path / "other", log=lambda s: None)


def _write_split(reveal_path, run_dir, split, path):
    ids = set(json.loads((run_dir / "splits.json").read_text())[split])
    with gzip.open(reveal_path, "rt") as f:
        path.write_text("".join(line for i, line in enumerate(f) if i in ids))
    return path


def test_best_epoch_weights_are_the_ones_tested(reveal_path, tmp_path):
    """model.pt holds the epoch with the best validation F1: re-scoring it on valid gives that
    epoch's logged validation metrics, and on test the run's test metrics."""
    run_dir = tmp_path / "run"
    metrics = train_run(dataclasses.replace(small_config("cnn", reveal_path), train=TrainConfig(epochs=4)), run_dir, log=lambda s: None)
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    f1s = [e["valid"]["f1"] for e in epochs]
    assert len(f1s) == 4 and metrics["best_epoch"] == 1 + int(np.argmax(f1s))  # first maximum wins ties
    valid = evaluate_run(run_dir, _write_split(reveal_path, run_dir, "valid", tmp_path / "valid.jsonl"), device="cpu")
    assert valid["confusion_matrix"] == epochs[metrics["best_epoch"] - 1]["valid"]["confusion_matrix"]
    assert valid["roc_auc"] == pytest.approx(epochs[metrics["best_epoch"] - 1]["valid"]["roc_auc"], abs=1e-9)
    test = evaluate_run(run_dir, _write_split(reveal_path, run_dir, "test", tmp_path / "test.jsonl"), device="cpu")
    assert test["confusion_matrix"] == metrics["confusion_matrix"] and test["pr_auc"] == pytest.approx(metrics["pr_auc"], abs=1e-9)


def test_truncation_is_counted_and_vocabulary_comes_from_train_only(tmp_path):
    rows = [{"code": f"int f{i}(void) {{ return {1000 + i}" + " + 1" * (i % 7) + "; }", "label": int(i % 4 == 0)} for i in range(200)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = RunConfig("cnn", str(data), DataConfig(max_len=20, min_count=1), ModelConfig(kernel_sizes=(3,)), TrainConfig())
    prepared = prepare_data(config)
    for name, split in prepared.splits.items():
        expected = sum(len(lex(rows[i]["code"])) > 20 for i in prepared.indices[name])
        assert split.truncated == expected == prepared.counts[f"{name}_truncated"] and max(split.lengths) <= 20
    assert prepared.counts["train_truncated"] > 0
    literal = {name: {str(1000 + i) for i in ids} for name, ids in prepared.indices.items()}
    assert literal["train"] <= set(prepared.vocab.tokens)
    assert not (literal["valid"] | literal["test"]) & set(prepared.vocab.tokens)


def test_overwrite_removes_results_derived_from_the_old_model(runs, reveal_path, tmp_path):
    from ssmscope.analysis.run import analyze_run

    run_dir = tmp_path / "run"
    train_run(small_config("s4d", reveal_path), run_dir, log=lambda s: None)
    analyze_run(run_dir, figures=False)
    assert (run_dir / "analysis" / "summary.json").exists()
    train_run(small_config("s4d", reveal_path), run_dir, overwrite=True, log=lambda s: None)
    assert not (run_dir / "analysis").exists() and (run_dir / "metrics.json").exists()


def test_same_seed_same_metrics_file_and_weights(reveal_path, tmp_path):
    config = small_config("smr_s4d", reveal_path)
    a = train_run(config, tmp_path / "a", log=lambda s: None)
    b = train_run(config, tmp_path / "b", log=lambda s: None)
    assert a == b
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()
    assert same_weights(tmp_path / "a", tmp_path / "b")


def test_existing_run_is_not_overwritten(runs, reveal_path):
    run_dir, _ = runs["cnn"]
    before = (run_dir / "metrics.json").read_bytes()
    with pytest.raises(SsmscopeError, match="already holds a run"):
        train_run(small_config("cnn", reveal_path), run_dir, log=lambda s: None)
    assert (run_dir / "metrics.json").read_bytes() == before


def test_cli_train_prints_metrics_and_errors_are_one_line(reveal_path, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train", "--arch", "cnn", "--data", str(reveal_path), "--out", str(out), "--limit", "300", "--epochs", "1",
            "--max-len", "128", "--embed-dim", "16", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "test: accuracy" in printed and (out / "metrics.json").exists()

    assert main(["train", "--arch", "rnn", "--data", str(reveal_path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown architecture 'rnn'" in err and "smr_s4d" in err
    assert main(["train", "--arch", "cnn", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "y")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("select_by, expected_epoch", [("f1", 1), ("roc_auc", 2), ("mcc", 3)])
def test_the_best_epoch_is_the_one_with_the_best_chosen_metric(small_corpus, tmp_path, monkeypatch, select_by, expected_epoch):
    """Scripted validation metrics, each criterion best at another epoch: the selection follows --select-by."""
    import ssmscope.train.loop as loop

    scripted = iter([{"f1": 0.9, "roc_auc": 0.5, "mcc": 0.1}, {"f1": 0.2, "roc_auc": 0.9, "mcc": 0.2}, {"f1": 0.3, "roc_auc": 0.6, "mcc": 0.7}])
    real = loop.binary_metrics
    monkeypatch.setattr(loop, "binary_metrics", lambda labels, scores: {**real(labels, scores), **next(scripted)})
    config = RunConfig("cnn", str(small_corpus), DataConfig(max_len=64, min_count=1), ModelConfig(embed_dim=8, num_filters=8),
                       TrainConfig(epochs=3, select_by=select_by))
    metrics = train_run(config, tmp_path / "run", log=lambda s: None)
    assert metrics["best_epoch"] == expected_epoch and metrics["select_by"] == select_by
    assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)["epoch"] == expected_epoch
