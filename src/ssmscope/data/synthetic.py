"""A synthetic vulnerability corpus whose label is decided by two places a known distance apart.

Each function holds two *events*, short statements whose starts lie ``distance`` tokens apart (as
:func:`ssmscope.data.lex` counts them), with randomly generated filler code around and between them
(declarations, arithmetic, loops, conditionals, calls). The label depends only on a relation
between the two events, and both classes contain the same multiset of tokens:

``buffer_overflow``  ``char NAME[S];`` … ``memcpy(NAME, src, C);`` and, at a random place before the
                     first event or after the second, ``char OTHER[S'];``. Sizes a < C < b: the copy
                     overflows (vulnerable) when NAME is the buffer of size a. Both sizes are always
                     declared, so only binding the copy's target to its declaration tells the classes
                     apart (after max-pooling, a linear head cannot compute that match).
``use_after_free``   ``free(NAME);`` and a write ``*NAME = v;``  vulnerable iff the free comes first.
``null_check``       ``if (!NAME) return 0;`` and a write ``NAME[i] = -v;``  (NAME from malloc)
                     vulnerable iff the write comes first (the check is too late).

No shortcut is shorter than the distance: the two events of an order kind have the same number
of tokens (so the filler between them does not depend on their order), and the filler before the
first event and after the second is at least ``distance`` tokens long, so the fixed anchors (the
allocation, the function's start and end) are never nearer to an event than the other event is.
The longest first event has 8 tokens, the smallest distance that works for every kind (MIN_DISTANCE).

Records: ``{"id", "label", "code", "kind", "distance"}``; the same arguments give the same bytes.
Code is laid out like ReVeal's (tokens separated by spaces, a line break after ``;``, ``{``, ``}``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..config import SyntheticConfig
from ..errors import SsmscopeError

KINDS = ("buffer_overflow", "use_after_free", "null_check")
assert SyntheticConfig().kinds == KINDS
SIZES = (8, 12, 16, 24, 32, 48, 64, 96, 128, 256)
EVENT_NAMES = ("buf", "data", "ptr", "dst", "block", "payload", "frame", "record")
FILLER_VARS = ("i", "j", "k", "count", "total", "acc", "tmp", "idx", "len", "step", "flags", "state")
HELPERS = ("update_state", "log_value", "check_range", "hash_step", "mix_bits", "emit", "lookup", "clamp_value")
FUNCTION_NAMES = ("parse_header", "process_packet", "handle_request", "decode_block", "read_record", "copy_frame", "load_entry", "fill_table")
MIN_DISTANCE = 8  # tokens: the longest first event (null_check)
OPS = ("+", "-", "*", "^", "|", "&", "<<", ">>")
COMPARE = ("<", ">", "<=", ">=", "!=", "==")


@dataclass(frozen=True)
class Events:
    first: list[str]
    second: list[str]
    setup: list[str]  # before the lead-in filler (the allocation)
    elsewhere: list[str]  # one statement at a random place of the lead-in or the tail filler


def _events(kind: str, label: int, rng: random.Random) -> Events:
    name, other = rng.sample(EVENT_NAMES, 2)
    index, value = str(rng.randrange(0, 8)), str(rng.randrange(0, 128))
    alloc = ["char", "*", name, "=", "malloc", "(", "n", ")", ";"]
    if kind == "buffer_overflow":
        small, copied, large = sorted(rng.sample(SIZES, 3))
        size, other_size = (small, large) if label else (large, small)
        return Events(
            ["char", name, "[", str(size), "]", ";"],
            ["memcpy", "(", name, ",", "src", ",", str(copied), ")", ";"],
            [],
            ["char", other, "[", str(other_size), "]", ";"],
        )
    if kind == "use_after_free":
        free = ["free", "(", name, ")", ";"]  # 5 tokens
        write = ["*", name, "=", value, ";"]  # 5 tokens
        return Events(free, write, alloc, []) if label else Events(write, free, alloc, [])
    if kind == "null_check":
        check = ["if", "(", "!", name, ")", "return", "0", ";"]  # 8 tokens
        write = [name, "[", index, "]", "=", "-", value, ";"]  # 8 tokens
        return Events(write, check, alloc, []) if label else Events(check, write, alloc, [])
    raise SsmscopeError(f"--kinds: unknown kind {kind!r}; known: {', '.join(KINDS)}")


def _expression(rng: random.Random) -> list[str]:
    a, b = rng.sample(FILLER_VARS, 2)
    choice = rng.randrange(3)
    if choice == 0:
        return [a, rng.choice(OPS), str(rng.choice(SIZES))]
    if choice == 1:
        return [a, rng.choice(OPS), b]
    return [rng.choice(HELPERS), "(", a, ")"]


def _statement(rng: random.Random, depth: int = 0) -> list[str]:
    """One random filler statement (possibly compound), over the filler variables only."""
    a, b = rng.sample(FILLER_VARS, 2)
    kind = rng.randrange(8 if depth == 0 else 5)
    if kind == 0:
        return [a, "=", *_expression(rng), ";"]
    if kind == 1:
        return [a, rng.choice(("+=", "-=", "^=", "|=")), *_expression(rng), ";"]
    if kind == 2:
        return [rng.choice(HELPERS), "(", a, ",", str(rng.choice(SIZES)), ")", ";"]
    if kind == 3:
        return [a, "=", rng.choice(HELPERS), "(", b, ",", a, ")", ";"]
    if kind == 4:
        return [a, "++" if rng.random() < 0.5 else "--", ";"]
    if kind == 5:
        body = _statement(rng, depth + 1)
        head = ["if", "(", a, rng.choice(COMPARE), str(rng.choice(SIZES)), ")", "{", *body, "}"]
        return head + ["else", "{", *_statement(rng, depth + 1), "}"] if rng.random() < 0.3 else head
    if kind == 6:
        return ["for", "(", a, "=", "0", ";", a, "<", str(rng.choice(SIZES)), ";", a, "++", ")", "{", *_statement(rng, depth + 1), "}"]
    return ["while", "(", a, rng.choice(COMPARE), b, ")", "{", *_statement(rng, depth + 1), a, "++", ";", "}"]


def _short_statement(rng: random.Random, length: int) -> list[str]:
    """A statement of exactly ``length`` tokens, 1 <= length <= 6 (1 and 2: empty statements)."""
    a, b, c = rng.sample(FILLER_VARS, 3)
    shapes = {
        1: [";"],
        2: [";", ";"],
        3: [a, "++", ";"],
        4: [a, "=", b, ";"],
        5: [a, "=", "-", b, ";"],
        6: [a, "=", b, rng.choice(OPS), c, ";"],
    }
    return shapes[length]


def filler(rng: random.Random, n_tokens: int) -> list[str]:
    """Random statements holding exactly ``n_tokens`` tokens."""
    out: list[str] = []
    remaining = n_tokens
    while remaining > 0:
        stmt = _statement(rng)
        if not (len(stmt) == remaining or len(stmt) <= remaining - 3):
            if remaining <= 6:
                stmt = _short_statement(rng, remaining)
            else:
                stmt = _short_statement(rng, rng.randint(3, min(6, remaining - 3)))
        out += stmt
        remaining -= len(stmt)
    return out


def _with_statement(rng: random.Random, n_tokens: int, statement: list[str]) -> list[str]:
    """``n_tokens`` of filler with ``statement`` (possibly empty) inserted at a random split."""
    split = rng.randint(0, n_tokens)
    return filler(rng, split) + statement + filler(rng, n_tokens - split)


def _layout(tokens: list[str]) -> str:
    lines, line = [], []
    for token in tokens:
        line.append(token)
        if token in (";", "{", "}"):
            lines.append(" ".join(line))
            line = []
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines)


def parse_distances(spec: str) -> list[int] | range:
    """'16,64,256' → [16, 64, 256]; '8-512' → range(8, 513). Each function draws one uniformly."""
    try:
        if "-" in spec:
            low, high = (int(x) for x in spec.split("-"))
            if not 0 < low <= high:
                raise ValueError
            return range(low, high + 1)
        values = [int(x) for x in spec.split(",") if x.strip()]
        if not values or min(values) <= 0:
            raise ValueError
        return values
    except ValueError:
        raise SsmscopeError(f"--distances: {spec!r} is not a list like 16,64,256 or a range like 8-512 of positive token counts") from None


def make_function(kind: str, label: int, distance: int, rng: random.Random) -> str:
    events = _events(kind, label, rng)
    if distance < len(events.first):
        raise SsmscopeError(f"--distances: {distance} tokens is shorter than the first event of {kind} ({len(events.first)} tokens)")
    declared = rng.sample(FILLER_VARS, len(FILLER_VARS))
    tokens = ["int", rng.choice(FUNCTION_NAMES) + f"_{rng.randrange(1000)}", "(", "const", "char", "*", "src", ",", "int", "n", ")", "{"]
    tokens += ["int", *sum(([v, "="] + [str(rng.randrange(4))] + [","] for v in declared), [])[:-1], ";"]
    lead_in, tail = rng.randint(distance, distance + 40), rng.randint(distance, distance + 40)
    before, after = (events.elsewhere, []) if rng.random() < 0.5 else ([], events.elsewhere)
    tokens += events.setup
    tokens += _with_statement(rng, lead_in, before)
    tokens += events.first
    tokens += filler(rng, distance - len(events.first))
    tokens += events.second
    tokens += _with_statement(rng, tail, after)
    tokens += ["return", rng.choice(FILLER_VARS), ";", "}"]
    return _layout(tokens)


_DEFAULT = SyntheticConfig()


def generate(
    n: int = _DEFAULT.n,
    distances: list[int] | range = _DEFAULT.distances,
    kinds: tuple[str, ...] = _DEFAULT.kinds,
    positive_fraction: float = _DEFAULT.positive_fraction,
    seed: int = _DEFAULT.seed,
) -> list[dict]:
    """``n`` labelled functions, each with a distance drawn uniformly from ``distances`` (a sequence
    or a range); exactly round(n · positive_fraction) are vulnerable."""
    if n < 1:
        raise SsmscopeError(f"--n must be at least 1, got {n}")
    if not 0 <= positive_fraction <= 1:
        raise SsmscopeError(f"--positive-fraction must be in [0, 1], got {positive_fraction}")
    for kind in kinds:
        if kind not in KINDS:
            raise SsmscopeError(f"--kinds: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    rng = random.Random(seed)
    labels = [1] * round(n * positive_fraction) + [0] * (n - round(n * positive_fraction))
    rng.shuffle(labels)
    records = []
    for i, label in enumerate(labels):
        kind = kinds[i % len(kinds)]
        distance = rng.choice(distances)
        code = make_function(kind, label, distance, rng)
        records.append({"id": f"synth-{i}", "label": label, "code": code, "kind": kind, "distance": distance})
    return records
