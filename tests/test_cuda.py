"""The CUDA path: the selective scan, the Mamba block and whole runs on a GPU.

Skipped where no CUDA device is (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``.
The truths are those of the CPU tests: the float64 loop of test_mamba, and the same model trained on
the CPU from the same initial weights (a second code path). On CUDA the scan is the PyTorch path
(chunks under activation checkpointing); the numba loops are CPU-only.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from run_files import epoch_lines, model_file
from test_mamba import NAMES, loop_scan, relative_error, scan_problem, value_and_grads

from ssmscope.models import mamba
from ssmscope.models.mamba import Mamba, scan_attention, selective_scan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
# Trained on the GPU and on the CPU from the same weights with dropout 0, two models differ by the
# rounding of other kernels (cuBLAS, cuDNN's TF32 convolutions) carried through 3 epochs of Adam.
WEIGHT_TOLERANCE = 1e-2  # |w_cuda − w_cpu| ≤ this · max|w_cpu| per tensor
PROBABILITY_TOLERANCE = 1e-2  # test-set probabilities of the two models


@pytest.mark.parametrize("length", [1, 37, 300])
def test_the_scan_and_its_gradients_on_cuda_match_a_float64_loop(length):
    problem = [x.to(CUDA) for x in scan_problem(length=length)]
    assert not mamba._numba_applies(*problem)  # CUDA tensors take the PyTorch path
    y, grads = value_and_grads(selective_scan, problem)
    assert y.device.type == "cuda" and all(g.device.type == "cuda" for g in grads)
    y64, grads64 = value_and_grads(loop_scan, [x.cpu().double() for x in problem])
    assert relative_error(y.cpu(), y64) < 1e-5
    for name, g, g64 in zip(NAMES, grads, grads64):
        assert relative_error(g.cpu(), g64) < 1e-4, name


@pytest.mark.parametrize("window", [1, 33])
def test_the_windowed_scan_on_cuda_equals_the_float64_windowed_scan(window):
    problem = scan_problem(length=80)
    y = selective_scan(*(x.to(CUDA) for x in problem), window=window)
    expected = selective_scan(*(x.double() for x in problem), window=window)  # tested against restarted scans in test_mamba
    assert relative_error(y.cpu(), expected) < 1e-5


def test_scan_attention_on_cuda_reproduces_the_scan():
    u, delta, A, B, C, D = (x.to(CUDA) for x in scan_problem(length=90))
    alpha = scan_attention(delta, A, B, C)  # (batch, D, L, L)
    mixed = torch.einsum("bdts,bds->bdt", alpha, u)
    assert relative_error(mixed.cpu(), (selective_scan(u, delta, A, B, C, D) - D[:, None] * u).cpu()) < 1e-5


def test_the_mamba_block_on_cuda_equals_the_cpu_block_and_steps_like_its_forward():
    torch.manual_seed(3)
    block = Mamba(d_model=16)
    u = torch.randn(2, 16, 60)
    reference = block.double()(u.double())  # float64 on the CPU
    on_gpu = block.float().to(CUDA)
    y = on_gpu(u.to(CUDA))
    assert relative_error(y.cpu(), reference) < 1e-3  # cuDNN may run the depthwise convolution in TF32
    state = on_gpu.default_state(2)
    steps = []
    with torch.no_grad():
        for t in range(u.shape[-1]):
            y_t, state = on_gpu.step(u[..., t].to(CUDA), state)
            steps.append(y_t)
    assert relative_error(torch.stack(steps, dim=-1).cpu(), reference) < 1e-3


def train_command(data, out, device, arch, *extra):
    return [sys.executable, "-m", "ssmscope", "train", "--arch", arch, "--data", str(data), "--out", str(out), "--epochs", "3",
            "--batch-size", "16", "--max-len", "64", "--embed-dim", "32", "--dropout", "0", "--device", device, "--threads", "1", *extra]


def train(data, out, device, arch, *extra):
    result = subprocess.run(train_command(data, out, device, arch, *extra), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("arch", ["smr_s4d", "mamba-2layers"])
def test_a_run_trained_on_cuda_matches_the_cpu_run_and_is_evaluated_probed_analysed_and_reported(small_corpus, tmp_path, arch):
    gpu, cpu = tmp_path / "gpu", tmp_path / "cpu"
    assert "device cuda" in train(small_corpus, gpu, "cuda", arch)
    train(small_corpus, cpu, "cpu", arch)
    assert json.loads((gpu / "config.json").read_text())["train"]["device"] == "cuda"

    on_gpu, on_cpu = model_file(gpu), model_file(cpu)
    assert on_gpu["epoch"] == on_cpu["epoch"]
    for name, w in on_cpu["state_dict"].items():
        assert on_gpu["state_dict"][name].device.type == "cpu"  # saved for any machine
        assert (on_gpu["state_dict"][name] - w).abs().max() <= WEIGHT_TOLERANCE * w.abs().max(), name
    for a, b in zip(epoch_lines(cpu), epoch_lines(gpu), strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)

    def probabilities(path):
        return np.loadtxt(path, delimiter=",", skiprows=1, usecols=-1)

    assert np.abs(probabilities(gpu / "predictions.csv") - probabilities(cpu / "predictions.csv")).max() <= PROBABILITY_TOLERANCE
    cli = [sys.executable, "-m", "ssmscope"]
    for device in ("cuda", "cpu"):  # the same weights scored on either device
        subprocess.run([*cli, "evaluate", "--run", str(gpu), "--data", str(small_corpus), "--device", device,
                        "--out", str(tmp_path / f"evaluated-{device}.json")], check=True, capture_output=True)
    scored = {device: probabilities(tmp_path / f"evaluated-{device}.predictions.csv") for device in ("cuda", "cpu")}
    assert len(scored["cuda"]) == 400 and np.abs(scored["cuda"] - scored["cpu"]).max() <= 1e-4
    subprocess.run([*cli, "probe", "--run", str(gpu), "--device", "cuda"], check=True, capture_output=True)
    subprocess.run([*cli, "analyze", "--run", str(gpu), "--null-draws", "0", "--limit", "8"], check=True, capture_output=True)
    subprocess.run([*cli, "report", "--out", str(tmp_path / "report"), str(gpu)], check=True, capture_output=True)
    probes = json.loads((gpu / "probes" / "test-split.json").read_text())
    assert probes["truncation"][-1]["roc_auc"] == pytest.approx(probes["unmodified"]["roc_auc"], abs=1e-6)  # the full window changes nothing
    assert (tmp_path / "report" / "report.html").is_file()


def test_a_cuda_run_killed_mid_epoch_resumes_on_cuda(small_corpus, tmp_path, kill_inside_epoch_2):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    extra = ("--batch-size", "8", "--checkpoint-every", "1")  # 8: several steps per epoch to be killed inside
    train(small_corpus, whole, "cuda", "mamba", *extra)
    command = train_command(small_corpus, killed, "cuda", "mamba", *extra)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_inside_epoch_2(process, killed)
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at epoch 2" in resumed.stdout
    a, b = model_file(whole)["state_dict"], model_file(killed)["state_dict"]
    for name, w in a.items():  # CUDA's atomics may add in another order: close, not always bit-equal
        assert (b[name] - w).abs().max() <= 1e-4 * w.abs().max(), name
