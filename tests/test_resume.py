"""Never lose a run: SIGKILL mid-epoch and --resume, one writer per run directory, non-finite loss."""

import json
import signal
import subprocess
import sys

import torch

from run_files import epoch_lines, same_weights
from ssmscope.files import exclusive_directory
from ssmscope.host import host_record
from ssmscope.train.checkpoint import load_training_state, save_training_state

EPOCHS = 3


def train_command(data, out, *extra):
    return [sys.executable, "-m", "ssmscope", "train", "--arch", "s4d", "--data", str(data), "--out", str(out),
            "--epochs", str(EPOCHS), "--batch-size", "8", "--max-len", "128", "--embed-dim", "32", "--device", "cpu",
            "--checkpoint-every", "1", *extra]


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(small_corpus, tmp_path, kill_inside_epoch_2):
    """Both runs train on 1 thread; the resume names no --threads, so it must keep the recorded count
    (on a host whose default is not 1 it would otherwise continue with other rounding)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(train_command(small_corpus, whole, "--threads", "1"), check=True, capture_output=True)

    process = subprocess.Popen(train_command(small_corpus, killed, "--threads", "1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = kill_inside_epoch_2(process, killed)
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()
    assert state["hosts"] == [{**host_record(), "threads": 1}]  # the checkpoint says what its bits depend on

    resumed = subprocess.run(train_command(small_corpus, killed, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at epoch 2, step" in resumed.stdout and "threads: 1, as the interrupted run used" in resumed.stdout
    assert "warning" not in resumed.stdout
    assert (killed / "metrics.json").read_bytes() == (whole / "metrics.json").read_bytes()
    assert epoch_lines(killed) == epoch_lines(whole)  # every epoch once, with the same loss and validation metrics
    assert same_weights(whole, killed)
    assert not (killed / "checkpoint.pt").exists()  # finished: nothing left to resume
    environment = json.loads((killed / "config.json").read_text())["environment"]
    assert environment["threads"] == 1 and environment["cpu"] == host_record()["cpu"]
    assert [(r["epoch"], r["threads"]) for r in environment["resumed"]] == [(2, 1)]


def test_resume_on_another_cpu_or_thread_count_says_it_will_not_be_bit_identical(small_corpus, tmp_path):
    """A run stopped by a non-finite loss leaves checkpoint.pt behind; its recorded host is then
    edited to stand for another machine, and each resume must say what differs."""
    out = tmp_path / "run"
    diverging = ("--lr", "1e30", "--threads", "1")  # stops at step 2 or later, leaving the step before
    assert subprocess.run(train_command(small_corpus, out, *diverging), capture_output=True).returncode == 2
    state = load_training_state(out / "checkpoint.pt")
    state["hosts"] = [{**state["hosts"][0], "cpu": "Another CPU 9000", "threads": 3}]
    save_training_state(out / "checkpoint.pt", {k: v for k, v in state.items() if k != "format"})

    kept = subprocess.run(train_command(small_corpus, out, "--resume", "--lr", "1e30"), capture_output=True, text=True)
    assert "threads: 3, as the interrupted run used" in kept.stdout  # no --threads: the recorded count
    warning = next(line for line in kept.stdout.splitlines() if line.startswith("warning:"))
    assert f"CPU 'Another CPU 9000' then, {host_record()['cpu']!r} now" in warning and "not be bit-identical" in warning
    assert "threads" not in warning  # the count was kept

    told = subprocess.run(train_command(small_corpus, out, "--resume", "--lr", "1e30", "--threads", "2"), capture_output=True, text=True)
    warning = next(line for line in told.stdout.splitlines() if line.startswith("warning:"))
    assert "threads 3 then, 2 now" in warning and "Another CPU 9000" in warning
    assert told.returncode == kept.returncode == 2 and "the training loss is" in told.stderr  # the same settings otherwise


def test_resume_refuses_a_finished_run_and_other_settings(small_corpus, tmp_path):
    out = tmp_path / "run"
    subprocess.run(train_command(small_corpus, out), check=True, capture_output=True)
    finished = subprocess.run(train_command(small_corpus, out, "--resume"), capture_output=True, text=True)
    assert finished.returncode == 2 and "has finished; nothing to resume" in finished.stderr
    empty = subprocess.run(train_command(small_corpus, tmp_path / "never", "--resume"), capture_output=True, text=True)
    assert empty.returncode == 2 and "nothing to resume" in empty.stderr


def test_a_second_writer_of_the_same_run_directory_is_refused(small_corpus, tmp_path):
    out = tmp_path / "run"
    with exclusive_directory(out):  # stands for a training process that holds the directory
        second = subprocess.run(train_command(small_corpus, out), capture_output=True, text=True)
    assert second.returncode == 2
    assert "another ssmscope process is writing this run directory" in second.stderr
    assert list(out.iterdir()) == []  # the refused process wrote nothing


def test_a_non_finite_loss_stops_with_epoch_and_step_and_keeps_the_last_checkpoint(small_corpus, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(train_command(small_corpus, out, "--lr", "1e30"), capture_output=True, text=True)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line.startswith("ssmscope: error: epoch 1, step ") and "the training loss is" in line and "\n" not in line
    step = int(line.split("step ")[1].split(":")[0])
    assert step > 1  # lr 1e30 blows up at the second step on CPU, so a good step came before it
    state = load_training_state(out / "checkpoint.pt")  # whose checkpoint stays, loadable
    assert (state["epoch"], state["step"]) == (1, step - 1)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (out / "metrics.json").exists()


def test_a_resume_state_written_before_ddp_still_loads_as_one_rank(tmp_path):
    rng = torch.get_rng_state()
    torch.save({"format": "ssmscope.training-state/1", "torch_rng": rng, "epoch": 2, "step": 5}, tmp_path / "checkpoint.pt")
    state = load_training_state(tmp_path / "checkpoint.pt")
    assert state["world_size"] == 1 and len(state["torch_rng"]) == 1 and torch.equal(state["torch_rng"][0], rng)
    assert (state["epoch"], state["step"]) == (2, 5)
