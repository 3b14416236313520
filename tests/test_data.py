"""Readers, preparation, tokenizer, vocabulary and batching."""

import csv
import gzip
import json

import numpy as np
import pytest
import torch

from ssmscope.data import (
    PAD_ID, UNK_ID, Record, Vocab, collate, deduplicate, length_grouped_batches, lex, load_dataset, prepare,
    sorted_batches, tokenize,
)
from ssmscope.errors import SsmscopeError

ROWS = [
    {"code": "int f(int a) { return a + 1; }", "label": 0},
    {"code": 'void g(char *s) { strcpy(buf, s); }', "label": 1},
    {"code": "int h(void) {\n  return -1; // done\n}", "label": 0},
]


def _write_all_formats(tmp_path):
    paths = {}
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    paths["jsonl"] = p
    p = tmp_path / "d.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in ROWS))
    paths["jsonl.gz"] = p
    p = tmp_path / "d.json"
    p.write_text(json.dumps(ROWS))
    paths["json"] = p
    for name, opener in (("d.csv", open), ("d.csv.gz", gzip.open)):
        p = tmp_path / name
        with opener(p, "wt", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["code", "label"])
            w.writeheader()
            w.writerows(ROWS)
        paths[name] = p
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), p)
    paths["parquet"] = p
    folder = tmp_path / "reveal"
    folder.mkdir()
    (folder / "vulnerables.json").write_text(json.dumps([{"code": r["code"]} for r in ROWS if r["label"] == 1]))
    (folder / "non-vulnerables.json").write_text(json.dumps([{"code": r["code"]} for r in ROWS if r["label"] == 0]))
    paths["folder"] = folder
    return paths


def test_every_format_reads_the_same_records(tmp_path):
    expected = sorted((r["code"], r["label"]) for r in ROWS)
    for name, path in _write_all_formats(tmp_path).items():
        got = sorted((r.code, r.label) for r in load_dataset(path))
        assert got == expected, name


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_bad_label_is_named_in_every_format(tmp_path, fmt):
    rows = [{"code": "a;", "label": "0"}, {"code": "b;", "label": "maybe"}]
    path = tmp_path / f"bad.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(rows))
        where = r"bad\.json: item 1"
    elif fmt == "csv":
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["code", "label"])
            w.writeheader()
            w.writerows(rows)
        where = r"bad\.csv:3"
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
        where = r"bad\.parquet: row 1"
    with pytest.raises(SsmscopeError, match=where + r": label field 'label' is 'maybe'"):
        load_dataset(path)


def test_gzipped_parquet_upper_case_suffix_and_byte_order_mark(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), plain)
    packed = tmp_path / "d.parquet.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    upper = tmp_path / "D.JSONL.GZ"
    upper.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode()))
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfcode,label\nint a;,1\n")
    expected = sorted((r["code"], r["label"]) for r in ROWS)
    assert sorted((r.code, r.label) for r in load_dataset(packed)) == expected
    assert sorted((r.code, r.label) for r in load_dataset(upper)) == expected
    assert [(r.code, r.label) for r in load_dataset(bom)] == [("int a;", 1)]


def test_custom_field_names(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"func": "int a;", "target": "1"}) + "\n" + json.dumps({"func": "int b;", "target": False}) + "\n")
    records = load_dataset(p, code_field="func", label_field="target")
    assert [(r.code, r.label) for r in records] == [("int a;", 1), ("int b;", 0)]


@pytest.mark.parametrize("value,expected", [(0, 0), (1, 1), ("0", 0), ("1", 1), (True, 1), ("false", 0), ("TRUE", 1), (1.0, 1)])
def test_label_spellings(tmp_path, value, expected):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"code": "x;", "label": value}) + "\n")
    assert load_dataset(p)[0].label == expected


@pytest.mark.parametrize("value", [2, "yes", None, -1, 0.5])
def test_bad_label_names_the_line(tmp_path, value):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"code": "a;", "label": 0}) + "\n" + json.dumps({"code": "b;", "label": value}) + "\n")
    with pytest.raises(SsmscopeError, match=r"x\.jsonl:2: label"):
        load_dataset(p)


