"""Checkpoint formats, written atomically (see ``ssmscope.files``).

``model.pt``       the best epoch's weights, vocabulary and config: what every later command loads.
``checkpoint.pt``  the training state for ``--resume`` (model, optimiser, every rank's RNG, epoch,
                   step, running loss, best epoch so far); removed when the run finishes.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from ..config import RunConfig
from ..errors import SsmscopeError
from ..files import atomic_write

CHECKPOINT_FORMAT = "ssmscope.model/1"
TRAINING_STATE_FORMAT = "ssmscope.training-state/2"  # /2: per-rank RNG states and world_size (DDP)
ONE_PROCESS_TRAINING_STATE_FORMAT = "ssmscope.training-state/1"  # before DDP: one RNG state; still resumed


def save_model(path: Path, config: RunConfig, vocab_tokens: list[str], state_dict: dict, epoch: int) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "vocab": list(vocab_tokens),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "epoch": epoch,
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def _load(path: Path, expected_formats: tuple[str, ...], missing: str, retry_hint: str) -> dict:
    """A checkpoint dict of one of ``expected_formats``, read with ``weights_only=True``: tensors and plain
    containers only, never code from a pickle. Every failure is a one-line SsmscopeError."""
    path = Path(path)
    if not path.is_file():
        raise SsmscopeError(f"{path}: {missing}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the user gets our one line
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise SsmscopeError(f"{path}: not a readable ssmscope checkpoint (it holds objects other than tensors, which could run code; refused); {retry_hint}") from None
    except Exception as e:
        raise SsmscopeError(f"{path}: not a readable ssmscope checkpoint ({type(e).__name__}); {retry_hint}") from None
    if not isinstance(payload, dict) or payload.get("format") not in expected_formats:
        raise SsmscopeError(f"{path}: not an ssmscope checkpoint (format {expected_formats[0]} expected); {retry_hint}")
    return payload


def load_model_file(path: Path) -> dict:
    """The best-epoch checkpoint of a run (model.pt)."""
    return _load(path, (CHECKPOINT_FORMAT,), f"no model checkpoint; train the run first (ssmscope train ... --out {Path(path).parent})", "retrain the run")


def save_training_state(path: Path, state: dict) -> None:
    """``state``: config, world_size, epoch, step, model, optimizer, torch_rng (a list, one per rank),
    cuda_rng (likewise, on CUDA), hosts (every rank's CPU and thread count, ``ssmscope.host``; absent in
    states written before it), loss_total, loss_count, best_f1, best_epoch."""
    atomic_write(path, lambda f: torch.save({"format": TRAINING_STATE_FORMAT, **state}, f))


def load_training_state(path: Path) -> dict:
    """The resume state of an interrupted run (checkpoint.pt)."""
    state = _load(path, (TRAINING_STATE_FORMAT, ONE_PROCESS_TRAINING_STATE_FORMAT),
                  "nothing to resume (no checkpoint); run the same command without --resume", "train again without --resume and with --overwrite")
    if state["format"] == ONE_PROCESS_TRAINING_STATE_FORMAT:  # written by one process before DDP: the same state, one rank
        state["world_size"] = 1
        state["torch_rng"] = [state["torch_rng"]]
        if "cuda_rng" in state:
            state["cuda_rng"] = [state["cuda_rng"]]
    return state
