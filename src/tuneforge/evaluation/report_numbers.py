"""The report's sections about numbers: the verdict, the metrics of every model with intervals and paired
tests, per-class (or any per-type) tables, confusion matrices, slices and calibration (report_html.py)."""
from __future__ import annotations

from typing import Any

from .html import esc, image, key_values, num, section, table, verdict_class, with_ci
from .verdict import paragraph

STAGE_NAMES = {"pretrained": "pretrained (before the earlier run)", "base": "base (before fine-tuning)",
               "final": "fine-tuned"}


def verdict_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    v = paragraph(ctx["results"], ctx["task"])
    return section("verdict", "Verdict", f"<div class='verdict {v['tone']}'>{esc(v['text'])}</div>")


def _cells(metrics: dict[str, Any], names: list[str]) -> list[str]:
    ci = metrics.get("ci", {})
    return [with_ci(metrics.get(k), ci.get(k)) for k in names]


def _vs(comparison: dict[str, Any] | None, primary: str) -> str:
    """The paired test of the fine-tuned model against this row's model."""
    if not comparison:
        return ""
    m = comparison.get("mcnemar")
    if m:
        return (f"<span class='{verdict_class(m['verdict'])}'>{esc(m['verdict'])}</span>"
                f"<span class='ci'>McNemar: {m['only_b']} fixed, {m['only_a']} broken</span>")
    p = comparison.get("metrics", {}).get(primary)
    if not p:
        return ""
    delta = f"Δ {p['delta']:+.3f}" + (f" [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]" if p.get("ci") else "")
    return (f"<span class='{verdict_class(p['verdict'])}'>{esc(p['verdict'])}</span>"
            f"<span class='ci'>{primary} {delta}, paired bootstrap</span>")


def metrics_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    r, task, split = ctx["results"], ctx["task"], ctx["split"]
    if split is None:
        return section("metrics", "Metrics", "")
    names = list(dict.fromkeys(task.headline + ("loss",)))
    comps = {c["a"]: c for c in r.get("comparisons", {}).get(split, [])}
    rows, models = [], []
    for stage in ("pretrained", "base"):  # pretrained: a continued run's start, before the run it continues
        if split in r.get(stage, {}):
            models.append((stage, STAGE_NAMES[stage], r[stage][split]))
    models += [(name, f"{name} (baseline)", by[split]) for name, by in (r.get("baselines") or {}).items()
               if split in by]
    models.append(("final", f"{STAGE_NAMES['final']} ({r.get('method')})", r["final"][split]))
    for key, label, m in models:
        rows.append([esc(label), num(m.get("n"))] + _cells(m, names) + [_vs(comps.get(key), task.primary_metric)])
    heads = ["model", "n"] + [esc(k) for k in names] + ["fine-tuned vs this model"]
    said = [f"{esc(split)} split"]
    if any(m.get("ci") for _, _, m in models):
        said.append("under each number its 95% bootstrap interval")
    said.append("the last column tests the fine-tuned model against each row on the same examples" if comps else
                "no paired tests: this run keeps no per-example scores")
    body = (f"<p class='muted small'>{'; '.join(said)}.</p>"
            + table(heads, rows, text_cols=(0, len(heads) - 1), highlight=(len(rows) - 1,)))
    others = [[esc(STAGE_NAMES.get(stage, stage)), esc(s), num(m.get("n"))] + _cells(m, names)
              for stage in ("pretrained", "base", "final") for s, m in r.get(stage, {}).items() if s != split]
    if others:
        body += "<h3>Other splits</h3>" + table(["model", "split", "n"] + [esc(k) for k in names], others,
                                                text_cols=(0, 1))
    scalars = [[esc(k), num(v, 4)] for k, v in r["final"][split].items() if isinstance(v, (int, float))
               and not isinstance(v, bool) and k not in names]
    if scalars:
        body += f"<details><summary>every metric of the fine-tuned model on {esc(split)}</summary>" \
                + table(["metric", "value"], scalars) + "</details>"
    return section("metrics", f"Metrics ({split})", body)


