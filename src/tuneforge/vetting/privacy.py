"""Find and redact personal data (PII) and secrets in training records, fast and offline.

The detectors (detectors.py, numbers.py) find values; here the findings are replaced by typed placeholders
(`<EMAIL_1>`), consistent within one record, and counted into the report data_audit.json holds. Nothing that
a report or log holds carries a raw value: findings are (type, start, end, score). Nothing is ever downloaded.

Why not Presidio as the default (`bench/scan_bench.py --presidio 200`: 200 planted values per type
from pii_corpus plus 3,000 PII-free texts; Presidio 2.2.366 pattern recognizers, offline, NLP engine
on spacy.blank("en"); speed in CPU time on short records, both on the same busy 2-core machine):

                                 texts/s  recall: EMAIL PHONE CARD IBAN SSN  NINO IP    FP/10k tokens
    Presidio, all its entities       280         1.00  1.00  0.84 0.99 1.00 0.00 1.00  1095 (licence, date, URL)
    Presidio, the shared types                   (same)                                 120 (phone, IP, SSN)
    Presidio, shared, score >= .5                1.00  0.00  0.84 0.99 0.71 0.00 1.00    44
    tuneforge                     14,000         1.00  1.00  1.00 1.00 1.00 1.00 1.00     0

Presidio is ~50x slower (100k records would take ~6 min), fires on dates, numbers and loopback
addresses in ordinary text, and has no NINO, URL-credential, secret, birth-date or address
detectors; its phone matches score 0.4, so any score cut-off drops them all. Our IP rule treats
loopback/unspecified addresses as non-PII, part of Presidio's IP count above; and the corpus was
written with our detectors' definitions (a bare digit run is a phone only after a phone word),
which favours them. The speed gap and the false positives are what rule Presidio out.
On real code and docs (950k tokens of numpy, torch, transformers, requests, spaCy sources and
DESIGN.md) the detectors fire 0.07 times per 10k tokens, on author emails, example IPs and a token.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import phonenumbers

from ..data.records import Record
from ..errors import TuneforgeError
from .detectors import detect, detect_many, notices
from .findings import TYPES, Finding
from .numbers import NATIONAL_REGIONS

MODES = ("off", "warn", "redact", "block")
MAX_LOCATIONS = 1000  # the report lists this many places; counts stay exact beyond it

PiiReport = dict[str, Any]


class Placeholders:
    """Per-record map from a value to its placeholder (`<EMAIL_1>`), keyed by a digest, not the value."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, bytes], str] = {}
        self._counts: Counter[str] = Counter()

    def get(self, kind: str, value: str) -> str:
        key = (kind, hashlib.blake2b(_canonical(kind, value).encode(), digest_size=16).digest())
        if key not in self._ids:
            self._counts[kind] += 1
            self._ids[key] = f"<{kind}_{self._counts[kind]}>"
        return self._ids[key]


def _canonical(kind: str, value: str) -> str:
    """The same phone, card or email written two ways gets the same placeholder."""
    if kind == "PHONE":
        return _e164(value) or re.sub(r"\D", "", value)
    if kind in ("CREDIT_CARD", "IBAN", "US_SSN", "UK_NINO"):
        return re.sub(r"[\s().\-/]", "", value).upper()
    return value.lower() if kind == "EMAIL" else value


def _e164(value: str) -> str | None:
    """+442079460958 for "+44 20 7946 0958" and for "020 7946 0958" (the first region that fits)."""
    digits = re.sub(r"\D", "", value)
    intl = value.lstrip("(").startswith(("+", "00"))
    regions = NATIONAL_REGIONS if digits.startswith("0") else ("US", "IN")  # as the detector reads it
    candidates = [("+" + (digits[2:] if value.startswith("00") else digits), None)] if intl else \
        [(digits, r) for r in regions]
    for number, region in candidates:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None


Edit = tuple[int, int, int, int]  # a replaced range (start, end) and where its placeholder lies (new start, new end)


def redact(text: str, findings: Iterable[Finding], registry: Placeholders) -> str:
    """Replace every finding by its typed placeholder; `registry` keeps them consistent in a record."""
    return redact_edits(text, findings, registry)[0]


def redact_edits(text: str, findings: Iterable[Finding], registry: Placeholders) -> tuple[str, list[Edit]]:
    """`redact`, and the edits it made in order: what character offsets into the text must follow."""
    parts, pos, size, edits = [], 0, 0, []
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos:
            continue  # overlapping findings (detect never makes them): the first one wins
        placeholder = registry.get(f.type, text[f.start:f.end])
        size += f.start - pos
        edits.append((f.start, f.end, size, size + len(placeholder)))
        parts += [text[pos:f.start], placeholder]
        pos, size = f.end, size + len(placeholder)
    return "".join(parts) + text[pos:], edits


# ---------------------------------------------------------------------------------------------
# scanning records
_Path = tuple[Any, ...]  # ("text",) or ("messages", 2, "content")
_MESSAGE_KEYS = ("content", "value", "text")  # OpenAI/chat, ShareGPT, content parts


def texts_of(fields: dict[str, Any], columns: Sequence[str]) -> list[tuple[_Path, str]]:
    """Every string to scan in the record's text columns, with its path inside `fields`."""
    out: list[tuple[_Path, str]] = []
    for col in columns:
        _collect(fields.get(col), (col,), out)
    return out


