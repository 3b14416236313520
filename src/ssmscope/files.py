"""Files written atomically.

Every file is written to a temporary name in the same directory and renamed into place
(``os.replace`` is atomic on POSIX), so a reader, or a crash, sees either the previous complete
file or the new one, never half of it.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import SsmscopeError


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


def write_text(path: Path, text: str) -> None:
    data = text.encode()
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


@contextmanager
def exclusive_directory(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on directory ``path`` (created if missing) for the block.

    A second process that tries while the first holds it gets a one-line error. The lock is
    ``flock`` on the directory itself: no lock file is left behind, and the kernel releases it
    when the holder exits for any reason, SIGKILL included, so a killed run can be resumed at once.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SsmscopeError(f"{path}: another ssmscope process is writing this run directory; wait for it or choose another --out") from None
        yield
    finally:
        os.close(fd)


def keep_epochs(path: Path, last_epoch: int) -> None:
    """Rewrite a per-epoch JSONL file keeping its complete lines with ``epoch`` <= last_epoch."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("epoch", last_epoch + 1) <= last_epoch:
            kept.append(line + "\n")
    atomic_write(path, lambda f: f.write("".join(kept).encode()))
