"""Train/validation/test splits: given files, or fractions split off train; k folds; nested subsets.

Fraction splits are seeded and stratified by label; with `data.group` whole groups move together so
related records (one customer's tickets, one product's reviews) never straddle splits. Cross-validation
folds (`fold_indices`) follow the same rules, and compare's training subsets come from `stratified_order`,
whose every prefix is stratified.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from ..errors import DataError, TuneforgeError
from .records import Record, preview_list, read_records


def load_splits(train: str, validation: str | float | None, test: str | float | None,
                label: str | None, group: str | None, seed: int, limit: int | None = None) -> dict[str, list[Record]]:
    """Read train (its first `limit` records if given) and any split files, then carve fraction splits off
    train. Keys: train[, validation][, test]."""
    records = read_records(train, limit)  # data.limit: the first N records, before any split is carved
    splits: dict[str, list[Record]] = {}
    for name, spec in (("test", test), ("validation", validation)):  # test first: it must not depend on val
        if isinstance(spec, str):
            splits[name] = read_records(spec)
        elif isinstance(spec, float) and spec > 0:
            pool = records
            records, splits[name] = carve(records, spec, label, group, seed + (1 if name == "test" else 2))
            if not splits[name]:
                raise _empty_split(train, name, spec, pool, label, after_test="test" in splits and name != "test")
    if not records:
        groups = f", whole groups of data.group '{group}'" if group else ""
        raise DataError(train, None, f"no training records left: data.validation={validation} and "
                        f"data.test={test} took all of them{groups}",
                        "lower the fractions, add records, or give validation/test as files")
    return {"train": records, **{k: splits[k] for k in ("validation", "test") if k in splits}}


def _empty_split(train: str, name: str, fraction: float, pool: list[Record], label: str | None,
                 after_test: bool) -> DataError:
    """Why a fraction gave no records, in one line: too few records, or only single-example classes."""
    of = f"the {len(pool):,} record(s) left after data.test" if after_test else f"{len(pool):,} record(s)"
    problem, fix = f"data.{name}={fraction} of {of} gives an empty {name} split", f"or set data.{name} to a file or null"
    sizes: dict[Any, int] = defaultdict(int)
    for r in pool:
        sizes[_key(r.fields.get(label)) if label else None] += 1
    single = [k for k, n in sizes.items() if _single_class(k, n)]
    if single and len(pool) > 1:
        return DataError(train, None, f"{problem}: {len(single):,} of {len(sizes):,} classes have a single example "
                         f"(e.g. {preview_list(map(repr, single), 3)}), and a class's only example stays in train",
                         f"give each class at least 2 examples, {fix}")
    return DataError(train, None, problem, f"add records, {fix}")


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
    # A class with a single example keeps it in train (size 0 here: nothing to carve): carved off, it
    # would be a class the model never saw. A multi-label stratum is a label combination, not a class.
    counts = _allocate([0 if _single_class(k, len(strata[k])) else len(strata[k]) for k in keys], fraction)
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


def _single_class(key: Any, size: int) -> bool:
    """A class (a single label, not a multi-label combination) with one example."""
    return size == 1 and key is not None and not isinstance(key, tuple)


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


def fold_indices(records: list[Record], k: int, label: str | None, seed: int,
                 group: str | None = None) -> list[tuple[list[int], list[int]]]:
    """(train indices, held-out indices) per fold: stratified by label, or whole groups when `group` is set."""
    if k < 2:
        raise TuneforgeError(f"--cv {k}: cross-validation needs at least 2 folds")
    if k > len(records):
        raise TuneforgeError(f"--cv {k}: more folds than the {len(records)} training records")
    if not group:
        return kfold(records, k, label, seed)
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if group not in r.fields:
            raise TuneforgeError(f"{r.where}: missing group column '{group}' (add it or unset data.group)")
        value = r.fields[group]
        groups[tuple(value) if isinstance(value, list) else value].append(i)
    if len(groups) < k:
        raise TuneforgeError(f"--cv {k}: only {len(groups)} groups in data.group = {group!r}; use fewer folds")
    keys = sorted(groups, key=str)
    random.Random(seed).shuffle(keys)
    keys.sort(key=lambda g: -len(groups[g]))  # largest first into the smallest fold: balanced sizes
    folds: list[list[int]] = [[] for _ in range(k)]
    for key in keys:
        min(folds, key=len).extend(groups[key])
    everything = set(range(len(records)))
    return [(sorted(everything - set(f)), sorted(f)) for f in folds]


def stratified_order(records: list[Record], label: str | None, seed: int) -> list[int]:
    """An order of record indices whose every prefix is (nearly) stratified by label.

    Each class is shuffled, and its j-th member of n gets the position (j + 0.5) / n; sorting all records
    by position interleaves the classes in proportion, so the first N are a stratified sample and a
    larger subset always contains a smaller one (learning curves compare like with like).
    """
    strata: dict[Any, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        value = r.fields.get(label) if label else None
        strata[tuple(value) if isinstance(value, list) else value].append(i)
    rng = random.Random(seed)
    keyed = []
    for key in sorted(strata, key=str):
        members = strata[key][:]
        rng.shuffle(members)
        keyed += [((j + 0.5) / len(members), rng.random(), i) for j, i in enumerate(members)]
    return [i for _, _, i in sorted(keyed)]
