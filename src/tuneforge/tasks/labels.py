"""Class labels read from records: their names, whether a task is multi-label, and why a label cannot be
learnt (classification; tasks/classification.py re-exports label_set and label_names)."""
from __future__ import annotations

import math
from typing import Any

from ..data.records import Record, is_blank, missing_column, preview, preview_list
from ..errors import DataError


LABEL_TYPES = "labels are text or integers, or a list of them per record (multi-label)"


def label_set(records: list[Record], column: str) -> tuple[list[str], bool]:
    """The sorted label names of the training data, and whether it is multi-label."""
    kinds: dict[str, Record] = {}  # each kind of label seen -> the first record with it
    names: set[str] = set()
    for r in records:
        kind, record_names = label_names(r, column)
        kinds.setdefault(kind, r)
        names.update(record_names)
    if any(k.startswith("list of") for k in kinds):
        kinds.pop("list", None)  # an empty list fits lists of any kind
    if len(kinds) > 1:
        (k1, r1), (k2, r2) = list(kinds.items())[:2]
        raise DataError(r2.file, r2.line, f"label column mixes types: {k1} at line {r1.line}, {k2} here",
                        "use one type for every label (e.g. all text)")
    if len(names) < 2:
        raise DataError(records[0].file, None, f"only one label ({preview_list(names) or 'none'}) in the training "
                        "data", "classification needs at least two classes")
    return sorted(names, key=_natural), any(k.startswith("list") for k in kinds)


def label_names(r: Record, column: str) -> tuple[str, list[str]]:
    """(kind, names) of a record's label: ("text", ["pos"]), or ("list of text", [...]) for multi-label.

    Names are the label's text: 3 is "3"; 3.0 is "3" as well (pandas writes integer classes with a gap as
    floats), a fraction is a score, not a class; true/false are "true"/"false", as JSON and a CSV cell of
    the same data spell them, and a kind of their own, so true and 1 are never one class by accident."""
    if column not in r.fields:
        raise missing_column(r, column, "label column", f"set data.label to the label column or add {preview(column)}")
    value = r.fields[column]
    if not isinstance(value, list):
        kind, name = _single_label(r, column, value)
        return kind, [name]
    found = [_single_label(r, column, v, inside=True) for v in value]
    kinds = sorted({k for k, _ in found})
    if len(kinds) > 1:
        raise DataError(r.file, r.line, f"label list mixes {kinds[0]} and {kinds[1]}", "use one type for every label")
    return f"list of {kinds[0]}" if kinds else "list", [n for _, n in found]


def _single_label(r: Record, column: str, value: Any, inside: bool = False) -> tuple[str, str]:
    """(kind, name) of one label value, or a DataError saying why the task cannot learn it."""
    where = " inside the label list" if inside else f" in column {preview(column)}"
    if value is None:
        raise DataError(r.file, r.line, f"null label{where}", "give every record a label, or remove the record")
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, int):
        return "integer", str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return "integer", str(int(value))
        raise DataError(r.file, r.line, f"label {preview(value)}{where} is not a whole number",
                        f"{LABEL_TYPES}; a score is not a class")
    if isinstance(value, str):
        if is_blank(value):
            raise DataError(r.file, r.line, f"empty label{where}", "fill it in, or remove the record")
        return "text", value
    raise DataError(r.file, r.line, f"label {preview(value)}{where} is a {type(value).__name__}", LABEL_TYPES)


def _natural(name: str) -> tuple[int, Any]:
    return (0, int(name)) if name.lstrip("-").isdigit() else (1, name)
