"""Read labelled C/C++ functions from the file formats people keep them in.

One entry point, :func:`load_dataset`. Supported inputs (text formats may be gzip-compressed,
recognised by a ``.gz`` suffix):

* JSON Lines (``.jsonl``, ``.ndjson``): one object per line;
* a JSON array of objects (``.json``);
* CSV with a header row (``.csv``);
* Parquet (``.parquet``);
* the original ReVeal folder: ``vulnerables.json`` (label 1) and ``non-vulnerables.json``
  (label 0), each a JSON array of objects with a code field;
* a folder with a given split (the CodeXGLUE and PrimeVul layout): one train, one valid and one
  test file in any of the formats above, named ``train.jsonl``, ``primevul_valid.jsonl``, ``test.csv``
  and so on (``validation``, ``val`` and ``dev`` name the valid file too). Its records carry their
  split, which training then uses as is.

Every record keeps its position in the source (``index``, 0-based, in reading order; for a split
folder, in the order train, valid, test) so that a split can be written down as indices and
re-read later.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import SsmscopeError

REVEAL_FOLDER_FILES = {"vulnerables.json": 1, "non-vulnerables.json": 0}
SPLIT_FILE_WORDS = {"train": ("train",), "valid": ("valid", "validation", "val", "dev"), "test": ("test",)}  # split folder file names
_TRUE = {"1", "true"}
_FALSE = {"0", "false"}


@dataclass(frozen=True)
class Record:
    """One labelled function. ``where`` names its place for error messages (file:line); ``split`` is
    the split a split folder put it in, ``group`` the value of the ``--split-by`` field (else None)."""

    index: int
    code: str
    label: int
    where: str
    split: str | None = None
    group: str | None = None


def dataset_stem(path: str | Path) -> str:
    """A dataset's name without its format suffixes: 'dir/test.jsonl.gz' → 'test'."""
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".csv", ".parquet"):
        name = name.removesuffix(suffix)
    return name or "data"


