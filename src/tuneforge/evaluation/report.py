"""What a finished run leaves for people: eval.json, plots (curves, confusion matrices) and report.html.

The metric columns and the validation curve come from the run's task (its headline metrics and curve metric).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ..runs.reading import read_metrics
from ..runs.rundir import atomic_write_json, atomic_write_text
from ..tasks import task_class

DETAIL_CHARS = 600  # of one text cell in the report's tables


def write_outputs(run_dir: Path, results: dict[str, Any]) -> None:
    """eval.json last: its presence marks the run as complete."""
    plots = []
    curves = plot_curves(run_dir, task_class(results["task"]).curve_metric)
    if curves:
        plots.append(curves)
    for split, metrics in results.get("final", {}).items():
        if split != "train" and "confusion_matrix" in metrics:
            labels = list(metrics.get("per_class", {}))
            plots.append(plot_confusion(metrics["confusion_matrix"], labels, run_dir / f"confusion_{split}.png",
                                        f"{split} confusion matrix (fine-tuned)"))
        for key, table in metrics.items():  # other tables of counts, e.g. entity types (gold rows, predicted columns)
            if split != "train" and isinstance(table, dict) and {"labels", "matrix"} <= set(table):
                title = f"{split} {key.replace('_', ' ')} (fine-tuned): {table.get('rows', 'gold')} (rows) " \
                        f"vs {table.get('columns', 'predicted')}"
                plots.append(plot_confusion(table["matrix"], table["labels"], run_dir / f"{key}_{split}.png", title))
    results["plots"] = [p.name for p in plots]
    atomic_write_text(run_dir / "report.html", render_html(results, [run_dir / p.name for p in plots]))
    atomic_write_json(run_dir / "eval.json", results)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(run_dir: Path, curve_metric: str | None = None) -> Path | None:
    """curves.png: training and validation loss, and `curve_metric` on validation when it was computed."""
    rows = read_metrics(run_dir)
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    if not train:
        return None
    plt = pyplot()
    metric = curve_metric if val and curve_metric in val[0] else None
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(11 if metric else 6, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if val:
        ax.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", label="validation loss")
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.legend(), ax.grid(alpha=0.3)
    if metric:
        ax = axes[0][1]
        ax.plot([r["step"] for r in val], [r[metric] for r in val], "o-", color="tab:green")
        ax.set_xlabel("step"), ax.set_ylabel(f"validation {metric}"), ax.grid(alpha=0.3)
    fig.tight_layout()
    path = run_dir / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> Path:
    from sklearn.metrics import ConfusionMatrixDisplay
    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 3, 1.2 * len(labels) + 2))
    ConfusionMatrixDisplay(np.array(matrix), display_labels=labels).plot(ax=ax, cmap="Blues", colorbar=False)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _table(results: dict[str, Any]) -> str:
    keys = list(dict.fromkeys(task_class(results["task"]).headline + ("loss",)))
    rows = []
    for stage in ("pretrained", "base", "final"):  # pretrained: a continued run's model before every run
        for split, m in results.get(stage, {}).items():
            cells = "".join(f"<td>{m[k]:.4f}</td>" if isinstance(m.get(k), (int, float)) else "<td></td>"
                            for k in keys)
            rows.append(f"<tr><td>{stage}</td><td>{split}</td>{cells}</tr>")
    head = "".join(f"<th>{k}</th>" for k in keys)
    return f"<table><tr><th>model</th><th>split</th>{head}</tr>{''.join(rows)}</table>"


def render_html(results: dict[str, Any], images: list[Path]) -> str:
    """A single self-contained page (images inlined) that opens offline."""
    parts = [f"<h1>tuneforge run: {html.escape(str(results.get('model')))} · {html.escape(str(results.get('method')))}"
             f" · {html.escape(str(results.get('task')))}</h1>", "<h2>Metrics</h2>", _table(results)]
    diag = results.get("diagnosis")
    if diag:
        parts.append(f"<h2>Diagnosis: {html.escape(diag['label'])}</h2><ul>"
                     + "".join(f"<li>{html.escape(e)}</li>" for e in diag.get("evidence", [])) + "</ul>"
                     + "<h3>Advice</h3><ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in diag.get("advice", []))
                     + "</ul>")
    for img in images:
        data = base64.b64encode(img.read_bytes()).decode()
        parts.append(f'<h2>{html.escape(img.stem)}</h2><img src="data:image/png;base64,{data}">')
    training = results.get("training", {})
    parts.append("<h2>Training</h2><ul>" + "".join(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>"
                                                   for k, v in training.items()) + "</ul>")
    parts.extend(_detail_sections(results))
    notes = results.get("notes", [])
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}" \
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>tuneforge report</title>" \
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"


def _cell(v: Any) -> str:
    text = f"{v:.4f}" if isinstance(v, float) else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return f"<td style='text-align:left;white-space:pre-wrap'>{html.escape(str(text)[:DETAIL_CHARS])}</td>"


def _detail_sections(results: dict[str, Any]) -> list[str]:
    """The fine-tuned model's tables by shape, whatever the task: a dict of per-key metric dicts (per type,
    per field, per class) and a list of example dicts (mistakes, invalid JSON answers, samples)."""
    parts = []
    for split, metrics in results.get("final", {}).items():
        for key, value in metrics.items():
            if split == "train" or not value:
                continue
            if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()) \
                    and not {"labels", "matrix"} <= set(value):
                cols = list(dict.fromkeys(c for v in value.values() for c in v))
                rows = "".join(f"<tr><td>{html.escape(str(k))}</td>" + "".join(
                    f"<td>{v[c]:.4f}</td>" if isinstance(v.get(c), float) else f"<td>{html.escape(str(v.get(c, '')))}"
                    "</td>" for c in cols) + "</tr>" for k, v in value.items())
            elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
                cols = list(dict.fromkeys(c for v in value for c in v))
                rows = "".join(f"<tr><td>{i}</td>" + "".join(_cell(v.get(c, "")) for c in cols) + "</tr>"
                               for i, v in enumerate(value, 1))
            else:
                continue
            head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
            parts.append(f"<h2>{html.escape(split)}: {html.escape(key.replace('_', ' '))} (fine-tuned)</h2>"
                         f"<table><tr><th></th>{head}</tr>{rows}</table>")
    return parts
