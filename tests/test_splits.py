"""Realistic splits: whole groups as the test split (--split-by/--test-group) and a split given by files."""

import csv
import gzip
import json
import sys
import subprocess

import pytest

from ssmscope.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ssmscope.data import load_dataset, prepare
from ssmscope.errors import SsmscopeError
from ssmscope.train import prepare_data


def _functions(n, start=0, project=None):
    """n distinct functions, every fourth vulnerable; each knows its project when one is given."""
    rows = []
    for i in range(start, start + n):
        row = {"code": f"int f{i}(int a) {{ return a + {i}; }}", "label": int(i % 4 == 0)}
        if project:
            row["project"] = project
        rows.append(row)
    return rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_test_groups_are_the_test_split_and_train_valid_come_from_the_others(tmp_path):
    rows = _functions(200, 0, "debian") + _functions(60, 1000, "chrome") + _functions(40, 2000, "firefox")
    path = _write_jsonl(tmp_path / "d.jsonl", rows)
    records = load_dataset(path, group_field="project")
    prepared = prepare(records, (0.8, 0.1, 0.1), seed=3, source=str(path), test_groups=("chrome", "firefox"), group_field="project")
    project_of = {r.index: r.group for r in records}
    ids = prepared.indices()
    assert sorted(ids["test"]) == [i for i, r in enumerate(rows) if r["project"] in ("chrome", "firefox")]  # every function of the groups
    assert {project_of[i] for i in ids["train"] + ids["valid"]} == {"debian"}
    assert len(ids["train"]) + len(ids["valid"]) == 200 and len(ids["valid"]) == pytest.approx(200 / 9, abs=2)  # 0.8 : 0.1
    for name in ("train", "valid"):  # stratified: a quarter vulnerable, as in debian
        labels = [rows[i]["label"] for i in ids[name]]
        assert sum(labels) / len(labels) == pytest.approx(0.25, abs=0.03)


def test_a_text_in_two_groups_is_kept_once_and_contradictions_are_dropped(tmp_path):
    rows = _functions(80, 0, "debian") + _functions(40, 1000, "chrome")
    rows.append({**rows[5], "project": "chrome"})  # the same function, the same label, in the other project
    rows.append({**rows[6], "project": "chrome", "label": 1 - rows[6]["label"]})  # and one with the other label
    path = _write_jsonl(tmp_path / "d.jsonl", rows)
    prepared = prepare(load_dataset(path, group_field="project"), seed=0, source="d", test_groups=("chrome",), group_field="project")
    ids = prepared.indices()
    texts = {name: [rows[i]["code"] for i in ids[name]] for name in ids}
    assert not set(texts["test"]) & set(texts["train"] + texts["valid"])  # no function on both sides
    assert rows[6]["code"] not in sum(texts.values(), []) and prepared.counts["conflicting_dropped"] == 2


def test_reveal_debian_against_chrome(reveal_path):
    config = RunConfig("cnn", str(reveal_path), data=DataConfig(split_by="project", test_groups=("chrome",)), train=TrainConfig())
    data = prepare_data(config)
    with gzip.open(reveal_path, "rt") as f:
        project = [json.loads(line)["project"] for line in f]
    assert {project[i] for i in data.indices["test"]} == {"chrome"}
    assert {project[i] for i in data.indices["train"] + data.indices["valid"]} == {"debian"}
    assert len(data.indices["test"]) == data.counts["test_size"] > 4000  # README: 3,611 + 825 chrome functions, less dropped pairs


