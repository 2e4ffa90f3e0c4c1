"""Read labelled records from JSONL, CSV, Parquet or a Hugging Face dataset saved to disk.

Every record remembers the file and line it came from, so every later error, PII finding or
leakage pair can point the user at the exact place to fix.

Every read is bounded: text files are read one bounded line at a time (a file without newlines is
refused after MAX_LINE_BYTES, not read whole), CSV fields are capped at the same size, and reading
stops with an error past MAX_DATA_BYTES (characters, for CSV). The records, and later their token
ids, are held in memory as Python objects, about 10× the file's size (a 100 MB JSONL of reviews:
264 MB of records, 1.15 GB with MiniLM token ids), so a larger file would need tens of GB before training.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from ..errors import DataError

FORMATS = {".jsonl": "jsonl", ".json": "json", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv",
           ".parquet": "parquet"}
MAX_LINE_BYTES = 1_000_000  # a "line" bigger than this is almost always a broken file, not a record
MAX_DATA_BYTES = 2 * 2**30  # per data file (see the module docstring); data.limit reads less
ARROW_BATCH = 1024          # Parquet / HF-disk rows converted to Python at a time
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as errors="surrogateescape" keeps them
_INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}  # fillers that render as nothing, not Cf


@dataclass
class Record:
    """One example: its raw fields plus where it came from (file, 1-based line or row)."""

    fields: dict[str, Any]
    file: str
    line: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def preview(value: Any, width: int = 60) -> str:
    """repr(value) cut to `width` characters: an error message never echoes a megabyte of the user's data."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def preview_list(names: Iterable[Any], shown: int = 10) -> str:
    """The first `shown` names (each cut short), then how many there are in all."""
    names = list(names)
    head = ", ".join(str(n) if len(str(n)) <= 40 else str(n)[:39] + "…" for n in names[:shown])
    return head + (f", … ({len(names):,} in all)" if len(names) > shown else "")


def is_blank(text: str) -> bool:
    """No visible character: whitespace, zero-width and other format characters (U+200B, U+FEFF, U+200C/D,
    bidi marks, soft hyphen), control characters, and the filler characters that render as nothing."""
    return all(ch.isspace() or ch in _INVISIBLE or unicodedata.category(ch) in ("Cf", "Cc") for ch in text)


def read_records(path: str | Path, limit: int | None = None) -> list[Record]:
    """Read the records of a data file (or an HF dataset directory), the first `limit` only if given;
    raise DataError on any fault."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists() \
                or (path / "dataset_dict.json").exists():
            records = _read_hf_disk(path, limit)
        else:
            raise DataError(str(path), None, "is a directory, expected a data file",
                            "point at a .jsonl, .csv or .parquet file or a dataset saved with save_to_disk")
    else:
        kind = FORMATS.get(path.suffix.lower())
        if kind is None:
            raise DataError(str(path), None, f"unknown file type {preview(path.suffix, 20)}",
                            "use .jsonl, .csv, .tsv or .parquet")
        records = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}[kind](path, limit)
    if not records:
        raise DataError(str(path), None, "file is empty (no records)", "add at least one record")
    return records


def _check_exists(path: Path) -> None:
    """A missing file, a dangling link and a link loop are three different mistakes: say which."""
    try:
        os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(str(path), None, f"symlink to a missing file ({preview(os.readlink(path))})",
                            "point the link at the data file, or use the file's own path") from None
        raise DataError(str(path), None, "file not found", "check the path") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(str(path), None, "symlink loop (following the links never reaches a file)",
                            "use the data file's real path") from None
        raise DataError(str(path), None, f"cannot read ({e.strerror})", "check the path and its permissions") \
            from None


def _too_much(path: Path) -> DataError:
    size = f"{MAX_DATA_BYTES / 2**30:g} GiB" if MAX_DATA_BYTES >= 2**30 else f"{MAX_DATA_BYTES:,} bytes"
    return DataError(str(path), None, f"more than {size} of data; tuneforge holds the data in memory",
                     "use a sample of the file, or data.limit=N to train on the first N records")


def _too_long(path: Path, line_no: int) -> DataError:
    return DataError(str(path), line_no, f"line is over {MAX_LINE_BYTES:,} bytes long (the limit)",
                     "split the record or check the file is not binary")


def _bad_utf8(path: Path, line_no: int, byte: int, column: int) -> DataError:
    return DataError(str(path), line_no, f"invalid UTF-8 byte 0x{byte:02x} at column {column}",
                     "re-save the file as UTF-8")


def _decode(path: Path, raw: bytes, line_no: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        column = len(raw[:e.start].decode("utf-8")) + 1  # in characters, like JSON's own error columns
        raise _bad_utf8(path, line_no, raw[e.start], column) from None


def _lines(path: Path, f: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) with every read bounded: by line, and in total (counted, not f.tell():
    a named pipe cannot tell)."""
    line_no = size = 0
    while raw := f.readline(MAX_LINE_BYTES + 1):
        line_no, size = line_no + 1, size + len(raw)
        if len(raw) > MAX_LINE_BYTES:
            raise _too_long(path, line_no)
        if size > MAX_DATA_BYTES:
            raise _too_much(path)
        yield line_no, raw


