"""Which kinds of input does the model fail on? Metrics per slice of the test examples, with intervals.

Slices come from three places: the task's own (`Task.auto_slices`, e.g. the true label), two automatic ones
every task has (input length in tokens, in three buckets of about equal size, and the source file a record
came from), and the config's `eval.slices: [column, ...]` (a record column: categories, or numbers bucketed
like lengths). A slicing with a single value says nothing and is left out. Every slice's metrics come from
the same per-example columns as the whole split, so the slices of one slicing sum back to the whole.

A slice is flagged weak when its interval for the primary metric lies entirely on the wrong side of the
split's overall value, and it has at least MIN_SLICE examples: a difference, not noise.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .uncertainty import Columns, Summarize, intervals, point

MIN_SLICE = 10        # smaller slices are shown, never flagged
MAX_VALUES = 12       # category values beyond the most frequent are pooled as "(other)"
BUCKETS = 3           # numeric slicings (lengths, numeric columns): tertiles
MISSING, OTHER = "(missing)", "(other)"


def buckets(values: list[float], unit: str = "") -> list[str]:
    """Each value's bucket among BUCKETS quantile buckets, named by its range ("≤ 12 tokens", "13–25 tokens")."""
    arr = np.asarray(values, dtype=float)
    edges = sorted(set(np.quantile(arr, np.linspace(0, 1, BUCKETS + 1)[1:-1]).round(6).tolist()))
    integral = bool(np.all(arr == np.round(arr)))
    fmt = (lambda x: f"{int(x)}") if integral else (lambda x: f"{x:.3g}")
    names = [f"≤ {fmt(edges[0])}" if edges else "all"]
    for a, b in zip(edges, edges[1:]):
        names.append(f"{fmt(a + 1) if integral else fmt(a)}–{fmt(b)}")
    if edges:
        names.append(f"> {fmt(edges[-1])}")
    suffix = f" {unit}" if unit else ""
    return [names[int(np.searchsorted(edges, v, side="left"))] + suffix for v in arr]


def categories(values: list[Any]) -> list[str]:
    """Values as text; numbers with many distinct values bucketed; rare categories pooled as "(other)"."""
    present = [v for v in values if v is not None]
    numeric = present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if numeric and len(set(present)) > MAX_VALUES:
        names = iter(buckets([float(v) for v in present]))
        return [MISSING if v is None else next(names) for v in values]
    text = [MISSING if v is None else (", ".join(map(str, v)) if isinstance(v, list) else str(v)) for v in values]
    keep = {v for v, _ in Counter(text).most_common(MAX_VALUES)}
    return [v if v in keep else OTHER for v in text]


def slice_keys(rows: list[dict[str, Any]], task_slices: dict[str, list[str]],
               fields: dict[str, dict[str, Any]], columns: list[str]) -> dict[str, list[str]]:
    """slicing name -> one value per row: the task's slices, input length, source file, config columns.
    `fields`: the records' fields by "file:line" (rows carry "where")."""
    keys = dict(task_slices)
    if all("length" in r for r in rows):
        keys["input length"] = buckets([r["length"] for r in rows], "tokens")
    keys["source file"] = [str(r.get("where", "")).rsplit(":", 1)[0] for r in rows]
    for col in columns:
        keys[col] = categories([fields.get(r.get("where", ""), {}).get(col) for r in rows])
    return {k: v for k, v in keys.items() if len(set(v)) > 1}


def slice_table(tally: Columns, summarize: Summarize, keys: dict[str, list[str]], metrics: list[str],
                primary: str, better: str, resamples: int, seed: int,
                metrics_for: Any = None) -> dict[str, Any]:
    """eval.json's "slices" of one split: per slicing and value, n, the metrics and their intervals, and
    which slices are weak (interval for `primary` wholly worse than the overall value). `metrics_for`
    (slicing, metrics) -> the metrics that mean something within that slicing's slices (Task.slice_metrics)."""
    overall = point(tally, summarize).get(primary)
    out: list[dict[str, Any]] = []
    for name, values in keys.items():
        arr = np.asarray(values, dtype=object)
        order = sorted(set(values), key=lambda v: (-values.count(v), v))
        if name == "input length" or all(v[:1] in "≤>0123456789" for v in order):  # ranges: in range order
            order = sorted(order, key=_range_key)
        shown = metrics_for(name, metrics) if metrics_for else metrics
        for value in order:
            mask = arr == value
            sub = {k: c[mask] for k, c in tally.items()}
            got = point(sub, summarize)
            entry: dict[str, Any] = {"slice": name, "value": value, "n": int(mask.sum()),
                                     "metrics": {k: round(got[k], 4) for k in shown if k in got},
                                     "ci": intervals(sub, summarize, shown, resamples, seed)}
            lo_hi = entry["ci"].get(primary)
            if overall is not None and lo_hi and entry["n"] >= MIN_SLICE:
                entry["weak"] = lo_hi[1] < overall if better == "max" else lo_hi[0] > overall
            out.append(entry)
    weak = sorted((e for e in out if e.get("weak")), key=lambda e: e["metrics"].get(primary, 0) *
                  (1 if better == "max" else -1))
    return {"primary": primary, "overall": round(overall, 4) if overall is not None else None, "slices": out,
            "weak": [f"{e['slice']} = {e['value']}" for e in weak]}


def _range_key(value: str) -> tuple[int, float]:
    """Bucket names in range order: "≤ a" first, then "a–b" by a, then "> b"."""
    head = value.lstrip("≤> ").split("–")[0].split(" ")[0]
    try:
        x = float(head)
    except ValueError:
        return (3, 0.0)
    return (0 if value.startswith("≤") else 2 if value.startswith(">") else 1, x)


def missing_columns(columns: list[str], records: list[Any]) -> str:
    """'' when every `eval.slices` column is in some record of the judged split, else what is missing."""
    if not columns or not records:
        return ""
    have = {k for r in records for k in r.fields}
    missing = [c for c in columns if c not in have]
    if not missing:
        return ""
    shown = ", ".join(sorted(have)[:8]) + (", …" if len(have) > 8 else "")
    return (f"column {missing[0]!r} is in no record of the split the run is judged on (columns: {shown}); "
            "name a column of the test data, or remove it from eval.slices")
