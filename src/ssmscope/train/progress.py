"""A one-line progress bar on a terminal, silence elsewhere."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """``with ProgressBar(total, "epoch 1") as bar: bar.update(loss=...)``; draws only on a TTY (and only if ``enabled``)."""

    def __init__(self, total: int, label: str, stream=None, width: int = 30, enabled: bool = True):
        self.total, self.label, self.width = total, label, width
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.done, self.start = 0, time.perf_counter()

    def update(self, **values: float) -> None:
        self.done += 1
        if not self.enabled:
            return
        filled = int(self.width * self.done / max(self.total, 1))
        extra = " ".join(f"{k} {v:.4f}" for k, v in values.items())
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {extra} {elapsed:.0f}s")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.stream.write("\r" + " " * (self.width + len(self.label) + 60) + "\r")
            self.stream.flush()