def _read_jsonl(path: Path, limit: int | None) -> list[Record]:
    records: list[Record] = []
    with open(path, "rb") as f:
        for line_no, raw in _lines(path, f):
            if limit and len(records) >= limit:
                break
            text = _decode(path, raw, line_no).strip()
            if line_no == 1:
                text = text.lstrip("\ufeff")
            if not text:
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(str(path), line_no, f"malformed JSON ({e.msg} at column {e.colno})",
                                "each line must be one JSON object") from None
            except RecursionError:  # json recurses per nesting level
                raise DataError(str(path), line_no, "JSON nested too deeply",
                                "flatten the record: a record is one object of fields") from None
            if not isinstance(obj, dict):
                raise DataError(str(path), line_no, f"expected a JSON object, got {type(obj).__name__}",
                                'write one object per line, e.g. {"text": "...", "label": "..."}')
            records.append(Record(obj, str(path), line_no))
    return records


def _is_json_array(path: Path) -> bool:
    """A .json file whose first non-blank character is `[`: one JSON array of records (the Alpaca release
    format), not one object per line."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _read_json(path: Path, limit: int | None) -> list[Record]:
    """A .json file: a JSON array of objects (each record's line is where its object starts), or JSONL."""
    if not _is_json_array(path):
        return _read_jsonl(path, limit)
    if path.stat().st_size > MAX_DATA_BYTES:
        raise _too_much(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        start = raw.rfind(b"\n", 0, e.start) + 1
        raise _bad_utf8(path, raw.count(b"\n", 0, e.start) + 1, raw[e.start],
                        len(raw[start:e.start].decode("utf-8", "replace")) + 1) from None
    decoder, records = json.JSONDecoder(), []
    pos = text.index("[") + 1
    line, counted = 1, 0  # the line `pos` is on (newlines counted up to `counted`)
    while True:
        pos = _skip_blank(text, pos)
        if (pos < len(text) and text[pos] == "]") or (limit and len(records) >= limit):
            break
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(str(path), e.lineno, f"malformed JSON ({e.msg} at column {e.colno})",
                            "the file must be one JSON array of objects, [{...}, {...}]") from None
        except RecursionError:
            raise DataError(str(path), line, "JSON nested too deeply", "flatten the record") from None
        if not isinstance(obj, dict):
            raise DataError(str(path), line, f"array item {len(records) + 1} is a {type(obj).__name__}, expected "
                            "an object", 'write [{"instruction": "...", "output": "..."}, ...]')
        records.append(Record(obj, str(path), line))
        pos = _skip_blank(text, end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            raise DataError(str(path), text.count("\n", 0, pos) + 1, "expected ',' or ']' after an array item",
                            "the file must be one JSON array of objects, [{...}, {...}]")
    return records


def _skip_blank(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def file_kind(path: str | Path) -> str:
    """What a data file holds, as the run log names it: JSONL, JSON array, CSV, TSV, Parquet, HF dataset."""
    path = Path(path)
    if path.is_dir():
        return "HF dataset"
    kind = FORMATS.get(path.suffix.lower(), "")
    if kind == "json":
        return "JSON array" if path.is_file() and _is_json_array(path) else "JSONL"
    return {"jsonl": "JSONL", "parquet": "Parquet"}.get(kind) or path.suffix.lstrip(".").upper() or "data"


def _text_lines(path: Path, f: BinaryIO) -> Iterator[str]:
    """The file's physical lines as text (split at \\n, \\r\\n and \\r, like csv expects), each read bounded.

    Bytes that are not UTF-8 are kept as escapes by the decoder and reported with their line and column."""
    text = io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape", newline="")
    line_no = size = 0
    while line := text.readline(MAX_LINE_BYTES + 1):  # bounded in characters, so at most 4× in bytes
        line_no, size = line_no + 1, size + len(line)
        if len(line) > MAX_LINE_BYTES:
            raise _too_long(path, line_no)
        if size > MAX_DATA_BYTES:
            raise _too_much(path)
        bad = _ESCAPED.search(line)
        if bad:
            raise _bad_utf8(path, line_no, ord(bad.group()) - 0xDC00, bad.start() + 1)
        yield line.lstrip("\ufeff") if line_no == 1 else line


def _read_csv(path: Path, limit: int | None) -> list[Record]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    old_limit = csv.field_size_limit()
    csv.field_size_limit(MAX_LINE_BYTES)  # a longer field is almost always an unclosed quote eating the file
    records: list[Record] = []
    start = 1  # the line the row being read starts on
    try:
        with open(path, "rb") as f:
            reader = csv.reader(_text_lines(path, f), delimiter=delimiter)
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                return []
            header = _header(path, header)
            start = reader.line_num + 1
            for row in reader:
                if limit and len(records) >= limit:
                    break
                line_no, start = reader.line_num, reader.line_num + 1
                if not row or not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise DataError(str(path), line_no, f"row has {len(row)} fields, header has {len(header)}",
                                    "quote fields that contain the delimiter")
                records.append(Record(dict(zip(header, row)), str(path), line_no))
    except csv.Error as e:
        if "field limit" in str(e):
            raise DataError(str(path), start, f"a field over {MAX_LINE_BYTES:,} characters starts in this row, "
                            "most likely a quote that is never closed", "close the quote") from None
        raise DataError(str(path), reader.line_num, f"malformed CSV ({e})", "check quoting") from None
    finally:
        csv.field_size_limit(old_limit)
    return records


def _header(path: Path, header: list[str]) -> list[str]:
    """Column names, stripped; a name given twice would silently drop one column's values."""
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise DataError(str(path), 1, f"duplicate column name {preview(name)} in the header",
                            "rename one of the columns")
        seen.add(name)
    return names


def _read_parquet(path: Path, limit: int | None) -> list[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        meta, needed, size = pf.metadata, 0, 0
        for i in range(meta.num_row_groups):  # pyarrow decodes a whole row group at once: check before
            if limit and needed >= limit:
                break
            needed += meta.row_group(i).num_rows
            size += meta.row_group(i).total_byte_size
        if size > MAX_DATA_BYTES:
            raise _too_much(path)
        return _arrow_records(path, pf.iter_batches(batch_size=min(ARROW_BATCH, limit or ARROW_BATCH)), limit)
    except DataError:
        raise
    except Exception as e:  # pyarrow raises many types for a broken file
        raise DataError(str(path), None, f"cannot read Parquet ({_short(e)})",
                        "check the file is valid Parquet") from None


def _read_hf_disk(path: Path, limit: int | None) -> list[Record]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))  # memory-mapped: nothing is read yet
    except Exception as e:
        raise DataError(str(path), None, f"cannot load dataset ({_short(e)})",
                        "save it with Dataset.save_to_disk") from None
    if isinstance(ds, DatasetDict):
        if "train" not in ds:
            raise DataError(str(path), None, f"dataset dict has splits {preview_list(ds)}, no 'train'",
                            "point at one split's directory")
        ds = ds["train"]
    if limit and limit < len(ds):
        ds = ds.select(range(limit))
    return _arrow_records(path, ds.with_format("arrow").iter(batch_size=min(ARROW_BATCH, limit or ARROW_BATCH)), limit)


def _arrow_records(path: Path, batches: Iterable[Any], limit: int | None) -> list[Record]:
    """Records from Arrow batches, converted a batch at a time and counted against MAX_DATA_BYTES."""
    records: list[Record] = []
    size = 0
    for batch in batches:
        size += batch.nbytes
        if size > MAX_DATA_BYTES:
            raise _too_much(path)
        records += [Record(_clean(row), str(path), len(records) + i) for i, row in enumerate(batch.to_pylist(), 1)]
        if limit and len(records) >= limit:
            return records[:limit]
    return records


def _short(e: Exception) -> str:
    text = str(e)
    return text if len(text) <= 200 else text[:199] + "…"


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def missing_column(r: Record, column: str, what: str, fix: str) -> DataError:
    """The error for a record without `column`: names the column (`what`: "column", "label column"), the
    columns the record has, and the fix."""
    return DataError(r.file, r.line, f"missing {what} {preview(column)} (columns: "
                     f"{preview_list(sorted(r.fields)) or 'none'})", fix)


def require_text(records: Iterable[Record], column: str) -> None:
    """Every record must carry a non-empty string in `column`."""
    for r in records:
        if column not in r.fields:
            raise missing_column(r, column, "column", f"set data.text to one of them or add {preview(column)}")
        value = r.fields[column]
        if not isinstance(value, str):
            raise DataError(r.file, r.line, f"column {preview(column)} is {type(value).__name__}, expected text",
                            "put the text in quotes")
        if is_blank(value):
            raise DataError(r.file, r.line, f"empty text in column {preview(column)}" +
                            (" (only invisible characters)" if value and not value.isspace() else ""),
                            "remove the record or fill it")
