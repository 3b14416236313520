"""More than one process: DDP through torchrun on CPU (gloo).

The truths: a single-process run with the same global batch (a second code path), the closed form
of the loss weighting, and sha256 computed here of the saved weights.
"""

import contextlib
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from run_files import epoch_lines, model_file, same_weights
from torch.nn.parallel import DistributedDataParallel

from ssmscope.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ssmscope.host import threads_set_to
from ssmscope.models import build_model
from ssmscope.train import load_run, predict, prepare_data
from ssmscope.train.distributed import Ranks
from ssmscope.train.loop import encode_for_run, train_epoch

EPOCHS = 3
# Every comparison fixes torch's thread count at 1 in every process: the per-thread partial sums of a
# reduction are added in another order at another count, and SGD below turns that into differences of
# 5e-4 in the loss on some CPUs (docs/METHODS.md, "Reproducibility"). torchrun also sets 1 per rank.
THREADS = "1"
# Two processes sum each batch's gradient in two halves and add them in the all-reduce, one process
# in one pass: the same numbers in another order. Over 3 epochs × 30 Adam steps that moves weights by
# about 4e-6 of their tensor's largest value (docs/METHODS.md); the bounds below leave 20x room.
WEIGHT_TOLERANCE = 1e-4  # |w_ddp - w_single| <= this · max|w_single| per tensor
PROBABILITY_TOLERANCE = 1e-4  # test-set probabilities of the two models
LOSS_TOLERANCE = 1e-5  # relative, per epoch's train loss


def train_args(data, out, *extra, arch="smr_s4d"):  # batch 11: shares of 6 + 5, and each epoch ends with a 1-function batch (an empty share)
    return ["-m", "ssmscope", "train", "--arch", arch, "--data", str(data), "--out", str(out), "--epochs", str(EPOCHS),
            "--batch-size", "11", "--max-len", "128", "--embed-dim", "32", "--device", "cpu", "--threads", THREADS, *extra]


def single(data, out, *extra, arch="smr_s4d"):
    return [sys.executable, *train_args(data, out, *extra, arch=arch)]


def torchrun(data, out, *extra, processes=2, arch="smr_s4d"):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *train_args(data, out, *extra, arch=arch)]