def test_missing_field_lists_present_fields(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"source": "a;", "label": 0}) + "\n")
    with pytest.raises(SsmscopeError, match=r"x\.jsonl:1: no field 'code' \(fields present: source, label\)"):
        load_dataset(p)


def test_malformed_json_line_is_named(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"code": "a;", "label": 0}) + "\n{not json\n")
    with pytest.raises(SsmscopeError, match=r"x\.jsonl:2: malformed JSON"):
        load_dataset(p)


def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(SsmscopeError, match="no such file"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(SsmscopeError, match="unknown format"):
        load_dataset(tmp_path / "d.txt")


def test_reveal_copy_matches_its_readme_facts(reveal_path):
    records = load_dataset(reveal_path)
    assert len(records) == 22_734
    assert sum(r.label for r in records) == 2_240
    kept, counts = deduplicate(records)
    assert counts["conflicting_texts"] == 351 and counts["conflicting_dropped"] == 702
    assert len({r.code for r in kept}) == len(kept)


# --- preparation --------------------------------------------------------------------------------


def _records(pairs):
    return [Record(i, code, label, f"mem:{i}") for i, (code, label) in enumerate(pairs)]


def test_deduplicate_keeps_one_copy_and_drops_contradictions():
    records = _records([("a", 0), ("a", 0), ("b", 1), ("c", 0), ("c", 1), ("a", 0)])
    kept, counts = deduplicate(records)
    assert [(r.code, r.label, r.index) for r in kept] == [("a", 0, 0), ("b", 1, 2)]
    assert counts["duplicates_dropped"] == 2 and counts["conflicting_dropped"] == 2 and counts["conflicting_texts"] == 1


def test_split_is_stratified_disjoint_complete_and_seeded():
    records = _records([(f"neg{i}", 0) for i in range(1000)] + [(f"pos{i}", 1) for i in range(100)])
    prepared = prepare(records, seed=3)
    sizes = {k: (len(v), sum(r.label for r in v)) for k, v in prepared.splits.items()}
    assert sizes == {"train": (880, 80), "valid": (110, 10), "test": (110, 10)}
    ids = [r.index for rs in prepared.splits.values() for r in rs]
    assert sorted(ids) == list(range(1100))
    assert prepare(records, seed=3).indices() == prepared.indices()
    assert prepare(records, seed=4).indices() != prepared.indices()


def test_limit_takes_a_stratified_subsample():
    records = _records([(f"neg{i}", 0) for i in range(900)] + [(f"pos{i}", 1) for i in range(100)])
    prepared = prepare(records, limit=200, seed=0)
    used = [r for rs in prepared.splits.values() for r in rs]
    assert len(used) == 200 and sum(r.label for r in used) == 20


def test_split_without_both_labels_is_an_error():
    with pytest.raises(SsmscopeError, match="not both labels"):
        prepare(_records([(f"n{i}", 0) for i in range(50)] + [("p", 1)]))


# --- tokenizer ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,expected",
    [
        ("a->b <<= 3; x++;", ["a", "->", "b", "<<=", "3", ";", "x", "++", ";"]),
        ("p->q >>= 0x1F; --i", ["p", "->", "q", ">>=", "0x1F", ";", "--", "i"]),
        ('s = "a; \\"b\\" c"; /* gone */ c = \'\\n\'; // gone too', ["s", "=", '"a; \\"b\\" c"', ";", "c", "=", "'\\n'", ";"]),
        ("x=1.5e-3f+.5+10UL;", ["x", "=", "1.5e-3f", "+", ".5", "+", "10UL", ";"]),
        ("a::b(...) && c || !d != e == f", ["a", "::", "b", "(", "...", ")", "&&", "c", "||", "!", "d", "!=", "e", "==", "f"]),
        ("#define N 10\nL\"wide\" u8\"x\"", ["#", "define", "N", "10", 'L"wide"', 'u8"x"']),
    ],
)
def test_lexer(code, expected):
    assert lex(code) == expected