def parse_label(value, where: str, field: str) -> int:
    """0/1, True/False, or the strings "0", "1", "true", "false" (any case); else an error."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return 1
        if text in _FALSE:
            return 0
    raise SsmscopeError(
        f"{where}: label field '{field}' is {value!r}; labels must be 0/1 (or \"0\"/\"1\", true/false)"
    )


def load_dataset(
    path: str | Path, code_field: str = "code", label_field: str = "label", skipped: list[str] | None = None,
    group_field: str | None = None,
) -> list[Record]:
    """Read every labelled function from ``path`` (a file in one of the formats above, a ReVeal
    folder or a split folder).

    A bad record (malformed JSON line, missing field, label outside {0, 1}, empty or whitespace-only
    code) is an error naming its line, unless ``skipped`` is a list: then the record is left out
    and its error message appended there (``--skip-bad-lines``). Records keep their position in
    the source either way, so a skipped line never shifts the indices of the others. With
    ``group_field`` every record must have that field too; its value (as text) is the record's group.
    """
    path = Path(path)
    if not path.exists():
        raise SsmscopeError(f"{path}: no such file or folder; pass --data with an existing dataset path")
    rows = _read_folder(path, label_field) if path.is_dir() else ((where, row, None) for where, row in _read_file(path))
    records = []
    for i, (where, row, split) in enumerate(rows):
        try:
            if isinstance(row, SsmscopeError):  # a line that did not parse
                raise row
            records.append(_to_record(i, where, row, code_field, label_field, split, group_field))
        except SsmscopeError as e:
            if skipped is None:
                raise
            skipped.append(str(e))
    if not records:
        raise SsmscopeError(f"{path}: no records found; the file is empty" + (f" or all {len(skipped)} records were bad" if skipped else ""))
    return records


def _to_record(index: int, where: str, row, code_field: str, label_field: str, split: str | None = None, group_field: str | None = None) -> Record:
    if not isinstance(row, dict):
        raise SsmscopeError(f"{where}: expected an object with fields '{code_field}' and '{label_field}', got {type(row).__name__}")
    for name, flag in ((code_field, "--code-field / --label-field"), (label_field, "--code-field / --label-field"), (group_field, "--split-by")):
        if name is not None and name not in row:
            raise SsmscopeError(
                f"{where}: no field '{name}' (fields present: {', '.join(map(str, row)) or 'none'}); "
                f"choose the right one with {flag}"
            )
    code = row[code_field]
    if not isinstance(code, str):
        raise SsmscopeError(f"{where}: code field '{code_field}' is {type(code).__name__}, not text")
    if not code.strip():
        raise SsmscopeError(f"{where}: code field '{code_field}' is empty; remove the record or pass --skip-bad-lines")
    group = None if group_field is None else str(row[group_field])
    return Record(index, code, parse_label(row[label_field], where, label_field), where, split, group)


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _open_text(path: Path) -> io.TextIOBase:
    """UTF-8 text (a leading byte-order mark is skipped), gunzipped if the name ends in .gz."""
    raw = gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    formats = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    if ext not in formats:
        raise SsmscopeError(
            f"{path}: unknown format '{ext or path.name}'; use .jsonl, .json, .csv or .parquet (optionally .gz), or a ReVeal folder"
        )
    return formats[ext]


def _read_file(path: Path):
    fmt = _format_of(path)
    try:
        if fmt == "jsonl":
            return list(_read_jsonl(path))
        if fmt == "json":
            return list(_read_json_array(path))
        if fmt == "csv":
            return list(_read_csv(path))
        return list(_read_parquet(path))
    except UnicodeDecodeError as e:
        raise SsmscopeError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); re-encode the file as UTF-8") from None
    except (OSError, EOFError) as e:
        raise SsmscopeError(f"{path}: cannot read ({e}); check that the file is complete and, if .gz, really gzip") from None


def _read_jsonl(path: Path):
    """(where, object) per non-blank line; a line that is not UTF-8 or not JSON comes as (where, SsmscopeError)."""
    with (gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")) as f:
        for line_no, raw in enumerate(f, start=1):
            where = f"{path}:{line_no}"
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # byte-order mark
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield where, SsmscopeError(f"{where}: not UTF-8 ({e.reason} at byte {e.start + 1} of the line); re-encode the file as UTF-8 or pass --skip-bad-lines")
                continue
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:  # handed on, so that --skip-bad-lines can skip it
                yield where, SsmscopeError(f"{where}: malformed JSON ({e.msg} at column {e.colno}); fix or remove that line, or pass --skip-bad-lines")


def _read_json_array(path: Path, label: int | None = None, label_field: str = "label"):
    with _open_text(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SsmscopeError(f"{path}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, list):
        raise SsmscopeError(f"{path}: expected a JSON array of objects, got a JSON {type(data).__name__}")
    for i, row in enumerate(data):
        where = f"{path}: item {i}"
        if label is not None and isinstance(row, dict):
            row = {**row, label_field: label}
        yield where, row


def _read_csv(path: Path):
    csv.field_size_limit(1 << 30)
    with _open_text(path) as f:
        reader = csv.DictReader(f)
        for row in reader:
            yield f"{path}:{reader.line_num}", row


def _read_parquet(path: Path):
    import pyarrow.parquet as pq

    source = io.BytesIO(gzip.open(path).read()) if _is_gzip(path) else path
    try:
        table = pq.read_table(source)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise SsmscopeError(f"{path}: not a readable Parquet file ({e})") from None
    for i, row in enumerate(table.to_pylist()):
        yield f"{path}: row {i}", row


def split_files(folder: Path) -> dict[str, list[Path]]:
    """{split: the files of ``folder`` whose name (without format suffixes) is, or ends in _/-, one of
    that split's words}: ``train.jsonl``, ``primevul_valid.jsonl``, ``devign-test.csv``."""
    found: dict[str, list[Path]] = {name: [] for name in SPLIT_FILE_WORDS}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        stem = dataset_stem(path).lower()
        for name, words in SPLIT_FILE_WORDS.items():
            if any(stem == w or stem.endswith(("_" + w, "-" + w, "." + w)) for w in words):
                found[name].append(path)
    return found


def _read_folder(folder: Path, label_field: str):
    """(where, row, split) of a ReVeal folder (split None) or of a split folder (train, valid, test in that order)."""
    if any((folder / name).exists() for name in REVEAL_FOLDER_FILES):
        return [(where, row, None) for where, row in _read_reveal_folder(folder, label_field)]
    files = split_files(folder)
    if not any(files.values()):
        raise SsmscopeError(
            f"{folder}: a dataset folder holds either the ReVeal files {list(REVEAL_FOLDER_FILES)} or one train, one valid "
            f"and one test file (e.g. train.jsonl, valid.jsonl, test.jsonl); it holds neither"
        )
    for name, paths in files.items():
        if len(paths) != 1:
            what = "no" if not paths else f"{len(paths)} ({', '.join(p.name for p in paths)})"
            raise SsmscopeError(f"{folder}: a split folder needs exactly one {name} file, found {what}; add or rename it (train.jsonl, valid.jsonl, test.jsonl)")
    return [(where, row, name) for name, (path,) in files.items() for where, row in _read_file(path)]


def _read_reveal_folder(folder: Path, label_field: str):
    missing = [name for name in REVEAL_FOLDER_FILES if not (folder / name).is_file()]
    if missing:
        raise SsmscopeError(
            f"{folder}: a dataset folder must hold the ReVeal files {list(REVEAL_FOLDER_FILES)}; missing {missing}"
        )
    rows = []
    for name, label in REVEAL_FOLDER_FILES.items():
        # The folder's files carry no label field: the file they are in is the label.
        for where, row in _read_json_array(folder / name, label, label_field):
            rows.append((where, row))
    return rows
