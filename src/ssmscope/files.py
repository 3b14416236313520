"""Files written atomically.

Every file is written to a temporary name in the same directory and renamed into place
(``os.replace`` is atomic on POSIX), so a reader, or a crash, sees either the previous complete
file or the new one, never half of it.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
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
    atomic_write(path, lambda f: f.write(data))


def append_jsonl(path: Path, obj) -> None:
    """Append one line; the file holds complete lines only (previous content + the new line)."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    line = (json.dumps(obj, allow_nan=False) + "\n").encode()
    atomic_write(path, lambda f: f.write(old + line))


def write_jsonl(path: Path, rows) -> None:
    """One JSON object per line; gzip-compressed (reproducibly: no timestamp) if the name ends in .gz."""
    data = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows).encode()
    if str(path).lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    atomic_write(path, lambda f: f.write(data))
