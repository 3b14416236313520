"""From raw records to the three splits: de-duplication, contradiction removal, subsampling, split.

The order matters and is fixed: (1) exact duplicate functions are collapsed to one, (2) functions
whose text occurs with both labels are dropped altogether (they contradict each other, and would
otherwise land in train and test at once), (3) ``limit`` draws a stratified subsample, (4) the
rest is split train/valid/test stratified by label. Steps 3 and 4 are seeded.

Two realistic alternatives to step 4 (docs/METHODS.md, "Splits"):

* by group (``--split-by project --test-group chrome``): the functions of the named groups are the
  test split; the others are split train/valid, stratified by label, in the proportions of
  ``fractions``' first two entries. Steps 1–3 as above.
* given (a split folder, ``load_dataset``): each record keeps the split its file named. Nothing is
  dropped or moved; duplicates inside a split, texts shared between splits and contradicting labels
  are counted and reported. ``limit`` subsamples each split, stratified, in proportion to its size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SsmscopeError
from .sources import Record

SPLITS = ("train", "valid", "test")


@dataclass
class PreparedData:
    splits: dict[str, list[Record]]
    counts: dict[str, int] = field(default_factory=dict)

    def indices(self) -> dict[str, list[int]]:
        """Each split as the records' positions in the source (what splits.json stores)."""
        return {name: [r.index for r in records] for name, records in self.splits.items()}


def deduplicate(records: list[Record]) -> tuple[list[Record], dict[str, int]]:
    """Keep the first of each group of identical functions; drop every function whose exact text
    carries both labels. Returns the kept records (source order) and the counts of what went."""
    labels_of: dict[str, set[int]] = {}
    for r in records:
        labels_of.setdefault(r.code, set()).add(r.label)
    seen: set[str] = set()
    kept, duplicates, conflicting = [], 0, 0
    for r in records:
        if len(labels_of[r.code]) > 1:
            conflicting += 1
        elif r.code in seen:
            duplicates += 1
        else:
            seen.add(r.code)
            kept.append(r)
    counts = {
        "read": len(records),
        "duplicates_dropped": duplicates,
        "conflicting_dropped": conflicting,
        "conflicting_texts": sum(len(v) > 1 for v in labels_of.values()),
        "kept": len(kept),
    }
    return kept, counts


def stratified_sample(records: list[Record], n: int, rng: np.random.Generator) -> list[Record]:
    """``n`` records drawn without replacement, keeping the label proportions (largest remainder)."""
    if n >= len(records):
        return list(records)
    by_label = _by_label(records)
    quotas = _apportion(n, [len(v) for v in by_label.values()])
    chosen = []
    for group, quota in zip(by_label.values(), quotas):
        chosen.extend(group[i] for i in rng.choice(len(group), size=quota, replace=False))
    return sorted(chosen, key=lambda r: r.index)


def stratified_split(
    records: list[Record], fractions: tuple[float, float, float], rng: np.random.Generator
) -> dict[str, list[Record]]:
    """Shuffle each label's records and cut them by ``fractions`` (rounded per label)."""
    splits: dict[str, list[Record]] = {name: [] for name in SPLITS}
    for group in _by_label(records).values():
        order = rng.permutation(len(group))
        sizes = _apportion(len(group), list(fractions))
        start = 0
        for name, size in zip(SPLITS, sizes):
            splits[name].extend(group[i] for i in order[start : start + size])
            start += size
    return {name: sorted(rs, key=lambda r: r.index) for name, rs in splits.items()}


