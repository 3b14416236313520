"""The command as a user runs it: a real process, exit codes, one-line errors."""

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
