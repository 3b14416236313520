"""More than one process: DDP through torchrun on CPU (gloo).

The truths: a single-process run with the same global batch (a second code path), the closed form
of the loss weighting, and sha256 computed here of the saved weights.
"""

import contextlib
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssmscope.errors import SsmscopeError
from ssmscope.train import load_run, predict
from ssmscope.train.distributed import Ranks
from ssmscope.train.loop import encode_for_run

EPOCHS = 3
# Two processes sum each batch's gradient in two halves and add them in the all-reduce, one process
# in one pass: the same numbers in another order. Over 3 epochs × 22 Adam steps that moves weights by
# about 2e-6 of their tensor's largest value (docs/METHODS.md); the bounds below leave 50x room.
WEIGHT_TOLERANCE = 1e-4  # |w_ddp - w_single| <= this · max|w_single| per tensor
PROBABILITY_TOLERANCE = 1e-4  # test-set probabilities of the two models
LOSS_TOLERANCE = 1e-5  # relative, per epoch's train loss


def train_args(data, out, *extra):
    return ["-m", "ssmscope", "train", "--arch", "smr_s4d", "--data", str(data), "--out", str(out), "--epochs", str(EPOCHS),
            "--batch-size", "15", "--max-len", "128", "--embed-dim", "32", "--device", "cpu", *extra]


def single(data, out, *extra):
    return [sys.executable, *train_args(data, out, *extra)]


def torchrun(data, out, *extra, processes=2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *train_args(data, out, *extra)]


def epochs(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)


def sha256_of(state_dict):
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode() + tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_two_processes_stay_in_step_and_match_one_process_with_the_same_global_batch(small_corpus, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(single(small_corpus, one, "--dropout", "0"), check=True, capture_output=True)  # dropout draws differ per rank
    result = subprocess.run(torchrun(small_corpus, two, "--dropout", "0"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("run written to") == 1  # rank 0 reports, rank 1 is quiet
    assert "2 processes (DDP, gloo)" in result.stdout
    assert sorted(p.name for p in two.iterdir()) == ["config.json", "metrics.json", "metrics.jsonl", "model.pt", "splits.json"]

    lines = epochs(two)
    for line in lines:  # every epoch, both ranks hashed their parameters, and the hashes agree
        assert line["ranks"] == 2 and len(line["parameters_sha256"]) == 2
        assert line["parameters_sha256"][0] == line["parameters_sha256"][1]
    saved = weights(two)
    assert sha256_of(saved["state_dict"]) == lines[saved["epoch"] - 1]["parameters_sha256"][0]  # the hash is of the weights

    reference = weights(one)
    assert saved["epoch"] == reference["epoch"]
    for name, w in reference["state_dict"].items():
        assert (saved["state_dict"][name] - w).abs().max() <= WEIGHT_TOLERANCE * w.abs().max(), name
    for a, b in zip(epochs(one), lines, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=LOSS_TOLERANCE)

    config, vocab, model_one = load_run(one)
    _, _, model_two = load_run(two)
    from ssmscope.data import load_dataset

    split = encode_for_run(config, vocab, load_dataset(str(small_corpus), "code", "label"))
    p_one, p_two = predict(model_one, split, 64, torch.device("cpu")), predict(model_two, split, 64, torch.device("cpu"))
    assert np.abs(p_one - p_two).max() <= PROBABILITY_TOLERANCE


def descendants(pid):
    """Every live process below ``pid`` (torchrun starts each rank in a session of its own)."""
    found = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it may have ended meanwhile
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in map(int, open(f"/proc/{pid}/task/{task}/children").read().split()):
                found += [child, *descendants(child)]
    return found


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(small_corpus, tmp_path, kill_inside_epoch_2):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    extra = ("--checkpoint-every", "1")  # dropout stays on (0.5): each rank's RNG stream must be restored
    subprocess.run(torchrun(small_corpus, whole, *extra), check=True, capture_output=True)

    job = subprocess.Popen(torchrun(small_corpus, killed, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = kill_inside_epoch_2(job, killed, pids=lambda: [job.pid, *descendants(job.pid)])  # launcher and ranks: a lost node
    assert not (killed / "metrics.json").exists()
    assert len(state["torch_rng"]) == 2  # every rank's stream

    alone = subprocess.run(single(small_corpus, killed, *extra, "--resume"), capture_output=True, text=True)
    assert alone.returncode == 2 and "written by 2 training process(es), this is 1" in alone.stderr

    resumed = subprocess.run(torchrun(small_corpus, killed, *extra, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at epoch 2, step" in resumed.stdout
    assert (killed / "metrics.json").read_bytes() == (whole / "metrics.json").read_bytes()
    drop_seconds = lambda lines: [{k: v for k, v in line.items() if k != "seconds"} for line in lines]  # noqa: E731
    assert drop_seconds(epochs(killed)) == drop_seconds(epochs(whole))
    a, b = weights(whole)["state_dict"], weights(killed)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 8, 15])
def test_the_shares_of_a_batch_weight_to_its_mean_loss(world_size, batch_size):
    """DDP averages over ranks, so (1/K) Σ_r weight_r · mean(ℓ over share_r) must be the batch mean."""
    batch = np.arange(100, 100 + batch_size)
    losses = np.random.default_rng(batch_size).random(200)
    shares = [Ranks(rank, world_size).share(batch) for rank in range(world_size)]
    averaged = sum(weight * losses[idx].mean() for idx, weight in shares) / world_size
    assert averaged == pytest.approx(losses[batch].mean(), rel=1e-12)
    counted = np.concatenate([idx for idx, weight in shares if weight > 0])
    assert sorted(counted) == list(batch)  # every function counted once
    assert all(len(idx) >= 1 for idx, _ in shares)  # every rank runs a forward pass (and joins the all-reduce)


def _compare_parameters(rank, store, perturb, results):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    if perturb and rank == 1:
        with torch.no_grad():
            model.weight[0, 0] = torch.nextafter(model.weight[0, 0], torch.tensor(2.0))  # one ulp
    try:
        results[rank] = Ranks(rank, 2).same_parameters(model.state_dict(), epoch=4)
    except SsmscopeError as e:
        results[rank] = str(e)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("perturb", [False, True])
def test_the_parameter_check_stops_ranks_that_differ_by_one_ulp(tmp_path, perturb):
    results = mp.Manager().dict()
    mp.spawn(_compare_parameters, args=(str(tmp_path / "store"), perturb, results), nprocs=2)
    if perturb:
        assert all(results[r].startswith("epoch 4: the parameters differ between ranks") for r in (0, 1))
    else:
        assert results[0] == results[1] and len(results[0]) == 2 and results[0][0] == results[0][1]


def test_commands_other_than_train_refuse_to_run_under_torchrun(tmp_path):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1"}
    result = subprocess.run([sys.executable, "-m", "ssmscope", "analyze", "--run", str(tmp_path)], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == "ssmscope: error (rank 1): ssmscope analyze runs as one process; under torchrun only `ssmscope train` (DDP) runs"
