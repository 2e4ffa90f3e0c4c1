"""The data audit: PII on every split (redacted first), then duplicates and leakage on what is left.

Leakage runs on the redacted text on purpose: what is trained on and evaluated on is the redacted
text, and two records that differ only in an email address are duplicates for the model.
The audit dict is what `data_audit.json` holds: counts, places and similarities, never raw values.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from ..data.records import Record
from ..errors import TuneforgeError
from . import leakage, privacy

MAX_PAIRS = 1000  # pairs kept in the audit dict; counts stay exact


class AuditError(TuneforgeError):
    """A blocking finding (privacy.pii: block, leakage.policy: fail); `audit` holds the report so far."""

    def __init__(self, message: str, audit: dict[str, Any]):
        super().__init__(message)
        self.audit = audit


def audit(splits: Mapping[str, Sequence[Record]], columns: Sequence[str], pii_mode: str = "redact",
          leakage_policy: str = "fail", threshold: float = 0.8, *, ngram: int = 13,
          group_column: str | None = None, shingle: int = 1, ngram_share: float = 0.0,
          leak_columns: Sequence[str] | None = None, remap: privacy.Remap | None = None,
          sensitive: str | None = None) -> tuple[dict[str, list[Record]], dict[str, Any]]:
    """Scan every split for PII under `pii_mode`, then find duplicates and leaks and apply
    `leakage_policy`. Returns the (possibly redacted, deduplicated) splits and the audit dict
    {"pii", "leakage", "splits"[, "groups"]}. Raises AuditError (a TuneforgeError) for block/fail.
    `remap` keeps what points into a redacted text consistent (privacy.scan); `sensitive` says why this kind
    of data is sensitive (pii["sensitive"], the first line of the summary)."""
    if leakage_policy not in leakage.POLICIES:  # fail before the scan, not after it
        raise TuneforgeError(f"leakage.policy is '{leakage_policy}', expected one of {', '.join(leakage.POLICIES)}")
    redacted, pii = scan_splits(splits, columns, pii_mode, remap)
    if sensitive:
        pii["sensitive"] = sensitive
    result: dict[str, Any] = {"pii": pii}
    if group_column:
        result["groups"] = leakage.check_groups(redacted, group_column)
    report = leakage.find_leakage(redacted, leak_columns or columns, threshold, ngram, shingle=shingle,
                                   ngram_share=ngram_share)
    result["leakage"] = _leakage_summary(report, leakage_policy)
    result["splits"] = {name: len(recs) for name, recs in redacted.items()}
    if pii_mode == "block" and pii["total"]:
        raise AuditError(privacy.block_message(pii), result)
    try:
        out = leakage.apply_policy(redacted, report, leakage_policy)
    except TuneforgeError as e:
        raise AuditError(str(e), result) from None
    result["leakage"]["dropped"] = {n: len(redacted[n]) - len(out[n]) for n in out if len(out[n]) != len(redacted[n])}
    result["splits"] = {name: len(recs) for name, recs in out.items()}
    return out, result


def vet(splits: Mapping[str, Sequence[Record]], cfg: Any, task: Any) -> tuple[dict[str, list[Record]], dict[str, Any]]:
    """The audit under the config's policies, on the records in the task's layout and the columns it names
    (PII: everything it reads or writes out; leakage: its inputs); redaction keeps the task's own pointers
    into the text (spans) consistent, and the task says when its kind of data is sensitive."""
    lk = cfg.leakage
    splits = {name: task.normalize_records(cfg, list(records)) for name, records in splits.items()}
    return audit(splits, task.pii_columns(cfg), cfg.privacy.pii, lk.policy, lk.threshold, ngram=lk.ngram,
                 group_column=cfg.data.group, shingle=lk.shingle, ngram_share=lk.ngram_share,
                 leak_columns=task.leakage_columns(cfg),
                 remap=lambda fields, edits: task.after_redaction(cfg, fields, edits),
                 sensitive=task.privacy_notice(cfg))


def scan_splits(splits: Mapping[str, Sequence[Record]], columns: Sequence[str], mode: str,
                remap: privacy.Remap | None = None) -> tuple[dict[str, list[Record]], dict[str, Any]]:
    """PII scan of every split; one combined report with the split named at each location."""
    if mode == "off":
        _, rep = privacy.scan_records([], columns, "off")
        return {n: list(r) for n, r in splits.items()}, rep | {"by_split": {}}
    privacy.scan_records([], columns, mode)  # validates the mode before any work
    out, reports, remapped = {}, {}, Counter()
    for name, records in splits.items():
        out[name], hits, n_with = privacy.scan(records, columns, (mode == "redact"), remap, remapped)
        reports[name] = privacy.report(hits, mode, len(records), n_with, split=name)
    merged = _merge(reports, mode)
    if remapped:
        merged["remapped"] = dict(remapped)
    return out, merged


def _merge(reports: dict[str, dict[str, Any]], mode: str) -> dict[str, Any]:
    by_type: Counter[str] = Counter()
    locations: list[dict[str, Any]] = []
    for rep in reports.values():
        by_type.update(rep["by_type"])
        locations += rep["locations"]
    total = sum(r["total"] for r in reports.values())
    return {"mode": mode, "total": total, "records_scanned": sum(r["records_scanned"] for r in reports.values()),
            "records_with_pii": sum(r["records_with_pii"] for r in reports.values()),
            "by_type": dict(by_type.most_common()), "by_split": {n: r["total"] for n, r in reports.items()},
            "locations": locations[:privacy.MAX_LOCATIONS],
            "locations_truncated": max(0, total - min(len(locations), privacy.MAX_LOCATIONS)),
            "notices": privacy.notices()}


def _leakage_summary(report: dict[str, Any], policy: str) -> dict[str, Any]:
    pairs = report["pairs"]
    cross = [p for p in pairs if p["a"]["split"] != p["b"]["split"]]
    within = [p for p in pairs if p["a"]["split"] == p["b"]["split"]]
    kept = (cross + within)[:MAX_PAIRS]  # cross-split leaks first: they matter most
    return {k: v for k, v in report.items() if k != "pairs"} | {
        "policy": policy, "pairs": kept, "pairs_truncated": len(pairs) - len(kept), "dropped": {}}


def summary_lines(audit_dict: dict[str, Any], max_places: int = 3) -> list[str]:
    """A short readable summary of an audit dict: counts per type, leaks, the first few places."""
    lines = _pii_lines(audit_dict["pii"], max_places)
    lines += _leak_lines(audit_dict["leakage"], max_places)
    groups = audit_dict.get("groups")
    if groups and groups["total"]:
        g = groups["groups"][0]
        lines.append(f"groups: {groups['total']} value(s) of '{groups['column']}' appear in several splits, e.g. "
                     + ", ".join(f"{s} {w}" for s, w in g["splits"].items()))
    lines.append("splits: " + ", ".join(f"{n} {c:,}" for n, c in audit_dict["splits"].items()))
    return lines


def _pii_lines(pii: dict[str, Any], max_places: int) -> list[str]:
    sensitive = [f"privacy: {pii['sensitive']}"] if pii.get("sensitive") else []
    if pii["mode"] == "off":
        return sensitive + ["privacy: off (no scan)"]
    if not pii["total"]:
        lines = [f"privacy ({pii['mode']}): no PII found in {pii['records_scanned']:,} records"]
    else:
        types = ", ".join(f"{t} {n:,}" for t, n in pii["by_type"].items())
        action = {"redact": "redacted", "warn": "kept (warn)", "block": "blocked"}[pii["mode"]]
        lines = [f"privacy ({pii['mode']}): {pii['total']:,} value(s) in {pii['records_with_pii']:,} of "
                 f"{pii['records_scanned']:,} records, {action} — {types}"]
        places = [f"{x['file']}:{x['line']} {x['type']} ({x['field']})" for x in pii["locations"][:max_places]]
        lines.append("  " + "; ".join(places) + (" ..." if pii["total"] > max_places else ""))
    remapped = pii.get("remapped")
    if remapped:
        lines.append("  redaction re-aligned what points into the text: "
                     + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in remapped.items()))
    return sensitive + lines + [f"  note: {n}" for n in pii.get("notices", [])]


def _leak_lines(leak: dict[str, Any], max_places: int) -> list[str]:
    templates = [f"  column {t['column']}: a {t['words']}-word template shared by {100 * t['share']:.0f}% of "
                 "records set aside (near-duplicate and n-gram checks compare the rest)"
                 for t in leak.get("templates", [])]
    if not leak["total"]:
        return [f"leakage ({leak['policy']}): no duplicates or leaks"] + templates
    kinds = ", ".join(f"{k} {n:,}" for k, n in leak["by_kind"].items() if n)
    dropped = leak.get("dropped") or {}
    action = ("; dropped " + ", ".join(f"{n:,} from {s}" for s, n in dropped.items())) if dropped else ""
    lines = [f"leakage ({leak['policy']}): {leak['cross_split']:,} pair(s) across splits "
             f"({leak['leaking_records']:,} records), {leak['within_split']:,} duplicate(s) within — {kinds}{action}"]
    for p in leak["pairs"][:max_places]:
        a, b = p["a"], p["b"]
        lines.append(f"  {b['file']}:{b['line']} ({b['split']}) ~ {a['file']}:{a['line']} ({a['split']}) "
                     f"{p['kind']} {p['similarity']:.2f}")
    return lines + templates
