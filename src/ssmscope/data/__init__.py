"""Data: read labelled functions, prepare splits, tokenize, build a vocabulary, batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SsmscopeError
from .batching import collate, length_grouped_batches, sorted_batches
from .prepare import PreparedData, deduplicate, prepare, stratified_sample, stratified_split
from .sources import Record, load_dataset, parse_label
from .tokenize import lex, tokenize
from .vocab import PAD_ID, UNK_ID, Vocab


@dataclass
class EncodedSplit:
    """Token-id sequences (truncated to max_len) and labels of one split."""

    sequences: list[np.ndarray]  # each (length,) int64
    labels: np.ndarray  # (n,) int64
    truncated: int  # how many functions were longer than max_len and were cut

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences], dtype=np.int64)


def encode(token_lists: list[list[str]], labels, vocab: Vocab, max_len: int, records: list[Record]) -> EncodedSplit:
    for tokens, record in zip(token_lists, records):
        if not tokens:
            raise SsmscopeError(f"{record.where}: the code field holds no C/C++ tokens; remove the record or fix its code")
    sequences = [vocab.encode(tokens, max_len) for tokens in token_lists]
    truncated = sum(len(tokens) > max_len for tokens in token_lists)
    return EncodedSplit(sequences, np.asarray(labels, dtype=np.int64), truncated)


__all__ = [
    "EncodedSplit", "PAD_ID", "PreparedData", "Record", "UNK_ID", "Vocab", "collate", "deduplicate",
    "encode", "length_grouped_batches", "lex", "load_dataset", "parse_label", "prepare",
    "sorted_batches", "stratified_sample", "stratified_split", "tokenize",
]
