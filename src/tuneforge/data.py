"""Read labelled records from JSONL, CSV, Parquet or a Hugging Face dataset saved to disk.

Every record remembers the file and line it came from, so every later error, PII finding or
leakage pair can point the user at the exact place to fix.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import DataError

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv",
           ".parquet": "parquet"}
MAX_LINE_BYTES = 1_000_000  # a "line" bigger than this is almost always a broken file, not a record


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


def read_records(path: str | Path) -> list[Record]:
    """Read every record of a data file (or an HF dataset directory); raise DataError on any fault."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), None, "file not found", "check the path in the config")
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists() \
                or (path / "dataset_dict.json").exists():
            records = _read_hf_disk(path)
        else:
            raise DataError(str(path), None, "is a directory, expected a data file",
                            "point at a .jsonl, .csv or .parquet file or a dataset saved with save_to_disk")
    else:
        kind = FORMATS.get(path.suffix.lower())
        if kind is None:
            raise DataError(str(path), None, f"unknown file type '{path.suffix}'",
                            "use .jsonl, .csv, .tsv or .parquet")
        records = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[kind](path)
    if not records:
        raise DataError(str(path), None, "file is empty (no records)", "add at least one record")
    return records


def _decode(path: Path, raw: bytes, line_no: int) -> str:
    if len(raw) > MAX_LINE_BYTES:
        raise DataError(str(path), line_no, f"line is {len(raw):,} bytes long (limit {MAX_LINE_BYTES:,})",
                        "split the record or check the file is not binary")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(str(path), line_no, f"invalid UTF-8 byte 0x{raw[e.start]:02x} at column {e.start + 1}",
                        "re-save the file as UTF-8") from None


def _read_jsonl(path: Path) -> list[Record]:
    records: list[Record] = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
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


def _read_csv(path: Path) -> list[Record]:
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    text = "".join(_decode(path, b, i) for i, b in enumerate(lines, start=1)).lstrip("\ufeff")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    old_limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        # StringIO(newline="") splits only at \n, \r and \r\n, like the file; str.splitlines would also split
        # inside fields at \x1e, \x85, \u2028 and friends, and shift every line number after them.
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            return []
        header = [h.strip() for h in header]
        records = []
        for row in reader:
            line_no = reader.line_num
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(str(path), line_no, f"row has {len(row)} fields, header has {len(header)}",
                                "quote fields that contain the delimiter")
            records.append(Record(dict(zip(header, row)), str(path), line_no))
    except csv.Error as e:
        raise DataError(str(path), reader.line_num, f"malformed CSV ({e})", "check quoting") from None
    finally:
        csv.field_size_limit(old_limit)
    return records


def _read_parquet(path: Path) -> list[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises many types for a broken file
        raise DataError(str(path), None, f"cannot read Parquet ({e})", "check the file is valid Parquet") from None
    return [Record(_clean(row), str(path), i) for i, row in enumerate(table.to_pylist(), start=1)]


def _read_hf_disk(path: Path) -> list[Record]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as e:
        raise DataError(str(path), None, f"cannot load dataset ({e})", "save it with Dataset.save_to_disk") from None
    if isinstance(ds, DatasetDict):
        if "train" not in ds:
            raise DataError(str(path), None, f"dataset dict has splits {list(ds)}, no 'train'",
                            "point at one split's directory")
        ds = ds["train"]
    return [Record(_clean(row), str(path), i) for i, row in enumerate(ds, start=1)]


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def require_text(records: Iterable[Record], column: str) -> None:
    """Every record must carry a non-empty string in `column`."""
    for r in records:
        if column not in r.fields:
            have = ", ".join(sorted(r.fields)) or "none"
            raise DataError(r.file, r.line, f"missing column '{column}' (columns: {have})",
                            f"set data.text to one of them or add '{column}'")
        value = r.fields[column]
        if not isinstance(value, str):
            raise DataError(r.file, r.line, f"column '{column}' is {type(value).__name__}, expected text",
                            "put the text in quotes")
        if not value.strip():
            raise DataError(r.file, r.line, f"empty text in column '{column}'", "remove the record or fill it")
