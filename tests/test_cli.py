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
