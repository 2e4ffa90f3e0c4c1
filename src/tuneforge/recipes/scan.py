"""`tuneforge scan`: the PII and leakage audit on its own, without training.

It reads, never rewrites: PII is reported (as with `privacy.pii: warn`) and leaks are listed (as with
`leakage.policy: warn`). Exit status 0 when clean, 1 when anything was found — usable as a CI gate.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..config import LeakageConfig, load_config
from ..data.records import Record, read_records
from ..data.splits import load_splits
from ..errors import TuneforgeError
from ..runs.rundir import atomic_write_json
from ..tasks import task_class
from ..vetting.audit import audit, summary_lines

SPLIT_WORDS = {"test": "test", "eval": "test", "valid": "validation", "val": "validation", "dev": "validation"}


def scan(paths: list[str], config: str | None = None, columns: list[str] | None = None) -> dict[str, Any]:
    """The audit of data files (first is train) or of a config's data: data_audit.json's content, plus
    `records`, `columns` and `seconds`. Reads only; nothing is redacted or dropped."""
    t0 = time.perf_counter()
    splits, cols, leak_cols, leak, sensitive = _inputs(paths, config, columns)
    _, report = audit(splits, cols, "warn", "warn", leak.threshold, ngram=leak.ngram, group_column=leak_cols[1],
                      shingle=leak.shingle, ngram_share=leak.ngram_share, leak_columns=leak_cols[0],
                      sensitive=sensitive)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report["records"], report["columns"] = sum(len(v) for v in splits.values()), cols
    return report


def scan_command(paths: list[str], config: str | None, out: str | None, columns: list[str] | None) -> int:
    report = scan(paths, config, columns)
    for line in summary_lines(report):
        print(line)
    print(f"scanned {report['records']:,} records in {report['seconds']:.1f}s (columns: {', '.join(report['columns'])})")
    target = Path(out) if out else Path("data_audit.json")
    if target.is_dir():
        target = target / "data_audit.json"
    atomic_write_json(target, report)
    print(f"wrote {target}")
    found = report["pii"]["total"] + report["leakage"]["total"]
    return 1 if found else 0


def _inputs(paths: list[str], config: str | None, columns: list[str] | None
            ) -> tuple[dict[str, list[Record]], list[str], tuple[list[str] | None, str | None], LeakageConfig,
                       str | None]:
    """(splits, PII columns, (leakage columns, group column), leakage settings, why the data is sensitive);
    with a config, the records in its task's layout (as `train` vets them)."""
    if config:
        cfg = load_config(config)
        kind = task_class(cfg.task)
        splits = load_splits(cfg.data.train, cfg.data.validation, cfg.data.test, kind.stratify_column(cfg),
                             cfg.data.group, cfg.train.seed)
        splits = {name: kind.normalize_records(cfg, records) for name, records in splits.items()}
        return splits, columns or kind.pii_columns(cfg), (columns or kind.leakage_columns(cfg), cfg.data.group), \
            cfg.leakage, kind.privacy_notice(cfg)
    if not paths:
        raise TuneforgeError("give data files to scan (first is train), or --config CONFIG")
    splits: dict[str, list[Record]] = {}
    for i, path in enumerate(paths):
        splits[_split_name(path, i, splits)] = read_records(path)
    cols = columns or _text_fields(splits["train"])
    return splits, cols, (cols, None), LeakageConfig(), None


def _split_name(path: str, position: int, taken: dict[str, Any]) -> str:
    if position == 0:
        return "train"
    stem = Path(path).stem.lower()
    name = next((v for k, v in SPLIT_WORDS.items() if k in stem), "test")
    return name if name not in taken else f"{name}_{position}"


def _text_fields(records: list[Record]) -> list[str]:
    """Every column that holds text (or chat messages) in the first records."""
    fields: list[str] = []
    for r in records[:100]:
        for k, v in r.fields.items():
            if k not in fields and (isinstance(v, str) and not _is_label_like(k) or isinstance(v, list)):
                fields.append(k)
    if not fields:
        raise TuneforgeError(f"{records[0].file}: no text columns found; name them with --text COLUMN")
    return fields


def _is_label_like(name: str) -> bool:
    return name.lower() in ("label", "labels", "id", "uuid", "split", "category")