def sha256_of(state_dict):
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode() + tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("arch", ["smr_s4d", "mamba"])  # mamba: the compiled scan (numba) inside each rank
def test_two_processes_stay_in_step_and_match_one_process_with_the_same_global_batch(small_corpus, tmp_path, arch):
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(single(small_corpus, one, "--dropout", "0", arch=arch), check=True, capture_output=True)  # dropout draws differ per rank
    result = subprocess.run(torchrun(small_corpus, two, "--dropout", "0", arch=arch), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("run written to") == 1  # rank 0 reports, rank 1 is quiet
    assert "2 processes (DDP, gloo)" in result.stdout
    assert sorted(p.name for p in two.iterdir()) == ["config.json", "metrics.json", "metrics.jsonl", "model.pt", "predictions.csv", "splits.json"]

    lines = epoch_lines(two)
    for line in lines:  # every epoch, both ranks hashed their parameters, and the hashes agree
        assert line["ranks"] == 2 and len(line["parameters_sha256"]) == 2
        assert line["parameters_sha256"][0] == line["parameters_sha256"][1]
    saved = model_file(two)
    assert sha256_of(saved["state_dict"]) == lines[saved["epoch"] - 1]["parameters_sha256"][0]  # the hash is of the weights

    reference = model_file(one)
    assert saved["epoch"] == reference["epoch"]
    for name, w in reference["state_dict"].items():
        assert (saved["state_dict"][name] - w).abs().max() <= WEIGHT_TOLERANCE * w.abs().max(), name
    for a, b in zip(epoch_lines(one), lines, strict=True):
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
    first = subprocess.run(torchrun(small_corpus, whole, *extra), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr

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
    assert epoch_lines(killed) == epoch_lines(whole)
    assert same_weights(whole, killed)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("batch_size", range(1, 16))
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


def _join(rank, world_size, store):
    if world_size > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    return Ranks(rank, world_size)


# The SGD test runs in float64: SGD at lr 0.1 amplifies the rounding of a different summation order
# (two half-batch sums plus the all-reduce) by about 10^8 over the epoch, through near-ties of the
# max-pool that flip. In float32 that reached 5e-4 in the loss on some CPUs; in float64 the largest
# difference measured was 1.5e-8 of a tensor's largest weight and 1e-10 in the loss (ATen's scalar
# kernels, ATEN_CPU_CAPABILITY=default), 2e-15 with its AVX-512 kernels.
SGD_WEIGHT_TOLERANCE = 1e-6
SGD_LOSS_TOLERANCE = 1e-8


def _sgd_epoch(rank, world_size, store, corpus, results):
    """One epoch of train_epoch with plain SGD, whose update is proportional to the gradient: a wrong
    loss weight (a factor K, say) moves the weights visibly, where Adam would normalise it away."""
    ranks = _join(rank, world_size, store)
    config = RunConfig("smr_s4d", str(corpus), data=DataConfig(max_len=128), model=ModelConfig(embed_dim=16, dropout=0.0),
                       train=TrainConfig(batch_size=11, device="cpu"))  # 320 functions: the last batch has 1, rank 1's share is empty
    torch.manual_seed(0)
    data = prepare_data(config)
    model = build_model(config.arch, len(data.vocab), config.model).double()
    initial = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(2.0, dtype=torch.float64))
    stepped = DistributedDataParallel(model) if world_size > 1 else model
    with threads_set_to(int(THREADS)):  # the one-process reference runs inside pytest: restored afterwards
        loss = train_epoch(stepped, optimizer, loss_fn, data.splits["train"], config, 1, torch.device("cpu"), ranks)
    results[rank] = (initial, {k: v.numpy().copy() for k, v in model.state_dict().items()}, loss)
    if world_size > 1:
        dist.destroy_process_group()


def test_a_two_process_sgd_epoch_takes_the_one_process_steps(small_corpus, tmp_path):
    one, two = {}, mp.Manager().dict()
    _sgd_epoch(0, 1, None, small_corpus, one)
    mp.spawn(_sgd_epoch, args=(2, str(tmp_path / "store"), small_corpus, two), nprocs=2)
    (initial, reference, reference_loss), (_, weights0, loss0), (_, weights1, loss1) = one[0], two[0], two[1]
    assert loss0 == loss1 == pytest.approx(reference_loss, rel=SGD_LOSS_TOLERANCE)
    for name, w in reference.items():
        assert w.dtype == np.float64 and np.array_equal(weights0[name], weights1[name]), name  # the ranks agree exactly
        assert np.abs(weights0[name] - w).max() <= SGD_WEIGHT_TOLERANCE * np.abs(w).max(), name
    # SGD moved the weights far more than the tolerance, so a gradient off by any factor would show
    assert max(np.abs(reference[k] - initial[k]).max() / np.abs(reference[k]).max() for k in reference) > 100 * SGD_WEIGHT_TOLERANCE


def _rank_checks(rank, store, disagree, results):
    """Every guard of distributed.py on two gloo ranks; ``disagree``: rank 1 differs from rank 0."""
    ranks = _join(rank, 2, store)
    outcome = {}
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    if disagree and rank == 1:
        with torch.no_grad():
            model.weight[0, 0] = torch.nextafter(model.weight[0, 0], torch.tensor(2.0))  # one ulp
    checks = {
        "parameters": lambda: ranks.same_parameters(model.state_dict(), epoch=4),
        "data": lambda: ranks.same_everywhere("data", "b" if disagree and rank == 1 else "a"),
        "rank 0 fails": lambda: ranks.on_main(lambda: open(os.path.join(store + "-missing", "x"), "w") if disagree else 7),
    }
    for name, check in checks.items():
        try:
            outcome[name] = check()
        except Exception as e:
            outcome[name] = f"{type(e).__name__}: {e}"
    results[rank] = outcome
    dist.destroy_process_group()


@pytest.mark.parametrize("disagree", [False, True])
def test_ranks_that_disagree_stop_together_and_say_why(tmp_path, disagree):
    results = mp.Manager().dict()
    mp.spawn(_rank_checks, args=(str(tmp_path / "store"), disagree, results), nprocs=2)
    first, second = results[0], results[1]
    if disagree:
        for outcome in (first, second):
            assert outcome["parameters"].startswith("SsmscopeError: epoch 4: the parameters differ between ranks")
            assert outcome["data"].startswith("SsmscopeError: rank(s) [1] have another data than rank 0")
        assert first["rank 0 fails"].startswith("FileNotFoundError")  # rank 0 keeps its own error
        assert second["rank 0 fails"].startswith("SsmscopeError: rank 0 stopped (FileNotFoundError")  # and rank 1 is told
    else:
        assert first["parameters"] == second["parameters"] and len(set(first["parameters"])) == 1
        assert first["data"] is None and second["data"] is None
        assert first["rank 0 fails"] == second["rank 0 fails"] == 7  # rank 0's result reaches rank 1


def test_commands_other_than_train_refuse_to_run_under_torchrun(tmp_path):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "1"}
    result = subprocess.run([sys.executable, "-m", "ssmscope", "analyze", "--run", str(tmp_path)], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == "ssmscope: error (rank 1): ssmscope analyze runs as one process; under torchrun only `ssmscope train` (DDP) runs"
