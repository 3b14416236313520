"""Checkpoint formats, written atomically (see ``ssmscope.files``).

``model.pt``       the best epoch's weights, vocabulary and config: what every later command loads.
``checkpoint.pt``  the training state for ``--resume`` (model, optimiser, torch RNG, epoch, step,
                   running loss, best epoch so far); removed when the run finishes.
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
TRAINING_STATE_FORMAT = "ssmscope.training-state/1"


def save_model(path: Path, config: RunConfig, vocab_tokens: list[str], state_dict: dict, epoch: int) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "vocab": list(vocab_tokens),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "epoch": epoch,
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def _safe_load(path: Path, retry_hint: str):
    """torch.load with ``weights_only=True``: tensors and plain containers only, never code from a pickle."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the user gets our one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise SsmscopeError(f"{path}: not a readable ssmscope checkpoint (it holds objects other than tensors, which could run code; refused); {retry_hint}") from None
    except Exception as e:
        raise SsmscopeError(f"{path}: not a readable ssmscope checkpoint ({type(e).__name__}); {retry_hint}") from None


def load_model_file(path: Path) -> dict:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code from pickles)."""
    path = Path(path)
    if not path.is_file():
        raise SsmscopeError(f"{path}: no model checkpoint; train the run first (ssmscope train ... --out {path.parent})")
    payload = _safe_load(path, "retrain the run")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise SsmscopeError(f"{path}: not an ssmscope checkpoint (format {CHECKPOINT_FORMAT} expected)")
    return payload


def save_training_state(path: Path, state: dict) -> None:
    """``state``: config, epoch, step, model, optimizer, torch_rng, loss_total, loss_count, best_f1, best_epoch."""
    atomic_write(path, lambda f: torch.save({"format": TRAINING_STATE_FORMAT, **state}, f))


def load_training_state(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SsmscopeError(f"{path}: nothing to resume (no checkpoint); run the same command without --resume")
    state = _safe_load(path, "train again without --resume and with --overwrite")
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        raise SsmscopeError(f"{path}: not an ssmscope training checkpoint (format {TRAINING_STATE_FORMAT} expected)")
    return state
