"""Train/validation/test splits: given files, or fractions split off train.

Fraction splits are seeded and stratified by label; with `data.group` whole groups move together so
related records (one customer's tickets, one product's reviews) never straddle splits.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from .data import Record, read_records
from .errors import DataError


def load_splits(train: str, validation: str | float | None, test: str | float | None,
                label: str | None, group: str | None, seed: int, limit: int | None = None) -> dict[str, list[Record]]:
    """Read train (and any split files), then carve fraction splits off train. Keys: train[, validation][, test]."""
    records = read_records(train)
    splits: dict[str, list[Record]] = {}
    for name, spec in (("test", test), ("validation", validation)):  # test first: it must not depend on val
        if isinstance(spec, str):
            splits[name] = read_records(spec)
        elif isinstance(spec, float) and spec > 0:
            records, splits[name] = carve(records, spec, label, group, seed + (1 if name == "test" else 2))
    if limit:
        records = records[:limit]
    if not records:
        raise DataError(train, None, "no training records left after splitting", "lower the split fractions")
    return {"train": records, **{k: splits[k] for k in ("validation", "test") if k in splits}}


def carve(records: list[Record], fraction: float, label: str | None, group: str | None,
          seed: int) -> tuple[list[Record], list[Record]]:
    """Split `fraction` of records off; stratified by `label`, whole groups kept together."""
    if group:
        return _carve_groups(records, fraction, group, seed)
    strata: dict[Any, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        strata[_key(r.fields.get(label)) if label else None].append(i)
    rng = random.Random(seed)
    keys = sorted(strata, key=str)
    counts = _allocate([len(strata[k]) for k in keys], fraction)
    taken: set[int] = set()
    for key, n in zip(keys, counts):
        members = strata[key][:]
        rng.shuffle(members)
        taken.update(members[:n])
    kept = [r for i, r in enumerate(records) if i not in taken]
    return kept, [r for i, r in enumerate(records) if i in taken]


def _allocate(sizes: list[int], fraction: float) -> list[int]:
    """Per-class counts summing to round(total * fraction) (largest remainder), each class with ≥2
    records keeping at least one record on each side."""
    exact = [n * fraction for n in sizes]
    counts = [int(x) for x in exact]
    spare = round(sum(sizes) * fraction) - sum(counts)
    for i in sorted(range(len(sizes)), key=lambda i: exact[i] - counts[i], reverse=True)[:max(spare, 0)]:
        counts[i] += 1
    return [min(max(c, 1), n - 1) if n >= 2 else c for c, n in zip(counts, sizes)]


def _carve_groups(records: list[Record], fraction: float, group: str, seed: int) -> tuple[list[Record], list[Record]]:
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if group not in r.fields:
            raise DataError(r.file, r.line, f"missing group column '{group}'", "add it or unset data.group")
        groups[_key(r.fields[group])].append(i)
    keys = sorted(groups, key=str)
    random.Random(seed).shuffle(keys)
    target, taken = fraction * len(records), set()
    for key in keys:
        if len(taken) >= target:
            break
        taken.update(groups[key])
    kept = [r for i, r in enumerate(records) if i not in taken]
    return kept, [r for i, r in enumerate(records) if i in taken]


def _key(value: Any) -> Any:
    """A hashable stand-in for a label or group value (lists and dicts are valid JSON values too)."""
    if isinstance(value, list):
        value = tuple(value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def kfold(records: list[Record], k: int, label: str | None, seed: int) -> list[tuple[list[int], list[int]]]:
    """Stratified k folds as (train indices, held-out indices); every record is held out exactly once."""
    strata: dict[Any, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        strata[_key(r.fields.get(label)) if label else None].append(i)
    folds: list[list[int]] = [[] for _ in range(k)]
    rng, offset = random.Random(seed), 0
    for key in sorted(strata, key=str):
        members = strata[key][:]
        rng.shuffle(members)
        for j, i in enumerate(members):
            folds[(j + offset) % k].append(i)
        offset += len(members)  # rotate so small classes don't all land in fold 0
    everything = set(range(len(records)))
    return [(sorted(everything - set(f)), sorted(f)) for f in folds]
