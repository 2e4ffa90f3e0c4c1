"""The report's sections about how the run went: examples (beside the base model's outputs), curves and the
diagnosis, training, forgetting, the data audit, and the places other stages fill (differential privacy,
the model card), then the run log (report_html.py)."""
from __future__ import annotations

from typing import Any

from ..runs import reading
from .html import esc, image, items, key_values, num, section, table, text_cell

TRAINING_LABELS = {"steps": "optimizer steps", "epochs": "epochs", "tokens": "tokens seen",
                   "train_seconds": "training time", "tokens_per_s": "tokens/s", "stop_reason": "stopped because",
                   "best_step": "best step", "best_metric": "best validation metric",
                   "restored_best": "best weights restored", "trainable_params": "trainable parameters",
                   "total_params": "total parameters", "weights_mb": "weights (MB)"}
HIDDEN_FIELDS = ("where",)  # shown as the row's first column instead


def base_outputs(ctx: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The base model's prediction rows of the judged split, by "file:line"."""
    rows = reading.read_predictions(ctx["run_dir"], ctx["split"], "base") if ctx["split"] else None
    return {x["where"]: x for x in rows or [] if isinstance(x, dict) and "where" in x}


def _example_table(examples: list[dict[str, Any]], outputs: tuple[str, ...], base: dict[str, dict[str, Any]]) -> str:
    cols = [c for c in dict.fromkeys(k for e in examples for k in e) if c not in HIDDEN_FIELDS]
    for field in outputs:  # the base model's output right after the fine-tuned one
        if field in cols and any(e.get("where") in base and field in base[e["where"]] for e in examples):
            cols.insert(cols.index(field) + 1, f"base {field}")
    rows = []
    for e in examples:
        b = base.get(e.get("where", ""), {})
        rows.append([esc(e.get("where", ""))] + [
            text_cell(b.get(c[5:])) if c.startswith("base ") and c[5:] in outputs
            else num(e[c]) if isinstance(e.get(c), float) else text_cell(e.get(c)) for c in cols])
    long = tuple(j + 1 for j, c in enumerate(cols)  # wrapping columns: texts, not labels ("negativ|e")
                 if any(len(str(e.get(c[5:] if c.startswith("base ") else c, ""))) > 24 for e in examples))
    return table(["where"] + [esc(c) for c in cols], rows, text_cols=tuple(range(len(cols) + 1)), wide_text=long)


def examples_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    """Each example list the task names in `showcase` (and any other list of dicts in the split's metrics)."""
    r, task, split = ctx["results"], ctx["task"], ctx["split"]
    metrics = r.get("final", {}).get(split or "", {})
    keys = dict(task.showcase)
    keys.update({k: k.replace("_", " ").capitalize() for k, v in metrics.items() if k not in keys
                 and isinstance(v, list) and v and all(isinstance(x, dict) for x in v)})
    base = base_outputs(ctx)
    body = ""
    for key, title in keys.items():
        shown = metrics.get(key)
        if isinstance(shown, list) and shown:
            body += f"<h3>{esc(title)}</h3>" + _example_table(shown, task.output_fields, base)
        elif key in task.showcase and isinstance(shown, list):
            body += f"<h3>{esc(title)}</h3><p class='muted'>none on the {esc(split)} split.</p>"
    note = "<p class='muted small'>Texts as the model saw them: personal data was redacted before training.</p>"
    return section("examples", "Examples", note + body if body else "")


def curves_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    r = ctx["results"]
    img = image(ctx["images"].get("curves"), "learning curves")
    history = r.get("history") or []
    note = ""
    if len(history) == 1:
        note = ("<p class='muted small'>One validation evaluation (at step "
                f"{history[0].get('step')}): its value is labelled; set <code>train.eval_every</code> for a "
                "curve.</p>")
    return section("curves", "Learning curves", img and img + note)


def diagnosis_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    d = ctx["results"].get("diagnosis")
    if not d:
        return section("diagnosis", "Diagnosis", "")
    tone = {"healthy": "good", "inconclusive": "warn"}.get(d["label"], "bad")
    summary = d.get("summary", "")
    summary = summary.removeprefix(d["label"]).lstrip("; ") if summary.startswith(d["label"]) else summary
    body = (f"<p><span class='badge {tone}'>{esc(d['label'])}</span> {esc(summary)}</p>"
            + ("<h3>Evidence</h3>" + items(d.get("evidence", [])) if d.get("evidence") else "")
            + ("<h3>Advice</h3>" + items(d.get("advice", [])) if d.get("advice") else ""))
    others = [f"{k}: {'; '.join(v)}" for k, v in (d.get("signals") or {}).items() if k != d["label"]]
    if others:
        body += "<h3>Other signals</h3>" + items(others)
    return section("diagnosis", "Diagnosis", body)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    m, s = divmod(float(seconds), 60)
    return f"{int(m)} min {s:.0f} s" if m else f"{s:.1f} s"


def training_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    t = ctx["results"].get("training") or {}
    pairs = []
    for k, v in t.items():
        shown = _duration(v) if k == "train_seconds" else (("yes" if v else "no") if isinstance(v, bool)
                                                           else num(v) if isinstance(v, (int, float)) else esc(v))
        pairs.append((TRAINING_LABELS.get(k, k.replace("_", " ")), shown))
    cfg = ctx["config"].get("train", {})
    wanted = [(f"train.{k}", esc(cfg[k])) for k in ("epochs", "lr", "batch_size", "scheduler", "warmup",
                                                     "weight_decay", "seed") if k in cfg]
    method = [(f"method.{k}", esc(v)) for k, v in (ctx["config"].get("method") or {}).items()]
    body = key_values(pairs)
    if wanted or method:
        body += "<details><summary>the settings that shaped it</summary>" + key_values(wanted + method) + "</details>"
    return section("training", "Training", body)


def forgetting_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    f = ctx["results"].get("forgetting")
    if not f:
        return section("forgetting", "Forgetting", "")
    flag = "<span class='flag'>flagged</span>" if f.get("flagged") else "<span class='better'>within threshold</span>"
    pairs = [("measured", esc(f.get("metric"))), ("before training", num(f.get("before"), 4)),
             ("after training", num(f.get("after"), 4)),
             ("relative change", f"{100 * f['relative_change']:+.1f}%" if isinstance(f.get("relative_change"),
                                                                                      (int, float)) else ""),
             ("verdict", flag)]
    pairs += [(k.replace("_", " "), num(v, 4) if isinstance(v, (int, float)) else text_cell(v))
              for k, v in f.items() if k not in ("metric", "before", "after", "relative_change", "flagged")
              and not isinstance(v, (dict, list))]
    return section("forgetting", "Forgetting", key_values(pairs))


def audit_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    audit = ctx["audit"]
    if not audit:
        return section("audit", "Data audit", "")
    from ..vetting.audit import summary_lines

    try:
        lines = summary_lines(audit, max_places=5)
    except (KeyError, TypeError):  # an audit written by another version: show what it has
        lines = [f"{k}: {v}" for k, v in audit.items() if not isinstance(v, (dict, list))]
    return section("audit", "Data audit (privacy and leakage)", items(lines)
                   + "<p class='muted small'>Counts, types and file:line only: data_audit.json never holds a raw "
                     "value.</p>")


def privacy_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    """The guarantee (ε, δ, the accountant) or plainly none: eval.json["privacy"]; then the memorization audit
    (membership inference, canary exposure): eval.json["audit"]."""
    from .memorization import audit_lines, guarantee_lines

    r = ctx["results"]
    p = r.get("privacy")
    if not isinstance(p, dict) or not p:
        return section("privacy", "Privacy and memorization", "")
    body = items(guarantee_lines(p))
    if p.get("per_epoch"):
        body += table(["epoch", "ε spent"], [[num(e["epoch"]), num(e["epsilon"], 3)] for e in p["per_epoch"]])
    if "audit" in r:
        body += "<h3>Memorization audit</h3>" + items(audit_lines(r["audit"])) + (
            "<p class='muted small'>Canaries are stored as hashes and scores only.</p>" if (r["audit"] or {}).get(
                "canaries") else "")
    return section("privacy", "Privacy and memorization", body)


def model_card_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    card = ctx.get("card")
    if card is None:
        return section("model-card", "Model card", "")
    return section("model-card", "Model card", "<p>The model's card (base, method, data hashes, metrics, how to "
                   "load it): <a href='model/README.md'>model/README.md</a></p>")


def notes_section(ctx: dict[str, Any]) -> tuple[str, str, str]:
    notes = ctx["results"].get("notes") or []
    if not notes:
        return section("notes", "Run log", "")
    return section("notes", "Run log", f"<details><summary>{len(notes)} lines the run printed</summary>"
                   + items(notes) + "</details>")
