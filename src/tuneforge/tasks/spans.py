"""Entities as character spans, and the tag sequences they become: the two layouts token_classification reads.

A record holds either `text` + `spans` ([{"start", "end", "label"}], end exclusive: what annotation tools such
as Label Studio and doccano export; a [start, end, label] triple is read too), or `tokens` + `tags` (one tag
per word, BIO/IOB2 or IOBES; BILOU's U-/L- are read as S-/E-). Tokens are joined into a text (by spaces,
punctuation attached: `join_tokens`), so both layouts become text + spans, the one layout the task trains on,
and back: a prediction on a tokens record is given as spans and as tags on its own tokens.

Tags are read leniently, as conlleval and seqeval's default mode do: an I- (or E-) tag that does not continue
an entity of its type starts one. Spans must not overlap (BIO cannot hold nested entities).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..data.records import Record, preview
from ..errors import DataError

OUTSIDE = "O"
PREFIXES = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}  # BILOU read as IOBES
SCHEMES = ("BIO", "IOBES")


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # exclusive
    label: str

    def as_dict(self, text: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start, "end": self.end, "label": self.label}
        if text is not None:
            out["text"] = text[self.start:self.end]
        return out


# ---------------------------------------------------------------------------- tags ↔ token-index spans

def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER"; ("O", "") for "O"; ValueError for anything else."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, sep, label = tag.partition("-")
    if not sep or prefix.upper() not in PREFIXES or not label:
        raise ValueError(tag)
    return PREFIXES[prefix.upper()], label


def tag_entities(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """(first, last, label) token indices (inclusive) of every entity a tag sequence holds (lenient reading)."""
    out: list[tuple[int, int, str]] = []
    current: list[Any] | None = None  # [first, last, label] of the entity still open
    for i, tag in enumerate(tags):
        prefix, label = split_tag(tag)
        if prefix == OUTSIDE:
            current = None
            continue
        if prefix in ("B", "S") or current is None or current[2] != label:
            current = [i, i, label]
            out.append(current)  # type: ignore[arg-type]
        current[1] = i
        if prefix in ("E", "S"):
            current = None
    return [(a, b, label) for a, b, label in out]


def scheme_of(tags: Sequence[str]) -> str:
    """IOBES when any tag is S-/E- (or BILOU's U-/L-), else BIO."""
    return "IOBES" if any(split_tag(t)[0] in ("E", "S") for t in tags) else "BIO"


def entity_tags(n: int, entities: Sequence[tuple[int, int, str]], scheme: str = "BIO") -> list[str]:
    """The tag sequence of `n` units holding `entities` ((first, last, label), inclusive, not overlapping)."""
    tags = [OUTSIDE] * n
    for first, last, label in entities:
        for i in range(first, last + 1):
            tags[i] = f"I-{label}"
        tags[first] = f"B-{label}"
        if scheme == "IOBES":
            if first == last:
                tags[first] = f"S-{label}"
            else:
                tags[last] = f"E-{label}"
    return tags


# ---------------------------------------------------------------------------- tokens ↔ text

NO_SPACE_BEFORE = frozenset(",.;:!?)]}%@”’»…")  # tokens that attach to the word before them
NO_SPACE_AFTER = frozenset("([{$€£¥#@“‘«")      # tokens that attach to the word after them
CONTRACTIONS = frozenset({"t", "s", "re", "ve", "ll", "d", "m"})  # haven ' t -> haven't


def join_tokens(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The tokens as one text, and each token's (start, end) in it: words apart by one space, except where
    the token is punctuation that attaches to a neighbour ("order BK-1." not "BK-1 .", "ines@example.net",
    "+44 20 7946 0958", "$53.95", "(202)", "haven't"). So the text reads as the original did wherever that
    is plain: the PII scan finds e-mails and phone numbers a tokenizer split apart, and the model trains on
    text that looks like what it will be asked about."""
    ranges, parts, pos = [], [], 0
    for i, tok in enumerate(tokens):
        if i and _space_between(tokens[i - 1], tok, tokens[i + 1] if i + 1 < len(tokens) else ""):
            parts.append(" ")
            pos += 1
        ranges.append((pos, pos + len(tok)))
        parts.append(tok)
        pos += len(tok)
    return "".join(parts), ranges


def _space_between(before: str, token: str, after: str) -> bool:
    if token in NO_SPACE_BEFORE or before in NO_SPACE_AFTER:
        return False
    if before == "+" and token[:1].isdigit():  # a phone number's country code
        return False
    if token == "'" and after.lower() in CONTRACTIONS and before[-1:].isalpha():
        return False
    return not (before == "'" and token.lower() in CONTRACTIONS)


def tokens_record(r: Record, tokens_col: str, tags_col: str | None) -> tuple[str, list[Span] | None,
                                                                              list[tuple[int, int]]]:
    """(text, spans or None without tags, token ranges) of a tokens(+tags) record; DataError naming file:line."""
    tokens = r.fields.get(tokens_col)
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t.strip() for t in tokens):
        raise DataError(r.file, r.line, f"column {preview(tokens_col)} must be a non-empty list of words "
                        f"(got {preview(tokens)})", 'write e.g. "tokens": ["Order", "BK-48213", "arrived"]')
    text, ranges = join_tokens(tokens)
    if tags_col is None:
        return text, None, ranges
    tags = r.fields.get(tags_col)
    if not isinstance(tags, list) or len(tags) != len(tokens) or not all(isinstance(t, str) for t in tags):
        raise DataError(r.file, r.line, f"column {preview(tags_col)} must be a list of one tag per word "
                        f"({len(tokens)} words, tags {preview(tags)})", "give every word a tag: O, B-TYPE, I-TYPE")
    try:
        entities = tag_entities(tags)
    except ValueError as e:
        raise DataError(r.file, r.line, f"tag {preview(str(e))} is not O, B-TYPE, I-TYPE (BIO) or S-/E-TYPE (IOBES)",
                        "use one tagging scheme: BIO or IOBES") from None
    return text, [Span(ranges[a][0], ranges[b][1], label) for a, b, label in entities], ranges


# ---------------------------------------------------------------------------- char spans ↔ units

def parse_spans(r: Record, text: str, column: str) -> list[Span]:
    """The record's character spans, checked: in the text, non-empty, labelled, not overlapping; sorted."""
    value = r.fields.get(column)
    if value is None:
        raise DataError(r.file, r.line, f"missing column {preview(column)} (columns: {', '.join(sorted(r.fields))})",
                        "give the entities as [{\"start\", \"end\", \"label\"}] (data.spans), or tokens + tags")
    if not isinstance(value, list):
        raise DataError(r.file, r.line, f"column {preview(column)} is {type(value).__name__}, expected a list of "
                        "spans", 'write [{"start": 0, "end": 8, "label": "ORDER_ID"}] ([] for none)')
    spans = sorted((_one_span(r, text, item) for item in value), key=lambda s: (s.start, s.end))
    for a, b in zip(spans, spans[1:]):
        if b.start < a.end:
            raise DataError(r.file, r.line, f"spans {a.start}-{a.end} ({a.label}) and {b.start}-{b.end} ({b.label}) "
                            "overlap", "BIO tags cannot hold nested entities: keep one of them")
    return spans


def _one_span(r: Record, text: str, item: Any) -> Span:
    if isinstance(item, dict):
        start, end, label = item.get("start"), item.get("end"), item.get("label")
    elif isinstance(item, list) and len(item) == 3:
        start, end, label = item
    else:
        start = end = label = None
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end))
    if not ints or not isinstance(label, str) or not label.strip():
        raise DataError(r.file, r.line, f"span {preview(item)} is not {{\"start\": int, \"end\": int, "
                        "\"label\": text}",
                        "write each entity as {\"start\": 0, \"end\": 8, \"label\": \"ORDER_ID\"}")
    if not 0 <= start < end <= len(text):
        raise DataError(r.file, r.line, f"span {start}-{end} ({label}) lies outside the text ({len(text)} "
                        "characters) or is empty", "offsets count characters from 0; end is exclusive")
    if label.strip() == OUTSIDE:
        raise DataError(r.file, r.line, f"span {start}-{end} is labelled {OUTSIDE!r}, the tag of words outside "
                        "every entity", "give the entity type, or drop the span")
    return Span(start, end, label.strip())


