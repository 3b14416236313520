"""Turning token-id sequences into padded batches, grouped by length.

Functions vary from a handful of tokens to thousands (ReVeal: median 118, p90 610). Padding a
random batch to its longest member wastes most of the work, so training batches are grouped by
length: shuffle, cut into chunks of ``chunk_batches`` batches, sort each chunk by length, cut it into
batches, shuffle the batch order. Randomness stays (which functions meet in a chunk, batch order)
while a batch pads only to lengths that are close together.
"""

from __future__ import annotations

import numpy as np
import torch

from .vocab import PAD_ID


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, chunk_batches: int = 50
) -> list[np.ndarray]:
    """Index arrays of a training epoch, each at most ``batch_size`` long, grouped by length."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Deterministic batches for evaluation: all indices sorted by length, then cut."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(
    sequences: list[np.ndarray], indices: np.ndarray, pad_to_multiple: int = 1, min_width: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the chosen sequences to the longest of them (at least ``min_width``), rounded up to a
    multiple of ``pad_to_multiple``.

    Rounding keeps the number of distinct batch shapes small (L ≤ 1024 and a multiple of 64 gives at
    most 16), which keeps the allocator's and oneDNN's per-shape caches from growing through an
    epoch; the models' outputs do not depend on extra padding (tests/test_models.py).
    Returns tokens (B, L) int64 with PAD_ID after each sequence, and lengths (B,) int64.
    """
    chosen = [sequences[i] for i in indices]
    lengths = torch.tensor([len(s) for s in chosen], dtype=torch.int64)  # (B,)
    width = -(-max(int(lengths.max()), min_width) // pad_to_multiple) * pad_to_multiple
    tokens = torch.full((len(chosen), width), PAD_ID, dtype=torch.int64)  # (B, L)
    for row, seq in enumerate(chosen):
        tokens[row, : len(seq)] = torch.from_numpy(seq)
    return tokens, lengths
