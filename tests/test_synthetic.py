"""The synthetic corpus: determinism, exact distances, no bag-of-tokens shortcut, a rule that works."""

import gzip
import json

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from ssmscope.cli import main
from ssmscope.data import lex, load_dataset
from ssmscope.data.synthetic import KINDS, filler, generate, parse_distances
from ssmscope.errors import SsmscopeError


def find(tokens, pattern, start=0):
    """Index of the first occurrence of the token sequence ``pattern`` (None matches any token)."""
    for i in range(start, len(tokens) - len(pattern) + 1):
        if all(p is None or tokens[i + j] == p for j, p in enumerate(pattern)):
            return i
    return None


def places(record):
    """(first place, second place, label by rule) found in the token stream, independently of the generator."""
    tokens = lex(record["code"])
    if record["kind"] == "buffer_overflow":
        copy = find(tokens, ["memcpy", "("])
        name = tokens[copy + 2]
        decl = find(tokens, ["char", name, "["])  # the declaration the copy's target binds to
        return decl, copy, int(int(tokens[copy + 6]) > int(tokens[decl + 3]))
    alloc = find(tokens, ["char", "*", None, "=", "malloc"])
    name, after = tokens[alloc + 2], alloc + 5
    if record["kind"] == "use_after_free":
        free, write = find(tokens, ["free", "(", name, ")"], after), find(tokens, ["*", name, "="], after)
        return min(free, write), max(free, write), int(free < write)
    check, write = find(tokens, ["if", "(", "!", name, ")"], after), find(tokens, [name, "["], after)
    return min(check, write), max(check, write), int(write < check)


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = json.dumps(generate(60, seed=3))
    assert a == json.dumps(generate(60, seed=3)) and a != json.dumps(generate(60, seed=4))


@pytest.mark.parametrize("distances", [[8, 16, 64, 256, 512], range(8, 301)])
def test_requested_distance_holds_and_rule_recovers_every_label(distances):
    records = generate(300, distances=distances, seed=1)
    for r in records:
        first, second, label = places(r)
        assert second - first == r["distance"], r["id"]
        assert label == r["label"], r["id"]
        assert set(r) == {"id", "label", "code", "kind", "distance"}
    assert {r["kind"] for r in records} == set(KINDS)
    if isinstance(distances, list):
        assert {r["distance"] for r in records} == set(distances)
    else:
        assert min(r["distance"] for r in records) >= 8 and max(r["distance"] for r in records) <= 300


def test_class_balance_is_exact():
    records = generate(101, positive_fraction=0.3, seed=2)
    assert sum(r["label"] for r in records) == round(101 * 0.3)


def test_no_shortcut_is_shorter_than_the_distance():
    """The allocation (order kinds) and the function's end are at least ``distance`` tokens from
    the nearer event, and each buffer_overflow function declares both the small and the large size."""
    for r in generate(300, distances=[8, 40, 100], seed=4):
        tokens = lex(r["code"])
        first, second, _ = places(r)
        assert len(tokens) - 4 - second >= r["distance"]  # 4: "return x ; }"
        if r["kind"] == "buffer_overflow":
            sizes = sorted(int(tokens[i + 3]) for i in range(len(tokens) - 3) if tokens[i] == "char" and tokens[i + 2] == "[")
            copied = int(tokens[find(tokens, ["memcpy", "("]) + 6])
            assert len(sizes) == 2 and sizes[0] < copied < sizes[1]
        else:
            assert first - (find(tokens, ["malloc", "("]) + 5) >= r["distance"]


def test_bag_of_tokens_is_near_chance():
    """Logistic regressions on token counts and on counts of 1- to 3-grams (local patterns),
    5-fold cross-validated, stay near 50% (balanced), overall and within each kind, while the
    two-place rule above is exact."""
    records = generate(1500, distances=[8, 64, 256], seed=5)
    ngrams = CountVectorizer(tokenizer=lex, lowercase=False, token_pattern=None, ngram_range=(1, 3), min_df=2)
    for kind in KINDS:
        subset = [r for r in records if r["kind"] == kind]
        X = ngrams.fit_transform([r["code"] for r in subset])
        y = np.array([r["label"] for r in subset])
        accuracy = cross_val_score(LogisticRegression(solver="liblinear", max_iter=1000), X, y, cv=5).mean()
        assert accuracy < 0.58, (kind, "1-3 grams", accuracy)
    vectorizer = CountVectorizer(tokenizer=lex, lowercase=False, token_pattern=None)
    for kind in (None, *KINDS):
        subset = [r for r in records if kind is None or r["kind"] == kind]
        X = vectorizer.fit_transform([r["code"] for r in subset])
        y = np.array([r["label"] for r in subset])
        accuracy = cross_val_score(LogisticRegression(solver="liblinear", max_iter=1000), X, y, cv=5).mean()
        assert accuracy < 0.58, (kind, accuracy)


def test_filler_has_exact_length():
    import random

    rng = random.Random(0)
    for n in list(range(0, 40)) + [100, 513]:
        assert len(filler(rng, n)) == n


def test_bad_parameters():
    assert parse_distances("16,64,256") == [16, 64, 256] and parse_distances("8-512") == range(8, 513)
    for bad in ("", "a,b", "0,5", "9-3"):
        with pytest.raises(SsmscopeError, match="--distances"):
            parse_distances(bad)
    with pytest.raises(SsmscopeError, match="unknown kind"):
        generate(10, kinds=("race",))
    with pytest.raises(SsmscopeError, match="shorter than the first event"):
        generate(10, distances=[7], kinds=("null_check",))


def test_cli_writes_gzip_jsonl_that_loads(tmp_path, capsys):
    out = tmp_path / "synth.jsonl.gz"
    assert main(["data", "synth", "--out", str(out), "--n", "30", "--distances", "16,32", "--kinds", "null_check", "use_after_free", "--seed", "7"]) == 0
    with gzip.open(out, "rt") as f:
        rows = [json.loads(line) for line in f]
    assert rows == generate(30, distances=[16, 32], kinds=("null_check", "use_after_free"), seed=7)
    assert [r.label for r in load_dataset(out)] == [r["label"] for r in rows]
    assert "30 functions" in capsys.readouterr().out
