"""report.html: one self-contained page a user can send to a colleague.

Top to bottom: who/what/when and the data; the verdict paragraph; the metrics of every model on the split
the run is judged on (intervals, paired tests); per-class (or any per-type) tables; confusion matrices;
slices; calibration; examples (misclassified ones, sample generations beside the references and the base
model's answers); curves and the diagnosis; training; forgetting; the data audit; then places for what
other stages add (differential privacy, the model card) and the run log. Sections with nothing to show are
left out, and so is any table column without a value. Task-generic: metric columns are the task's headline,
example lists are the metric keys the task names (`Task.showcase`), and any mapping of names to metric
dicts (per_class, per_type, ...) becomes a table.
"""
from __future__ import annotations

from typing import Any

from . import report_numbers as numbers
from . import report_story as story
from .html import esc, num, page, table, text_cell

# The page, in order. Another stage adds its section by appending a function (ctx -> (id, title, html)).
SECTIONS = [numbers.verdict_section, numbers.metrics_section, numbers.per_class_section, numbers.confusion_section,
            numbers.slices_section, numbers.calibration_section, story.examples_section, story.curves_section,
            story.diagnosis_section, story.training_section, story.forgetting_section, story.audit_section,
            story.privacy_section, story.model_card_section, story.notes_section]


def render_html(ctx: dict[str, Any]) -> str:
    r = ctx["results"]
    sections = [f(ctx) for f in SECTIONS]
    return page(f"tuneforge · {r.get('run') or ctx['run_dir'].name}", header(ctx), sections)


def header(ctx: dict[str, Any]) -> str:
    r, prov = ctx["results"], ctx["provenance"]
    t = r.get("training", {})
    share = (f" · {t['trainable_params']:,} of {t['total_params']:,} parameters trained "
             f"({100 * t['trainable_params'] / max(t['total_params'], 1):.2f}%)") if "trainable_params" in t else ""
    date = r.get("date") or ""
    meta = (f"<b>{esc(r.get('task'))}</b> · model <b>{esc(r.get('model'))}</b> · method <b>{esc(r.get('method'))}"
            f"</b>{share}" + (f" · {esc(date)}" if date else ""))
    versions = ", ".join(f"{k} {prov[k]}" for k in ("tuneforge", "torch", "transformers") if k in prov)
    hashes = prov.get("data_sha256") or {}
    rows = [[esc(split), text_cell(d.get("file")), num(d.get("n")), esc(hashes.get(split, ""))]
            for split, d in (r.get("data") or {}).items()]
    if not rows:  # an older run: split sizes from the provenance
        rows = [[esc(s), "", num(n), esc(hashes.get(s, ""))] for s, n in (prov.get("split_sizes") or {}).items()]
    data = table(["split", "source", "examples", "sha256 (16)"], rows, text_cols=(0, 1, 3))
    return (f"<header><h1>{esc(r.get('run') or ctx['run_dir'].name)}</h1><p class='meta'>{meta}</p>{data}"
            + (f"<p class='muted small'>{esc(versions)} · run directory <code>{esc(ctx['run_dir'])}</code></p>"
               if versions else "") + "</header>")