def _mappings(metrics: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every entry of `metrics` that maps names to dicts of numbers (per_class, per_type, ...)."""
    return {k: v for k, v in metrics.items() if isinstance(v, dict) and k != "ci" and v
            and all(isinstance(x, dict) and all(isinstance(y, (int, float)) for y in x.values()) for x in v.values())}


def per_class_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    r, split = ctx["results"], ctx["split"]
    if split is None:
        return section("per-class", "Per class", "")
    body = ""
    base = r.get("base", {}).get(split, {})
    for key, mapping in _mappings(r["final"][split]).items():
        cols = list(dict.fromkeys(c for x in mapping.values() for c in x))
        base_map = _mappings(base).get(key, {})
        extra = [c for c in cols if c in ("f1", "recall") and base_map]
        rows = [[esc(name)] + [num(x.get(c)) for c in cols] + [num(base_map.get(name, {}).get(c)) for c in extra]
                for name, x in mapping.items()]
        heads = [esc(key.replace("_", " ").removeprefix("per "))] + [esc(c) for c in cols] + \
            [f"base {esc(c)}" for c in extra]
        body += (f"<h3>{esc(key.replace('_', ' '))}</h3>" if len(_mappings(r['final'][split])) > 1 else "") \
            + table(heads, rows)
    kinds = [k.removeprefix("per_").replace("_", " ") for k in _mappings(r["final"][split])] or ["class"]
    return section("per-class", f"Per {', '.join(kinds)} ({split})", body)


def confusion_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    split = ctx["split"]
    img = image(ctx["images"].get(f"confusion_{split}"), "confusion matrix")
    others = "".join(image(p, stem.replace("_", " ")) for stem, p in ctx["images"].items()
                     if stem != f"confusion_{split}" and stem.endswith(f"confusion_{split}"))  # e.g. entity types
    return section("confusion", f"Confusion matrix ({split})",
                   (img or others) and "<p class='muted small'>Left: counts. Right: each true row normalized to 1 "
                   "(the diagonal is that class's recall).</p>" + img + others)


def slices_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    r, task, split = ctx["results"], ctx["task"], ctx["split"]
    sl = (r.get("slices") or {}).get(split or "")
    if not sl:
        return section("slices", "Slices", "")
    primary = sl["primary"]
    names = [primary] + [k for k in task.headline if k != primary]
    rows = [[esc(e["slice"]), esc(e["value"]), num(e["n"])] + [with_ci(e["metrics"].get(k), e["ci"].get(k))
                                                               for k in names]
            + ["<span class='flag'>weak</span>" if e.get("weak") else ""] for e in sl["slices"]]
    intro = (f"<p class='muted small'>{esc(split)} examples broken down by each slicing; overall {esc(primary)} "
             f"{num(sl['overall'])}. <b>weak</b>: the slice's interval lies wholly below the overall value (at least "
             "10 examples). Add slicings with <code>eval.slices: [column, ...]</code>.</p>")
    return section("slices", f"Slices ({split})", intro + table(["slicing", "value", "n"] + [esc(k) for k in names]
                                                                + ["flag"], rows, text_cols=(0, 1)))


def calibration_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    r, split = ctx["results"], ctx["split"]
    c = (r.get("calibration") or {}).get(split or "")
    if not c:
        return section("calibration", "Calibration", "")
    after = c.get("calibrated") or {}
    pairs = [("expected calibration error", num(c["ece"])), ("negative log-likelihood", num(c["nll"])),
             ("after temperature scaling", f"ECE {num(after['ece'])}, NLL {num(after['nll'])}, "
              f"T = {after['temperature']:g}" if after else ""),
             ("measured over", f"{c['n']:,} {esc(c['unit'])}"), ("note", esc(c.get("note", "")))]
    return section("calibration", f"Calibration ({split})", key_values(pairs)
                   + image(ctx["images"].get(f"reliability_{split}"), "reliability diagram"))
