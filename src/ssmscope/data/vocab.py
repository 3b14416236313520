"""Token vocabulary, built from the training split only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


class Vocab:
    """Maps tokens to ids; id 0 is padding, id 1 every token not in the vocabulary."""

    def __init__(self, tokens: list[str]):
        if tokens[:2] != [PAD, UNK]:
            raise ValueError("a vocabulary starts with <pad>, <unk>")
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_count: int = 2, max_size: int = 20_000) -> "Vocab":
        """Tokens seen at least ``min_count`` times, most frequent first (ties alphabetical), at most
        ``max_size`` entries including the two specials."""
        counts = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls([PAD, UNK] + kept[: max(0, max_size - 2)])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: list[str], max_len: int) -> np.ndarray:
        """The first ``max_len`` tokens as int64 ids (unknown tokens → UNK_ID)."""
        get = self.ids.get
        return np.fromiter((get(t, UNK_ID) for t in tokens[:max_len]), dtype=np.int64, count=min(len(tokens), max_len))