def prepare(
    records: list[Record], fractions=(0.8, 0.1, 0.1), limit: int | None = None, seed: int = 0, source: str = "data",
    test_groups: tuple[str, ...] = (), group_field: str | None = None,
) -> PreparedData:
    """The three splits of ``records``: random (stratified), by group (``test_groups`` of the records'
    ``group``; ``group_field`` names the field in messages), or as given (records with a ``split``)."""
    rng = np.random.default_rng(seed)
    if records and records[0].split is not None:
        if test_groups:
            raise SsmscopeError(f"--split-by: {source} is a split folder, whose files give the split; drop --split-by/--test-group or pass one data file")
        splits, counts = _given_split(records, limit, rng)
    else:
        kept, counts = deduplicate(records)
        if limit is not None:
            kept = stratified_sample(kept, limit, rng)
        counts["used"] = len(kept)
        if test_groups:
            splits = _group_split(records, kept, fractions, test_groups, group_field, source, rng)
        else:
            splits = stratified_split(kept, fractions, rng)
    for name, rs in splits.items():
        labels = {r.label for r in rs}
        if labels != {0, 1}:
            raise SsmscopeError(
                f"{source}: the {name} split has {len(rs)} functions and not both labels "
                f"(after de-duplication {counts['used']} functions remain); use more data or a larger --limit"
            )
        counts[f"{name}_size"] = len(rs)
        counts[f"{name}_positives"] = sum(r.label for r in rs)
    return PreparedData(splits, counts)


def _group_split(records, kept, fractions, test_groups, group_field, source, rng) -> dict[str, list[Record]]:
    """Test = the kept records of ``test_groups``; the rest split train/valid in the ratio fractions[0] : fractions[1]."""
    present = sorted({r.group for r in records})
    absent = [g for g in test_groups if g not in present]
    if absent:
        raise SsmscopeError(f"--test-group: {', '.join(map(repr, absent))} does not occur in field '{group_field}' of {source}; values present: {', '.join(present)}")
    if set(present) <= set(test_groups):
        raise SsmscopeError(f"--test-group: every group of field '{group_field}' ({', '.join(present)}) is a test group; leave at least one for training")
    test = [r for r in kept if r.group in test_groups]
    rest = [r for r in kept if r.group not in test_groups]
    train_valid = stratified_split(rest, (fractions[0], fractions[1], 0.0), rng)
    return {"train": train_valid["train"], "valid": train_valid["valid"], "test": test}


def _given_split(records: list[Record], limit: int | None, rng: np.random.Generator) -> tuple[dict[str, list[Record]], dict[str, int]]:
    """The splits as the files gave them, with what a reader should know about their overlaps."""
    splits = {name: [r for r in records if r.split == name] for name in SPLITS}
    texts = {name: {r.code for r in rs} for name, rs in splits.items()}
    _, found = deduplicate(records)  # only counted here: nothing is dropped from a given split
    counts = {
        "read": len(records),
        "duplicates_dropped": 0,
        "conflicting_dropped": 0,
        "given_split": 1,
        "duplicates_within_splits": sum(len(rs) - len(texts[name]) for name, rs in splits.items()),
        "conflicting_texts": found["conflicting_texts"],
        "shared_train_test": len(texts["train"] & texts["test"]),
        "shared_train_valid": len(texts["train"] & texts["valid"]),
        "shared_valid_test": len(texts["valid"] & texts["test"]),
    }
    if limit is not None:
        quotas = _apportion(min(limit, len(records)), [len(rs) for rs in splits.values()])
        splits = {name: stratified_sample(rs, quota, rng) for (name, rs), quota in zip(splits.items(), quotas)}
    counts["kept"] = counts["used"] = sum(len(rs) for rs in splits.values())
    return splits, counts


def _by_label(records: list[Record]) -> dict[int, list[Record]]:
    groups: dict[int, list[Record]] = {0: [], 1: []}
    for r in records:
        groups[r.label].append(r)
    return groups


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Integers proportional to ``weights`` that add up to ``total`` (largest remainder method)."""
    weights = np.asarray(weights, dtype=float)
    exact = total * weights / weights.sum()
    sizes = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - sizes), kind="stable")[: total - sizes.sum()]:
        sizes[i] += 1
    return sizes.tolist()