def _collect(value: Any, path: _Path, out: list[tuple[_Path, str]]) -> None:
    if isinstance(value, str):
        out.append((path, value))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _collect(item, path + (i,), out)
    elif isinstance(value, dict):
        for key in _MESSAGE_KEYS:
            if key in value:
                _collect(value[key], path + (key,), out)


def path_name(path: _Path) -> str:
    """("messages", 2, "content") -> "messages[2].content"."""
    name = str(path[0])
    for p in path[1:]:
        name += f"[{p}]" if isinstance(p, int) else f".{p}"
    return name


def _set_path(fields: dict[str, Any], path: _Path, value: str) -> None:
    """Set a nested value, copying each container on the way so the input record is untouched."""
    node: Any = fields
    for key in path[:-1]:
        child = node[key]
        child = list(child) if isinstance(child, list) else dict(child)
        node[key] = child
        node = child
    node[path[-1]] = value


@dataclass(frozen=True, slots=True)
class Hit:
    """Where one finding sits: file, line, field path and type (never the value)."""

    file: str
    line: int
    field: str
    type: str


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise TuneforgeError(f"privacy.pii is '{mode}', expected one of {', '.join(MODES)}")


# After redaction: (fields, {path: edits}) -> (fields made consistent with the new text, counts for the report)
Remap = Callable[[dict[str, Any], dict[_Path, list[Edit]]], tuple[dict[str, Any], dict[str, int]]]


def scan(records: Sequence[Record], columns: Sequence[str], redact_values: bool, remap: Remap | None = None,
         remapped: Counter[str] | None = None) -> tuple[list[Record], list[Hit], int]:
    """Detect (and optionally redact) PII in every record; returns (records, hits, records with PII).

    `remap` re-aligns what points into a redacted text (a task's character spans), adding its counts to
    `remapped`."""
    entries = [texts_of(r.fields, columns) for r in records]
    flat = [text for e in entries for _, text in e]
    found = iter(detect_many(flat))
    out, hits, n_with = [], [], 0
    for rec, entry in zip(records, entries):
        registry, fields, edits = Placeholders(), None, {}
        before = len(hits)
        for path, text in entry:
            fs = next(found)
            hits += [Hit(rec.file, rec.line, path_name(path), f.type) for f in fs]
            if fs and redact_values:
                fields = fields if fields is not None else dict(rec.fields)
                new, edits[path] = redact_edits(text, fs, registry)
                _set_path(fields, path, new)
        if fields is not None and remap is not None:
            fields, counts = remap(fields, edits)
            if remapped is not None:
                remapped.update(counts)
        n_with += len(hits) > before
        out.append(rec if fields is None else Record(fields, rec.file, rec.line, dict(rec.meta)))
    return out, hits, n_with


def report(hits: Sequence[Hit], mode: str, n_records: int, n_with: int, split: str | None = None) -> PiiReport:
    """Counts by type and the first MAX_LOCATIONS places; no raw values."""
    locations = [{"file": h.file, "line": h.line, "type": h.type, "field": h.field} for h in hits[:MAX_LOCATIONS]]
    if split is not None:
        for loc in locations:
            loc["split"] = split
    return {"mode": mode, "total": len(hits), "records_scanned": n_records, "records_with_pii": n_with,
            "by_type": dict(Counter(h.type for h in hits).most_common()), "locations": locations,
            "locations_truncated": max(0, len(hits) - MAX_LOCATIONS), "notices": notices()}


def block_message(rep: PiiReport) -> str:
    """The error for privacy.pii: block: first places, total count, the fix."""
    first = ", ".join(f"{x['file']}:{x['line']} {x['type']} in '{x['field']}'" for x in rep["locations"][:3])
    more = f" and {rep['total'] - 3} more" if rep["total"] > 3 else ""
    return (f"found {rep['total']} PII value(s) in {rep['records_with_pii']} record(s) with privacy.pii: block — "
            f"{first}{more} (set privacy.pii: redact, or remove them)")


def scan_records(records: Sequence[Record], columns: Sequence[str], mode: str) -> tuple[list[Record], PiiReport]:
    """Scan the text columns of `records` under a privacy mode.

    off: nothing is scanned. warn: records unchanged, findings reported. redact: returns new Records
    with typed placeholders. block: raises TuneforgeError (first places, total, fix) if anything is found.
    """
    _check_mode(mode)
    if mode == "off":
        return list(records), {"mode": "off", "total": 0, "records_scanned": 0, "records_with_pii": 0,
                               "by_type": {}, "locations": [], "locations_truncated": 0,
                               "notices": ["privacy scan off (privacy.pii: off)"]}
    out, hits, n_with = scan(records, columns, redact_values=(mode == "redact"))
    rep = report(hits, mode, len(records), n_with)
    if mode == "block" and hits:
        raise TuneforgeError(block_message(rep))
    return out, rep


__all__ = ["Finding", "Hit", "Placeholders", "detect", "detect_many", "redact", "redact_edits", "scan_records", "scan",
           "report",
           "block_message", "texts_of", "path_name", "notices", "MODES", "TYPES"]