def test_lexer_on_reveal_style_spaced_tokens():
    # ReVeal's code is already split by spaces; a string literal keeps its inner spaces
    assert lex('printf ( "%s %d\\n" , a ) ;') == ["printf", "(", '"%s %d\\n"', ",", "a", ")", ";"]


def test_identifier_normalisation_numbers_per_function():
    code = "int f(int x) { char *p = malloc(n); x = g(x) + x; free(p); return 0; }"
    assert tokenize(code, "identifiers") == [
        "int", "FUNC1", "(", "int", "VAR1", ")", "{", "char", "*", "VAR2", "=", "malloc", "(", "VAR3", ")", ";",
        "VAR1", "=", "FUNC2", "(", "VAR1", ")", "+", "VAR1", ";", "free", "(", "VAR2", ")", ";", "return", "0", ";", "}",
    ]
    assert tokenize('f("s", \'c\', 42)', "full") == ["FUNC1", "(", "STRING", ",", "CHAR", ",", "NUMBER", ")"]
    assert tokenize('f("s", 42)', "identifiers") == ["FUNC1", "(", '"s"', ",", "42", ")"]
    assert tokenize("foo bar", "none") == ["foo", "bar"]
    with pytest.raises(SsmscopeError, match="unknown mode"):
        tokenize("x", "camel")


# --- vocabulary and batching --------------------------------------------------------------------


def test_vocab_from_counts():
    vocab = Vocab.build([["a", "b", "a"], ["c", "a", "b"], ["d"]], min_count=2, max_size=10)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "b"]
    assert vocab.encode(["a", "z", "b", "a"], max_len=3).tolist() == [2, UNK_ID, 3]
    assert Vocab.build([["a", "b", "a", "b", "c", "c", "c"]], min_count=1, max_size=3).tokens == ["<pad>", "<unk>", "c"]


def test_length_grouped_batches_cover_every_index_once_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 1000, size=5000)
    batches = length_grouped_batches(lengths, 64, np.random.default_rng(1), chunk_batches=20)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(5000)) and max(map(len, batches)) == 64

    def padded_tokens(bs):
        return sum(len(b) * lengths[b].max() for b in bs)

    random_batches = [rng.permutation(5000)[i : i + 64] for i in range(0, 5000, 64)]
    assert padded_tokens(batches) < 0.6 * padded_tokens(random_batches)
    assert sorted(np.concatenate(sorted_batches(lengths, 64)).tolist()) == list(range(5000))


def test_progress_bar_draws_only_on_a_terminal():
    import io

    from ssmscope.train.progress import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, draws in ((io.StringIO(), False), (Terminal(), True)):
        with ProgressBar(3, "epoch 1", stream=stream) as bar:
            for _ in range(3):
                bar.update(loss=0.5)
        assert ("3/3" in stream.getvalue()) is draws and (stream.getvalue() == "") is not draws


def test_collate_pads_with_pad_id():
    seqs = [np.array([5, 6, 7]), np.array([8]), np.array([9, 10])]
    tokens, lengths = collate(seqs, np.array([1, 0]))
    assert lengths.tolist() == [1, 3]
    assert torch.equal(tokens, torch.tensor([[8, PAD_ID, PAD_ID], [5, 6, 7]]))


def test_collate_rounds_the_width_up_to_the_padding_multiple():
    seqs = [np.arange(1, 70), np.arange(1, 5)]
    tokens, lengths = collate(seqs, np.array([0, 1]), pad_to_multiple=64)
    assert tokens.shape == (2, 128) and lengths.tolist() == [69, 4]
    assert torch.equal(tokens[0, :69], torch.arange(1, 70)) and (tokens[0, 69:] == PAD_ID).all()
    exact, _ = collate(seqs, np.array([1]), pad_to_multiple=4)
    assert exact.shape == (1, 4)  # already a multiple: no extra column
