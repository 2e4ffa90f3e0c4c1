"""Schema-checked JSON answers (instruction runs with `data.schema`): parse, validate, compare field by field.

Each generated answer is parsed as JSON (the whole answer, after surrounding whitespace and one enclosing
```json fence: a model that wraps its JSON in prose has not produced JSON), validated against the schema
with the `jsonschema` package (the draft its `$schema` names, 2020-12 by default), and compared with the
reference answer, itself JSON:

- json_validity / schema_validity: the share of answers that parse, and that parse and satisfy the schema;
- field_exact_match: the share of the reference's top-level fields whose predicted value is exactly the same
  JSON value (a missing field, or an answer that is not an object, gets every field wrong);
- field_precision / field_recall / field_f1: over (field, value) items, micro-averaged: a list contributes
  one item per element, null none, a nested object its leaves under dotted paths (order.id). An item is
  right when the answer holds the same path with the same value; an answer that does not parse holds none.
  Per top-level field too, under per_field.

Answers that are not JSON or fail the schema are listed (first INVALID_SHOWN) with the reason.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from ..errors import TuneforgeError

INVALID_SHOWN = 20  # invalid answers listed in eval.json (counts stay exact)
MAX_SCHEMA_BYTES = 1 << 20


def load_schema(path: str | Path, key: str = "data.schema") -> dict[str, Any]:
    """The JSON Schema in `path`, checked against its own draft's meta-schema (one error line naming it)."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    path = Path(path)
    if not path.is_file():
        raise TuneforgeError(f"`{key}`: schema file {path} not found (give the path of a JSON Schema file)")
    raw = path.read_bytes()[:MAX_SCHEMA_BYTES + 1]
    if len(raw) > MAX_SCHEMA_BYTES:
        raise TuneforgeError(f"`{key}`: {path} is larger than 1 MiB; a JSON Schema is a few KB")
    try:
        schema = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise TuneforgeError(f"`{key}`: {path} is not JSON ({e}); write the schema as a JSON object") from None
    if not isinstance(schema, (dict, bool)):
        raise TuneforgeError(f"`{key}`: {path} holds a JSON {type(schema).__name__}, not a schema object")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as e:
        where = "/".join(str(p) for p in e.path) or "the top level"
        raise TuneforgeError(f"`{key}`: {path} is not a valid JSON Schema at {where}: {e.message}") from None
    return schema


def parse_answer(text: str) -> tuple[Any, str | None]:
    """(value, None) when the answer is JSON, else (None, why not)."""
    body = text.strip()
    if body.startswith("```") and body.endswith("```") and len(body) > 6:
        body = body[3:-3]
        body = body[4:] if body.lower().startswith("json") else body
        body = body.strip()
    if not body:
        return None, "empty answer"
    try:
        return json.loads(body), None
    except ValueError as e:
        return None, f"not JSON: {e}"


def schema_error(value: Any, validator: Any) -> str | None:
    """The first way `value` breaks the schema (deepest path first), or None."""
    errors = sorted(validator.iter_errors(value), key=lambda e: (-len(e.path), list(map(str, e.path))))
    if not errors:
        return None
    e = errors[0]
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.path)
    message = e.message if len(e.message) <= 200 else e.message[:199] + "…"
    return f"schema: {message} (at {where})"


def field_items(value: Any, path: str = "") -> Counter[tuple[str, str]]:
    """(path, canonical JSON value) items of a value: list elements one each, null none, objects by leaf."""
    items: Counter[tuple[str, str]] = Counter()
    if isinstance(value, dict):
        for key, v in value.items():
            items += field_items(v, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for v in value:
            items += field_items(v, path)
    elif value is not None:
        items[(path or "$", json.dumps(value, sort_keys=True, ensure_ascii=False))] += 1
    return items


def _prf(tp: int, n_pred: int, n_ref: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else float(n_ref == 0)
    r = tp / n_ref if n_ref else float(n_pred == 0)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def structured_metrics(answers: Sequence[str], references: Sequence[str], schema: Any,
                       wheres: Sequence[str] | None = None) -> dict[str, Any]:
    """The metrics of the module docstring for answers against reference answers (both JSON text)."""
    from jsonschema.validators import validator_for

    validator = validator_for(schema)(schema)
    wheres = wheres or [""] * len(answers)
    n = len(answers)
    valid = schema_ok = fields = fields_right = 0
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_ref: Counter[str] = Counter()
    exact: dict[str, list[int]] = {}
    invalid, bad_refs = [], 0
    for answer, reference, where in zip(answers, references, wheres):
        ref, ref_error = parse_answer(reference)
        value, error = parse_answer(answer)
        valid += error is None
        if error is None:
            error = schema_error(value, validator)
            schema_ok += error is None
        if error is not None:
            invalid.append({"where": where, "generated": answer, "reference": reference, "error": error})
        if ref_error is not None:
            bad_refs += 1
            continue
        if isinstance(ref, dict):
            for key, want in ref.items():
                right = isinstance(value, dict) and key in value and value[key] == want
                exact.setdefault(key, [0, 0])[0] += right
                exact[key][1] += 1
                fields, fields_right = fields + 1, fields_right + right
        got, want_items = field_items(value), field_items(ref)
        for (path, v), c in (got & want_items).items():
            tp[path.split(".")[0]] += c
        for (path, _), c in got.items():
            n_pred[path.split(".")[0]] += c
        for (path, _), c in want_items.items():
            n_ref[path.split(".")[0]] += c
    micro = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_ref.values()))
    out: dict[str, Any] = {
        "json_validity": valid / n if n else 0.0, "schema_validity": schema_ok / n if n else 0.0,
        "field_exact_match": fields_right / fields if fields else 0.0,
        **{f"field_{k}": v for k, v in micro.items()},
        "per_field": {key: {"exact_match": r / t, **_prf(tp[key], n_pred[key], n_ref[key]), "support": n_ref[key]}
                      for key, (r, t) in exact.items()},
        "invalid_json": n - valid, "schema_invalid": n - schema_ok,
        "invalid_outputs": invalid[:INVALID_SHOWN],
    }
    if bad_refs:
        out["references_not_json"] = bad_refs  # the data's own answers: fix those first
    return out
