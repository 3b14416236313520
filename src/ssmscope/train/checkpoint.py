"""Files of a run directory, written atomically, and the model checkpoint format.

Every file is written to a temporary name in the same directory and renamed into place
(``os.replace`` is atomic on POSIX), so a reader, or a crash, sees either the previous complete
file or the new one, never half of it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from ..config import RunConfig
from ..errors import SsmscopeError

CHECKPOINT_FORMAT = "ssmscope.model/1"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    data = (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()
    _atomic_write(path, lambda f: f.write(data))


def append_jsonl(path: Path, obj) -> None:
    """Append one line; the file holds complete lines only (previous content + the new line)."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    line = (json.dumps(obj, allow_nan=False) + "\n").encode()
    _atomic_write(path, lambda f: f.write(old + line))


def save_model(path: Path, config: RunConfig, vocab_tokens: list[str], state_dict: dict, epoch: int) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "vocab": list(vocab_tokens),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "epoch": epoch,
    }
    _atomic_write(path, lambda f: torch.save(payload, f))


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
