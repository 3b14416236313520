"""The model checkpoint format (model.pt), written atomically (see ``ssmscope.files``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import RunConfig
from ..errors import SsmscopeError
from ..files import atomic_write

CHECKPOINT_FORMAT = "ssmscope.model/1"


def save_model(path: Path, config: RunConfig, vocab_tokens: list[str], state_dict: dict, epoch: int) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "vocab": list(vocab_tokens),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "epoch": epoch,
    }
    atomic_write(path, lambda f: torch.save(payload, f))


def load_model_file(path: Path) -> dict:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code from pickles)."""
    path = Path(path)
    if not path.is_file():
        raise SsmscopeError(f"{path}: no model checkpoint; train the run first (ssmscope train ... --out {path.parent})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SsmscopeError(f"{path}: not a readable ssmscope checkpoint ({type(e).__name__}); retrain the run") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise SsmscopeError(f"{path}: not an ssmscope checkpoint (format {CHECKPOINT_FORMAT} expected)")
    return payload
