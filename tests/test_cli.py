"""The command as a user runs it: a real process, exit codes, one-line errors."""

import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "ssmscope", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0 and "train" in result.stdout and "evaluate" in result.stdout


def test_user_error_is_one_line_with_exit_code_2(tmp_path):
    result = run("train", "--arch", "cnn", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "none.jsonl: no such file" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "train", "--arch", "cnn", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "run"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_bad_label_exit_code_2(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"code": "int a;", "label": 0}\n{"code": "int b;", "label": 7}\n')
    result = run("train", "--arch", "s4d", "--data", str(data), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "d.jsonl:2: label field 'label' is 7" in result.stderr


def one_line_error(result, *fragments):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("ssmscope: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_nonsensical_settings_are_refused_before_anything_is_read_or_written(tmp_path):
    out = tmp_path / "run"
    cases = {
        ("--lr", "0"): "--lr must be positive, got 0.0",
        ("--lr=-1e-3",): "--lr must be positive",
        ("--epochs=-1",): "--epochs must be at least 1, got -1",
        ("--batch-size", "0"): "--batch-size must be at least 1, got 0",
        ("--max-len", "2"): "--max-len 2 is shorter than the largest convolution (7)",
        ("--checkpoint-every", "0"): "--checkpoint-every must be at least 1",
    }
    for flags, message in cases.items():
        # the data path does not exist: the settings are checked first
        one_line_error(run("train", "--arch", "cnn", "--data", str(tmp_path / "absent.jsonl"), "--out", str(out), *flags), message)
    assert not out.exists()


def test_empty_dataset_file(tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    one_line_error(run("train", "--arch", "s4d", "--data", str(data), "--out", str(tmp_path / "run")), "empty.jsonl: no records found")
    assert not (tmp_path / "run").exists()


def test_a_corrupt_or_foreign_model_file_is_refused(tmp_path):
    import torch

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    data = tmp_path / "d.jsonl"
    data.write_text('{"code": "int a;", "label": 0}\n{"code": "int b;", "label": 1}\n')
    (run_dir / "model.pt").write_bytes(b"\x00 not a checkpoint")
    one_line_error(run("evaluate", "--run", str(run_dir), "--data", str(data)), "model.pt: not a readable ssmscope checkpoint")
    torch.save({"state_dict": {}}, run_dir / "model.pt")  # a torch file, but not ours
    one_line_error(run("evaluate", "--run", str(run_dir), "--data", str(data)), "model.pt: not an ssmscope checkpoint")


class RunsCode:
    """A pickle that would run a shell command when loaded without weights_only."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    import pickle

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    data = tmp_path / "d.jsonl"
    data.write_text('{"code": "int a;", "label": 0}\n')
    (run_dir / "model.pt").write_bytes(pickle.dumps(RunsCode()))
    result = subprocess.run([sys.executable, "-m", "ssmscope", "evaluate", "--run", str(run_dir), "--data", str(data)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    one_line_error(result, "model.pt: not a readable ssmscope checkpoint")
    assert not (tmp_path / "PWNED").exists()


GOOD = [f'{{"code": "int f{i}(char *p) {{ return p[{i}]; }}", "label": {i % 2}}}' for i in range(60)]
BAD = {
    '{"code": "int g(){}", "label": 1': "malformed JSON",
    '{"func": "int h(){}", "label": 0}': "no field 'code'",
    '{"code": "int k(){}", "label": 3}': "label field 'label' is 3",
    '{"code": "   \\n\\t", "label": 0}': "code field 'code' is empty",
}


def test_each_bad_record_is_named_by_its_line_and_nothing_is_written(tmp_path):
    for position, (line, message) in enumerate(BAD.items()):
        data = tmp_path / f"bad{position}.jsonl"
        data.write_text("\n".join(GOOD[:5] + [line] + GOOD[5:]) + "\n")
        one_line_error(run("train", "--arch", "cnn", "--data", str(data), "--out", str(tmp_path / "run")), f"bad{position}.jsonl:6: {message}")
    assert not (tmp_path / "run").exists()


def test_bytes_that_are_not_utf8_are_refused_with_their_line(tmp_path):
    data = tmp_path / "latin1.jsonl"
    data.write_bytes(("\n".join(GOOD[:2]) + "\n").encode() + '{"code": "char *s = \\"caf\xe9\\";", "label": 0}\n'.encode("latin-1"))
    one_line_error(run("train", "--arch", "cnn", "--data", str(data), "--out", str(tmp_path / "run")), "latin1.jsonl:3: not UTF-8")


def test_skip_bad_lines_leaves_them_out_counts_them_and_keeps_the_others_indices(tmp_path):
    from ssmscope.data import load_dataset

    data = tmp_path / "mixed.jsonl"
    lines = GOOD[:30] + list(BAD) + GOOD[30:]
    data.write_text("\n".join(lines) + "\n")
    skipped = []
    records = load_dataset(data, skipped=skipped)
    assert len(records) == 60 and len(skipped) == 4
    assert [m.split(": ", 1)[0] for m in skipped] == [f"{data}:{n}" for n in range(31, 35)]
    assert [r.index for r in records] == list(range(30)) + list(range(34, 64))  # positions in the source
    result = run("train", "--arch", "cnn", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--embed-dim", "8", "--device", "cpu", "--skip-bad-lines")
    assert result.returncode == 0, result.stderr
    assert "bad lines skipped: 4" in result.stdout


def test_a_200000_character_function_is_cut_to_max_len_and_counted():
    from ssmscope.data import Vocab, encode, tokenize
    from ssmscope.data.sources import Record

    code = "int f(int *a) { " + "a[0] = a[1] + 2; " * 11_800 + "}"
    assert len(code) > 200_000
    tokens = tokenize(code, "identifiers")
    split = encode([tokens], [1], Vocab.build([tokens], 1, 100), 1024, [Record(0, code, 1, "big.jsonl:1")])
    assert len(split.sequences[0]) == 1024 and split.truncated == 1


def test_a_tampered_run_config_cannot_direct_writes_outside_the_run_directory(tmp_path):
    """Output paths come from the command line and fixed names, never from a run's stored config:
    a model.pt whose config names a path-like architecture is refused before anything is written."""
    from ssmscope.config import RunConfig
    from ssmscope.train.checkpoint import save_model

    run_dir = tmp_path / "shared-run"
    run_dir.mkdir()
    save_model(run_dir / "model.pt", RunConfig("../../escaped", "../../etc/passwd"), ["<pad>", "<unk>"], {}, 1)
    (run_dir / "metrics.json").write_text("{}")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for command in (["analyze", "--run", str(run_dir)], ["probe", "--run", str(run_dir)]):
        one_line_error(run(*command), "unknown architecture '../../escaped'")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_compare_of_a_run_without_predictions_is_one_line(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"arch": "cnn", "data_path": "x.jsonl"}))
        (tmp_path / name / "metrics.json").write_text("{}")
    result = run("compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "predictions.csv: no predictions file; runs trained before predictions.csv existed must be retrained" in result.stderr