def align(units: Sequence[tuple[int, int]], spans: Sequence[Span]) -> tuple[list[tuple[int, int, str]], int]:
    """(entities as (first, last, label) unit indices, how many spans did not fall on unit boundaries).

    A unit (a word, or one of the record's tokens) belongs to a span it overlaps; a span whose edges cut
    a unit is learned as the whole units it touches, and counted. A span that touches no unit, or only
    units an earlier span took, is lost and counted too."""
    entities, off, taken = [], 0, -1
    j = 0
    for span in spans:
        while j < len(units) and units[j][1] <= span.start:
            j += 1
        k = j
        while k < len(units) and units[k][0] < span.end:
            k += 1
        inside = [i for i in range(j, k) if i > taken]
        if not inside:
            off += 1
            continue
        first, last = inside[0], inside[-1]
        if units[first][0] != span.start or units[last][1] != span.end or len(inside) != k - j:
            off += 1
        entities.append((first, last, span.label))
        taken = last
    return entities, off


def unit_spans(units: Sequence[tuple[int, int]], entities: Sequence[tuple[int, int, str]]) -> list[Span]:
    """Character spans of entities given as unit indices."""
    return [Span(units[a][0], units[b][1], label) for a, b, label in entities]


# ---------------------------------------------------------------------------- after redaction

def remap_offset(p: int, edits: Sequence[tuple[int, int, int, int]], side: str) -> tuple[int, bool]:
    """Where offset `p` of the text lies after the edits (start, end, new start, new end), in order, and
    whether it fell inside a replaced range (a span edge there moves out to the placeholder's edge)."""
    new = p
    for s, e, ns, ne in edits:
        if e <= p:
            new = p + (ne - e)
        elif s < p:
            return (ns if side == "start" else ne), True
        else:
            break
    return new, False


def remap_spans(spans: Sequence[Span], edits: Sequence[tuple[int, int, int, int]]) -> tuple[list[Span], dict[str, int]]:
    """Spans re-aligned to the redacted text. An entity that a redaction cut into covers its placeholder
    whole, so every span stays valid (start < end, inside the text)."""
    out, counts = [], {"spans_shifted": 0, "entities_redacted": 0}
    for span in spans:
        start, cut_a = remap_offset(span.start, edits, "start")
        end, cut_b = remap_offset(span.end, edits, "end")
        hit = cut_a or cut_b or any(span.start <= s and e <= span.end for s, e, _, _ in edits)
        counts["spans_shifted"] += (start, end) != (span.start, span.end)
        counts["entities_redacted"] += hit
        out.append(Span(start, max(end, start + 1), span.label))
    return out, counts