def test_a_split_folder_is_used_as_given_and_its_overlaps_are_reported(tmp_path):
    folder = tmp_path / "devign"
    folder.mkdir()
    train, valid, test = _functions(80), _functions(20, 500), _functions(20, 900)
    test.append(dict(train[3]))  # a train function again in test: reported, not moved
    train.append(dict(train[4]))  # a duplicate inside train: kept
    _write_jsonl(folder / "train.jsonl", [{"func": r["code"], "target": r["label"]} for r in train])
    with open(folder / "primevul_valid.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["func", "target"])
        w.writeheader()
        w.writerows({"func": r["code"], "target": r["label"]} for r in valid)
    _write_jsonl(folder / "test.jsonl", [{"func": r["code"], "target": r["label"]} for r in test])

    config = RunConfig("cnn", str(folder), data=DataConfig(code_field="func", label_field="target", min_count=1), train=TrainConfig(seed=7))
    data = prepare_data(config)
    assert data.indices == {"train": list(range(81)), "valid": list(range(81, 101)), "test": list(range(101, 122))}  # file order
    c = data.counts
    assert (c["shared_train_test"], c["shared_train_valid"], c["shared_valid_test"], c["duplicates_within_splits"]) == (1, 0, 0, 1)
    assert c["duplicates_dropped"] == c["conflicting_dropped"] == 0 and c["used"] == 122


@pytest.mark.parametrize("files, message", [
    (["train.jsonl", "test.jsonl"], "a split folder needs exactly one valid file, found no"),
    (["train.jsonl", "valid.jsonl", "dev.jsonl", "test.jsonl"], "exactly one valid file, found 2 (dev.jsonl, valid.jsonl)"),
    (["notes.txt"], "holds either the ReVeal files"),
])
def test_a_split_folder_missing_or_doubling_a_file_is_one_clear_line(tmp_path, files, message):
    for name in files:
        _write_jsonl(tmp_path / name, _functions(10)) if name.endswith(".jsonl") else (tmp_path / name).write_text("x")
    with pytest.raises(SsmscopeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(tmp_path)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ssmscope", *args], capture_output=True, text=True, timeout=120)


def test_bad_split_settings_are_one_line_and_exit_2(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", _functions(100, 0, "debian") + _functions(40, 1000, "chrome"))
    base = ["train", "--arch", "cnn", "--data", str(path), "--epochs", "1", "--device", "cpu"]
    cases = {
        ("--split-by", "project", "--test-group", "firefox"): "--test-group: 'firefox' does not occur in field 'project' of",
        ("--split-by", "projet", "--test-group", "chrome"): "d.jsonl:1: no field 'projet' (fields present: code, label, project); choose the right one with --split-by",
        ("--split-by", "project", "--test-group", "chrome,debian"): "every group of field 'project' (chrome, debian) is a test group",
        ("--test-group", "chrome"): "--split-by FIELD and --test-group VALUE go together",
    }
    for i, (extra, message) in enumerate(cases.items()):
        out = tmp_path / f"run{i}"
        result = _cli(*base, "--out", str(out), *extra)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr
        assert not out.exists() or not any(out.iterdir())  # nothing written


def test_evaluate_on_a_split_folder_scores_its_test_file_only(tmp_path):
    from ssmscope.train import evaluate_run, train_run
    from ssmscope.train.loop import read_predictions

    folder = tmp_path / "given"
    folder.mkdir()
    for name, start, n in (("train", 0, 120), ("valid", 500, 40), ("test", 900, 40)):
        _write_jsonl(folder / f"{name}.jsonl", _functions(n, start))
    config = RunConfig("cnn", str(folder), DataConfig(max_len=64, min_count=1), ModelConfig(embed_dim=8, num_filters=8), TrainConfig(epochs=1))
    trained = train_run(config, tmp_path / "run", log=lambda s: None)
    evaluated = evaluate_run(tmp_path / "run", folder, device="cpu", predictions=tmp_path / "p,with comma.csv")
    written = read_predictions(tmp_path / "p,with comma.csv")
    assert list(written) == ["test"] and list(written["test"]["index"]) == list(range(160, 200))
    assert evaluated["confusion_matrix"] == trained["confusion_matrix"]  # the same 40 functions as the run's test split


def test_a_split_name_with_a_comma_survives_predictions_csv(tmp_path):
    from ssmscope.train.loop import read_predictions, write_predictions

    write_predictions(tmp_path / "p.csv", {"my,data": ([3, 1], [1, 0], [0.25, 1 / 3])})
    back = read_predictions(tmp_path / "p.csv")["my,data"]
    assert list(back["index"]) == [3, 1] and list(back["label"]) == [1, 0] and list(back["probability"]) == [0.25, 1 / 3]


def test_a_split_folder_refuses_a_group_split(tmp_path):
    for name, start in (("train", 0), ("valid", 500), ("test", 900)):
        _write_jsonl(tmp_path / f"{name}.jsonl", _functions(40, start, "debian"))
    config = RunConfig("cnn", str(tmp_path), DataConfig(split_by="project", test_groups=("debian",)), train=TrainConfig())
    with pytest.raises(SsmscopeError, match="is a split folder, whose files give the split; drop --split-by"):
        prepare_data(config)
