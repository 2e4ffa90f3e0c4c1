"""`tuneforge train CONFIG --cv K`: k-fold cross-validation, mean ± std of every metric.

The pool is the training data (data.train, after data.limit). Folds are stratified by label for
classification (splits.kfold) and group-aware when data.group is set; every record is held out exactly
once, and no record is ever both trained on and held out in the same fold. Each fold is a normal run
(runs/NAME/cv/fold-i, through the train recipe, so vetting, leakage checks and early stopping all apply):
its validation split is carved from the fold's training part as data.validation says, and its "test"
split is the held-out fold. A data.test file is not used — the held-out folds are the estimate.
runs/NAME/cv.json holds per-fold metrics, the held-out record locations (file:line) and the summary.
"""
from __future__ import annotations

import copy
import math
from collections import defaultdict
from typing import Any

from ..config import Config
from ..data.records import Record, read_records
from ..data.splits import carve, fold_indices
from ..errors import TuneforgeError
from ..runs.rundir import atomic_write_json
from ..tasks import task_class
from ..training import distributed
from .train import train

SKIP = {"n"}  # counts, not metrics


def fold_splits(records: list[Record], train_idx: list[int], held_idx: list[int], cfg: Config,
                fold: int) -> dict[str, list[Record]]:
    """The splits one fold trains on: train (minus a validation carve), validation, and the held-out fold."""
    train = [records[i] for i in train_idx]
    splits: dict[str, list[Record]] = {"test": [records[i] for i in held_idx]}
    label = task_class(cfg.task).stratify_column(cfg)
    spec = cfg.data.validation
    if isinstance(spec, str):
        splits["validation"] = read_records(spec)
    elif isinstance(spec, float) and spec > 0:
        train, splits["validation"] = carve(train, spec, label, cfg.data.group, cfg.train.seed + 2 + fold)
    return {"train": train, **{k: splits[k] for k in ("validation", "test") if k in splits}}


def cross_validate(cfg: Config, k: int, overwrite: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train one run per fold and summarise; returns the cv.json content (its "summary" is what the CLI prints)."""
    records = read_records(cfg.data.train, cfg.data.limit)  # the pool: the first data.limit records, as train does
    label = task_class(cfg.task).stratify_column(cfg)
    folds = fold_indices(records, k, label, cfg.train.seed, cfg.data.group)
    cv_root = cfg.run_dir
    if (cv_root / "cv.json").exists() and not overwrite:
        raise TuneforgeError(f"{cv_root / 'cv.json'} already exists; pass --overwrite to redo the cross-validation")
    results = []
    for i, (train_idx, held_idx) in enumerate(folds, 1):
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.name, fold_cfg.output_dir = f"fold-{i}", str(cv_root / "cv")
        fold_cfg.data.test = None
        outcome = train(fold_cfg, overwrite=overwrite, quiet=quiet,
                        splits=fold_splits(records, train_idx, held_idx, cfg, i))
        final = outcome.eval["final"]
        results.append({"fold": i, "run": str(outcome.run_dir), "train_size": len(train_idx),
                        "held_out_size": len(held_idx),
                        "held_out": [records[j].where for j in held_idx],
                        "held_out_labels": _label_counts([records[j] for j in held_idx], label),
                        "metrics": {"held_out": _numbers(final.get("test", {})),
                                    "validation": _numbers(final.get("validation", {}))},
                        "diagnosis": outcome.eval.get("diagnosis", {}).get("label")})
    report = {"k": k, "pool": cfg.data.train, "pool_size": len(records), "stratified_by": label,
              "grouped_by": cfg.data.group, "folds": results, "summary": summarize(results, k)}
    if distributed.world_from_env().main:  # under torchrun: rank 0 writes
        atomic_write_json(cv_root / "cv.json", report)
    return report


def summarize(results: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1) across folds of every metric, per split."""
    out: dict[str, Any] = {"k": k}
    for split in ("held_out", "validation"):
        keys = sorted({m for r in results for m in r["metrics"].get(split, {})})
        table = {}
        for key in keys:
            values = [r["metrics"][split][key] for r in results if key in r["metrics"].get(split, {})]
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            table[key] = {"mean": mean, "std": std, "text": f"{mean:.4f} ± {std:.4f}"}
        if table:
            out[split] = table
    labels = [r["diagnosis"] for r in results if r.get("diagnosis")]
    if labels:
        out["diagnosis"] = {label: labels.count(label) for label in sorted(set(labels))}
    return out


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in SKIP}


def _label_counts(records: list[Record], label: str | None) -> dict[str, int]:
    if not label:
        return {}
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        value = r.fields.get(label)
        for v in value if isinstance(value, list) else [value]:
            counts[str(v)] += 1
    return dict(sorted(counts.items()))
