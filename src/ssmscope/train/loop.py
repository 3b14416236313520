"""Training and evaluation of one run.

``train_run`` does the whole job for one architecture on one dataset: read and prepare the data,
build the vocabulary from the train split, train for a fixed number of epochs with class-weighted
BCE, keep the epoch with the best validation metric (``--select-by``, vulnerable-class F1 by
default), and evaluate that model once on the test split. Everything lands in the run directory:

    config.json    the RunConfig (rebuilds the run) + library versions, git commit, number of processes,
                   CPU model and thread count (what the bits depend on: ssmscope.host), and every resume
    splits.json    de-duplication counts and each split as record indices into the source
    metrics.jsonl  one line per epoch: train loss, validation metrics, seconds (+ each rank's parameter hash under DDP)
    kernels.jsonl  with --track-kernels: every kernel layer's spectral summary, epoch 0 (initial) to E
    metrics.json   test metrics of the best epoch (+ best_epoch, select_by, the validation-tuned threshold's metrics)
    predictions.csv  split,index,label,probability of the best epoch's model on valid and test (metrics.json follows from it)
    model.pt       best weights, vocabulary, config (torch.load(..., weights_only=True))
    checkpoint.pt  while training: the state --resume continues from (removed at the end)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import shutil
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from ..allocator import loaded_allocator
from ..analysis.kernels import kernel_snapshot
from ..config import RECOMPUTE_MODES, RunConfig
from ..data import EncodedSplit, Vocab, collate, encode, length_grouped_batches, load_dataset, prepare, sorted_batches, tokenize
from ..errors import SsmscopeError
from ..models import build_model, resolve_arch
from ..files import append_jsonl, exclusive_directory, keep_epochs, write_json, write_text
from ..host import differences, host_record, threads_set_to
from .distributed import Ranks, process_group
from .checkpoint import load_model_file, load_training_state, save_model, save_training_state
from .metrics import SELECTION_METRICS, binary_metrics, metrics_at_threshold, metrics_with_tuned_threshold
from .progress import ProgressBar

RESUME_FILE = "checkpoint.pt"  # training state for --resume; removed when the run finishes
PREDICTIONS_FILE = "predictions.csv"
RUN_FILES = ("config.json", "splits.json", "metrics.jsonl", "metrics.json", "model.pt", "kernels.jsonl", PREDICTIONS_FILE, RESUME_FILE)
DERIVED_DIRS = ("analysis", "evaluations", "probes")  # made from model.pt; stale once the run is retrained


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SsmscopeError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise SsmscopeError(f"--device: unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def validate(config: RunConfig) -> None:
    """Settings that cannot work, reported before anything is read or written."""
    _, m = resolve_arch(config.arch, config.model)
    t, d = config.train, config.data
    checks = [
        (t.epochs >= 1, f"--epochs must be at least 1, got {t.epochs}"),
        (t.batch_size >= 1, f"--batch-size must be at least 1, got {t.batch_size}"),
        (t.lr > 0, f"--lr must be positive, got {t.lr}"),
        (t.pad_to_multiple >= 1, f"train.pad_to_multiple must be at least 1, got {t.pad_to_multiple}"),
        (t.bucket_chunk_batches >= 1, f"train.bucket_chunk_batches must be at least 1, got {t.bucket_chunk_batches}"),
        (t.checkpoint_every >= 1, f"--checkpoint-every must be at least 1, got {t.checkpoint_every}"),
        (t.threads is None or t.threads >= 1, f"--threads must be at least 1, got {t.threads}"),
        (t.select_by in SELECTION_METRICS, f"--select-by: unknown metric {t.select_by!r}; choose one of {', '.join(SELECTION_METRICS)}"),
        (t.recompute_branches in RECOMPUTE_MODES, f"--recompute-branches: unknown mode {t.recompute_branches!r}; choose one of {', '.join(RECOMPUTE_MODES)}"),
        (d.max_len >= max(m.kernel_sizes + (m.smr_kernel_size,)), f"--max-len {d.max_len} is shorter than the largest convolution ({max(m.kernel_sizes + (m.smr_kernel_size,))})"),
        (d.limit is None or d.limit >= 10, f"--limit must be at least 10, got {d.limit}"),
        (bool(d.split_by) == bool(d.test_groups), "--split-by FIELD and --test-group VALUE go together: name the field and the test group(s)"),
        (m.d_state >= 2 and m.d_state % 2 == 0, f"d_state must be an even number >= 2, got {m.d_state}"),
    ]
    for ok, message in checks:
        if not ok:
            raise SsmscopeError(message)


def environment() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "ssmscope": __version__,
        "git_commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "allocator": loaded_allocator(),  # memory only, never the numbers (allocator.py)
    }


@dataclass
class TokenizedData:
    vocab: Vocab
    splits: dict[str, EncodedSplit]
    counts: dict[str, int]
    indices: dict[str, list[int]]


def prepare_data(config: RunConfig) -> TokenizedData:
    """Read, de-duplicate, split, tokenize and encode; the vocabulary comes from train only."""
    d = config.data
    skipped = [] if d.skip_bad_lines else None
    records = load_dataset(config.data_path, d.code_field, d.label_field, skipped, group_field=d.split_by)
    prepared = prepare(records, d.split, d.limit, config.train.seed, config.data_path, d.test_groups, d.split_by)
    tokens = {name: [tokenize(r.code, d.normalize) for r in rs] for name, rs in prepared.splits.items()}
    vocab = Vocab.build(tokens["train"], d.min_count, d.max_vocab)
    splits = {
        name: encode(tokens[name], [r.label for r in rs], vocab, d.max_len, rs)
        for name, rs in prepared.splits.items()
    }
    counts = dict(prepared.counts)
    for name, split in splits.items():
        counts[f"{name}_truncated"] = split.truncated
    counts["vocab_size"] = len(vocab)
    counts["bad_lines_skipped"] = len(skipped or [])
    return TokenizedData(vocab, splits, counts, prepared.indices())


@torch.no_grad()
def predict(model: nn.Module, split: EncodedSplit, batch_size: int, device: torch.device, rows: np.ndarray | None = None) -> np.ndarray:
    """Probability of label 1 for every function of ``split`` (or only ``rows`` of it), in that order."""
    model.eval()
    rows = np.arange(len(split.sequences)) if rows is None else rows
    probabilities = np.empty(len(rows), dtype=np.float64)
    for batch in sorted_batches(split.lengths[rows], batch_size):  # positions in rows
        tokens, lengths = collate(split.sequences, rows[batch])  # unpadded: probes filter kernels at the batch's length
        logits = model(tokens.to(device), lengths.to(device))  # (B,)
        probabilities[batch] = torch.sigmoid(logits.double()).cpu().numpy()  # float64: no ties from saturation
    return probabilities


def predict_shared(model: nn.Module, split: EncodedSplit, batch_size: int, device: torch.device, ranks: Ranks) -> np.ndarray:
    """:func:`predict` with the functions dealt out over the ranks by length; every rank gets all probabilities."""
    if ranks.world_size == 1:
        return predict(model, split, batch_size, device)
    rows = np.argsort(split.lengths, kind="stable")[ranks.rank :: ranks.world_size]
    probabilities = np.empty(len(split.sequences), dtype=np.float64)
    for their_rows, their_probabilities in ranks.gather((rows, predict(model, split, batch_size, device, rows))):
        probabilities[their_rows] = their_probabilities
    return probabilities


def recompute_branches(mode: str, model: nn.Module) -> bool:
    """Whether training recomputes each branch in backward (DetectorModel.features): "on", "off", or
    "auto" = when more than one branch holds an S4D, the models whose activation memory is a sum
    over branches (conv_s4d and depthwise_s4d at any depth; docs/PERFORMANCE.md, "Memory")."""
    return mode == "on" or (mode == "auto" and len(model.s4d_branches()) > 1)


def train_epoch(
    model, optimizer, loss_fn, split: EncodedSplit, config: RunConfig, epoch: int, device, ranks: Ranks = Ranks(),
    start_step: int = 0, loss_total: float = 0.0, loss_count: int = 0, after_step: Callable | None = None,
) -> float:
    """One pass over the train split in length-grouped batches; returns the mean loss per function.

    The batch order depends only on (seed, epoch), so a resumed epoch skips its first ``start_step``
    batches and continues with the running loss sums it was given. Under DDP each rank trains on its
    share of every batch (``Ranks.share``) and the loss sums cover all ranks. ``after_step(step,
    total, count)`` is called after every optimiser step (step counts from 1). A non-finite loss
    stops training before the update, naming epoch and step.
    """
    t = config.train
    model.train()
    rng = np.random.default_rng([t.seed, epoch])
    lengths_all = split.lengths  # (n,)
    batches = length_grouped_batches(lengths_all, t.batch_size, rng, t.bucket_chunk_batches)
    labels = torch.from_numpy(split.labels).float()
    total, count = loss_total, loss_count
    with ProgressBar(len(batches) - start_step, f"epoch {epoch}/{t.epochs}", enabled=ranks.is_main) as bar:
        for step, batch in enumerate(batches[start_step:], start=start_step + 1):
            idx, weight = ranks.share(batch)
            width = int(lengths_all[batch].max())  # every rank pads to the whole batch's width
            tokens, lengths = collate(split.sequences, idx, t.pad_to_multiple, min_width=width)
            logits = model(tokens.to(device), lengths.to(device))  # (B,)
            loss = loss_fn(logits, labels[idx].to(device, logits.dtype))  # mean over this rank's functions
            batch_total = ranks.sum(loss.item() * len(idx) * (weight > 0))  # summed over the whole batch
            if not np.isfinite(batch_total):
                raise SsmscopeError(
                    f"epoch {epoch}, step {step}: the training loss is {batch_total / len(batch)}; lower --lr "
                    f"(the last checkpoint and model.pt are kept; no test metrics were written)"
                )
            if ranks.world_size > 1:
                loss = loss * weight  # DDP averages over ranks: the gradient of the global batch's mean
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += batch_total
            count += len(batch)
            bar.update(loss=total / count)
            if after_step is not None:
                after_step(step, total, count)
    return total / count


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if existing and not overwrite:
        hint = "; it was interrupted: add --resume to continue it" if RESUME_FILE in existing and "metrics.json" not in existing else ""
        raise SsmscopeError(f"{out_dir}: already holds a run ({', '.join(existing)}); choose another --out or pass --overwrite{hint}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in existing:
        (out_dir / name).unlink()
    for name in DERIVED_DIRS:
        shutil.rmtree(out_dir / name, ignore_errors=True)


def train_run(
    config: RunConfig, out_dir: str | Path, overwrite: bool = False, resume: bool = False, log: Callable[[str], None] = print
) -> dict:
    """Train ``config.arch`` and write the run directory; returns the test metrics.

    With ``resume`` the run continues from ``checkpoint.pt`` (written every ``checkpoint_every``
    steps and after every epoch) and ends exactly as an uninterrupted run would on the same CPU type
    with the same thread count: without ``--threads`` a resume keeps the count the run recorded, and
    a resume on another CPU or with another count says that its result will not be bit-identical.
    Only one process may train into a run directory at a time. Started by torchrun, the processes
    train one model with DistributedDataParallel (``ssmscope.train.distributed``); every rank
    returns the same metrics and only rank 0 writes.
    """
    validate(config)
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise SsmscopeError("--resume continues a run and --overwrite replaces it: choose one")
    with process_group(resolve_device(config.train.device)) as (ranks, device):
        torch.manual_seed(config.train.seed)
        data = prepare_data(config)
        if ranks.world_size > 1:
            ranks.same_everywhere("configuration or data", _run_digest(config, data))
        with ExitStack() as held:

            def open_run_dir() -> dict | None:  # rank 0 only: lock, then the resume state or a clean directory
                held.enter_context(exclusive_directory(out_dir))
                state = _resume_state(out_dir, config, ranks.world_size) if resume else None
                if state is None:
                    _prepare_out_dir(out_dir, overwrite)
                return state

            state = ranks.on_main(open_run_dir)
            log = log if ranks.is_main else _quiet
            held.enter_context(threads_set_to(_threads_to_use(config, state, log)))
            return _train(config, data, out_dir, device, state, log, ranks)


def _quiet(_: str) -> None:
    pass


def _threads_to_use(config: RunConfig, state: dict | None, log: Callable[[str], None]) -> int | None:
    """--threads when given; else, when resuming, the count the interrupted run trained with (so that
    it continues bit-identically); else None (torch's choice)."""
    recorded = (state or {}).get("hosts")
    if config.train.threads is None and recorded:
        log(f"threads: {recorded[0]['threads']}, as the interrupted run used (--threads N changes it)")
        return recorded[0]["threads"]
    return config.train.threads


def _run_digest(config: RunConfig, data: TokenizedData) -> str:
    """sha256 of the settings and of every split's records, labels and token ids: equal on every rank or the ranks train different things."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update("\n".join(data.vocab.tokens).encode())
    for name, split in data.splits.items():
        digest.update(name.encode() + np.asarray(data.indices[name], dtype=np.int64).tobytes() + split.labels.tobytes())
        digest.update(split.lengths.tobytes() + np.concatenate(split.sequences).tobytes())
    return digest.hexdigest()


def _resume_state(out_dir: Path, config: RunConfig, world_size: int) -> dict:
    if (out_dir / "metrics.json").is_file():
        raise SsmscopeError(f"{out_dir}: this run has finished; nothing to resume")
    state = load_training_state(out_dir / RESUME_FILE)
    stored = RunConfig.from_dict(state["config"])
    if stored.with_train(checkpoint_every=0, threads=None) != config.with_train(checkpoint_every=0, threads=None):  # free to change
        raise SsmscopeError(f"{out_dir / RESUME_FILE}: was written with other settings; resume with the same command as the killed run")
    if state["world_size"] != world_size:
        raise SsmscopeError(
            f"{out_dir / RESUME_FILE}: was written by {state['world_size']} training process(es), this is {world_size}; "
            f"resume with the same number (torchrun --nproc_per_node, --nnodes)"
        )
    if state["best_epoch"]:  # sent to every rank with the rest: nodes need not share the run directory
        state["best_model"] = load_model_file(out_dir / "model.pt")["state_dict"]
    return state


def _train(
    config: RunConfig, data: TokenizedData, out_dir: Path, device, state: dict | None, log: Callable[[str], None], ranks: Ranks
) -> dict:
    c = data.counts
    log(
        f"data: {c['read']} read, {c['duplicates_dropped']} duplicates and {c['conflicting_dropped']} "
        f"contradicting functions dropped, {c['used']} used; train/valid/test {c['train_size']}/{c['valid_size']}/"
        f"{c['test_size']}; vocabulary {c['vocab_size']}; cut to {config.data.max_len} tokens: "
        f"{c['train_truncated'] + c['valid_truncated'] + c['test_truncated']}"
        + (f"; bad lines skipped: {c['bad_lines_skipped']}" if c["bad_lines_skipped"] else "")
        + (f"; test split = {config.data.split_by} in {list(config.data.test_groups)}" if config.data.test_groups else "")
        + (f"; split as given by the folder's files (texts shared train/test {c['shared_train_test']}, train/valid {c['shared_train_valid']}, "
           f"valid/test {c['shared_valid_test']}; duplicates within splits {c['duplicates_within_splits']}; texts with both labels {c['conflicting_texts']})"
           if c.get("given_split") else "")
    )
    model = build_model(config.arch, len(data.vocab), config.model).to(device)  # the same on every rank: one seed
    model.recompute_branches = recompute_branches(config.train.recompute_branches, model)
    ddp_model = model if ranks.world_size == 1 else DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)  # one process: the model
    if ranks.world_size > 1:
        torch.manual_seed(ranks.dropout_seed(config.train.seed))
    train = data.splits["train"]
    positives = int(train.labels.sum())
    pos_weight = torch.tensor((len(train.labels) - positives) / positives, device=device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    log(
        f"model: {config.arch}, {sum(p.numel() for p in model.parameters()):,} parameters, device {device}, pos_weight {pos_weight.item():.3f}"
        + (f"; {ranks.world_size} processes (DDP, {torch.distributed.get_backend()})" if ranks.world_size > 1 else "")
    )

    progress = {"epoch": 1, "step": 0, "loss_total": 0.0, "loss_count": 0, "best_score": -1.0, "best_epoch": 0}
    best_state = None
    hosts = ranks.gather(host_record())  # CPU and thread count of every rank (nodes may differ)
    if state is None:

        def start_files() -> None:
            write_json(out_dir / "config.json", {**config.to_dict(), "environment": {**environment(), "world_size": ranks.world_size, **hosts[0]}})
            write_json(out_dir / "splits.json", {"source": config.data_path, "source_sha256": _sha256(config.data_path), "counts": c, **data.indices})
            if config.train.track_kernels:  # epoch 0: the kernels as initialised, before any update
                append_jsonl(out_dir / "kernels.jsonl", {"epoch": 0, "layers": kernel_snapshot(model, config.data.max_len)})

        ranks.on_main(start_files)  # rank 0 writes; under DDP the others learn if it failed
    else:
        state.setdefault("best_score", state.get("best_f1"))  # written before --select-by: the F1 it selected by
        progress = {k: state[k] for k in progress}
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"][ranks.rank])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"][ranks.rank], device)
        best_state = state.get("best_model")

        changed = [f"rank {r}: {d}" if ranks.world_size > 1 else d
                   for r, (then, now) in enumerate(zip(state.get("hosts", [{}] * ranks.world_size), hosts)) for d in differences(then, now)]

        def drop_cut_short_epoch() -> None:
            for name in ("metrics.jsonl", "kernels.jsonl"):
                keep_epochs(out_dir / name, progress["epoch"] - 1)
            _record_resume(out_dir / "config.json", {"epoch": progress["epoch"], "step": progress["step"], **hosts[0]})

        ranks.on_main(drop_cut_short_epoch)
        log(f"resumed at epoch {progress['epoch']}, step {progress['step']}")
        if changed:
            log(f"warning: resumed on another setup than the interrupted run ({'; '.join(changed)}): "
                f"the result will not be bit-identical to an uninterrupted run")

    def checkpoint(epoch: int, step: int, total: float, count: int) -> None:
        progress.update(epoch=epoch, step=step, loss_total=total, loss_count=count)
        torch_rng = ranks.gather(torch.get_rng_state())  # every rank's stream (dropout)
        cuda_rng = ranks.gather(torch.cuda.get_rng_state(device)) if device.type == "cuda" else None
        ranks.on_main(lambda: save_training_state(out_dir / RESUME_FILE, {
            **progress, "config": config.to_dict(), "world_size": ranks.world_size, "hosts": hosts, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "torch_rng": torch_rng, **({"cuda_rng": cuda_rng} if cuda_rng else {}),
        }))

    every = config.train.checkpoint_every
    for epoch in range(progress["epoch"], config.train.epochs + 1):
        start = time.perf_counter()
        train_loss = train_epoch(
            ddp_model, optimizer, loss_fn, train, config, epoch, device, ranks, progress["step"], progress["loss_total"], progress["loss_count"],
            after_step=lambda step, total, count: checkpoint(epoch, step, total, count) if step % every == 0 else None,
        )
        digests = ranks.same_parameters(model.state_dict(), epoch)
        valid = binary_metrics(data.splits["valid"].labels, predict_shared(model, data.splits["valid"], config.train.batch_size, device, ranks))
        seconds = time.perf_counter() - start
        score = valid[config.train.select_by]
        improved = score is not None and score > progress["best_score"]
        if improved:
            progress.update(best_score=score, best_epoch=epoch)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

        def epoch_files() -> None:
            ranks_line = {"ranks": ranks.world_size, "parameters_sha256": digests} if ranks.world_size > 1 else {}
            append_jsonl(out_dir / "metrics.jsonl", {"epoch": epoch, "train_loss": train_loss, "seconds": seconds, "valid": valid, **ranks_line})
            if config.train.track_kernels:
                append_jsonl(out_dir / "kernels.jsonl", {"epoch": epoch, "layers": kernel_snapshot(model, config.data.max_len)})
            if improved:
                save_model(out_dir / "model.pt", config, data.vocab.tokens, best_state, epoch)

        ranks.on_main(epoch_files)
        checkpoint(epoch + 1, 0, 0.0, 0)  # the epoch is complete: a resume starts the next one
        log(
            f"epoch {epoch}/{config.train.epochs}  train loss {train_loss:.4f}  valid f1 {valid['f1']:.4f} "
            f"f1_weighted {valid['f1_weighted']:.4f} roc_auc {_fmt(valid['roc_auc'])}  {seconds:.1f}s{'  *' if improved else ''}"
        )

    model.load_state_dict(best_state)
    probabilities = {name: predict_shared(model, data.splits[name], config.train.batch_size, device, ranks) for name in ("valid", "test")}
    labels = {name: data.splits[name].labels for name in probabilities}
    metrics = {**metrics_with_tuned_threshold(labels["valid"], probabilities["valid"], labels["test"], probabilities["test"]),
               "best_epoch": progress["best_epoch"], "select_by": config.train.select_by}

    def finish_files() -> None:
        write_predictions(out_dir / PREDICTIONS_FILE, {name: (data.indices[name], labels[name], p) for name, p in probabilities.items()})
        write_json(out_dir / "metrics.json", metrics)
        (out_dir / RESUME_FILE).unlink()  # finished: nothing left to resume

    ranks.on_main(finish_files)
    return metrics


def _record_resume(config_file: Path, resume: dict) -> None:
    """Append ``resume`` (where and on what a run was continued) to config.json's environment["resumed"]."""
    if not config_file.is_file():
        return
    written = json.loads(config_file.read_text())
    written.setdefault("environment", {}).setdefault("resumed", []).append(resume)
    write_json(config_file, written)


def load_run(run_dir: str | Path, device: torch.device | None = None) -> tuple[RunConfig, Vocab, nn.Module]:
    """The trained model of a run directory (best epoch), its config and vocabulary."""
    payload = load_model_file(Path(run_dir) / "model.pt")
    config = RunConfig.from_dict(payload["config"])
    vocab = Vocab(payload["vocab"])
    model = build_model(config.arch, len(vocab), config.model)
    model.load_state_dict(payload["state_dict"])
    return config, vocab, model.to(device or torch.device("cpu")).eval()


def test_split_records(run_dir: str | Path, config: RunConfig) -> list:
    """The records of the run's own test split, as its splits.json recorded them (in file order)."""
    d = config.data
    test = set(json.loads((Path(run_dir) / "splits.json").read_text())["test"])
    return [r for r in load_dataset(config.data_path, d.code_field, d.label_field, [] if d.skip_bad_lines else None) if r.index in test]


def encode_for_run(config: RunConfig, vocab: Vocab, records) -> EncodedSplit:
    """Records tokenized, truncated and encoded exactly as the run's own data was."""
    d = config.data
    return encode([tokenize(r.code, d.normalize) for r in records], [r.label for r in records], vocab, d.max_len, records)


def evaluate_run(
    run_dir: str | Path, data_path: str | Path, code_field: str | None = None, label_field: str | None = None, device: str = "auto",
    predictions: str | Path | None = None,
) -> dict:
    """Score a trained run on every function of a dataset, with the run's own tokenizer and vocabulary.

    The metrics are binary_metrics plus the TUNED_KEYS at the threshold the run tuned on its
    validation split (from its metrics.json; None for runs trained before tuning existed). With
    ``predictions`` the per-function probabilities are written there (split = the dataset's name,
    index = the record's position in the file). A split folder (train/valid/test files) is scored on
    its test file only (split "test", index as in training on that folder)."""
    from ..data.sources import dataset_stem

    dev = resolve_device(device)
    config, vocab, model = load_run(run_dir, dev)
    d = config.data
    records = load_dataset(data_path, code_field or d.code_field, label_field or d.label_field, [] if d.skip_bad_lines else None)
    name = dataset_stem(data_path)
    if records[0].split is not None:  # a split folder: never score a detector on training functions
        records, name = [r for r in records if r.split == "test"], "test"
    split = encode_for_run(config, vocab, records)
    probabilities = predict(model, split, config.train.batch_size, dev)
    if predictions is not None:
        write_predictions(Path(predictions), {name: ([r.index for r in records], split.labels, probabilities)})
    threshold = _run_metrics(Path(run_dir)).get("tuned_threshold")
    return {**binary_metrics(split.labels, probabilities), **metrics_at_threshold(split.labels, probabilities, threshold)}


def _run_metrics(run_dir: Path) -> dict:
    """A run's metrics.json ({} if there is none); a damaged file is a one-line error."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise SsmscopeError(f"{path}: not readable JSON ({e}); retrain the run") from None


PREDICTION_COLUMNS = ["split", "index", "label", "probability"]


def write_predictions(path: Path, splits: dict[str, tuple]) -> None:
    """predictions.csv: ``split,index,label,probability`` for {split: (record indices, labels, probabilities)};
    probabilities with 17 significant digits, so that metrics recomputed from the file are exact. CSV
    quoting (a split named after a data file may hold a comma)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    for name, (indices, labels, probabilities) in splits.items():
        writer.writerows((name, int(i), int(y), f"{float(p):.17g}") for i, y, p in zip(indices, labels, probabilities, strict=True))
    write_text(path, text.getvalue())


def read_predictions(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """{split: {"index", "label", "probability"}} from a predictions.csv, in file order."""
    path = Path(path)
    if not path.is_file():
        raise SsmscopeError(f"{path}: no predictions file; runs trained before predictions.csv existed must be retrained")
    out: dict[str, dict[str, list]] = {}
    rows = csv.reader(io.StringIO(path.read_text(), newline=""))
    if next(rows, None) != PREDICTION_COLUMNS:
        raise SsmscopeError(f"{path}:1: expected the header split,index,label,probability")
    for number, line in enumerate(rows, start=2):
        try:
            name, index, label, probability = line
            row = (int(index), int(label), float(probability))
        except ValueError:
            raise SsmscopeError(f"{path}:{number}: expected split,index,label,probability, got {','.join(line)[:80]!r}") from None
        columns = out.setdefault(name, {"index": [], "label": [], "probability": []})
        for key, value in zip(("index", "label", "probability"), row):
            columns[key].append(value)
    return {name: {"index": np.array(c["index"], dtype=np.int64), "label": np.array(c["label"], dtype=np.int64),
                   "probability": np.array(c["probability"], dtype=np.float64)} for name, c in out.items()}


def _sha256(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    digest = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"
