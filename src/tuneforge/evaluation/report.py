"""What a finished run leaves for people: eval.json, predictions/, plots and report.html.

`write_outputs` (the end of training) and `regenerate` (`tuneforge report RUN`) draw the same pictures and
render the same page from what the run directory holds: eval.json, config.yaml, data_audit.json and
metrics.jsonl. What is shown comes from the run's task (headline and primary metric, which metric keys
hold examples to show); the page itself is report_html.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..runs import reading
from ..runs.rundir import atomic_write_json, atomic_write_text
from ..tasks import task_class
from . import plots
from .analysis import headline_split
from .report_html import render_html

PREDICTIONS = "predictions"  # predictions/<split>.jsonl (fine-tuned), predictions/base-<split>.jsonl


def write_predictions(run_dir: Path, rows: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    """Every evaluated example's prediction, per stage and split (what paired tests between runs read)."""
    for stage, by_split in rows.items():
        for split, r in by_split.items():
            if r:
                (run_dir / PREDICTIONS).mkdir(exist_ok=True)
                name = f"{split}.jsonl" if stage == "final" else f"{stage}-{split}.jsonl"
                atomic_write_text(run_dir / PREDICTIONS / name,
                                  "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in r))



def write_outputs(run_dir: Path, results: dict[str, Any]) -> None:
    """Plots, report.html, then eval.json last: its presence marks the run as complete."""
    results["plots"] = [p.name for p in draw(run_dir, results)]
    atomic_write_text(run_dir / "report.html", render_html(context(run_dir, results)))
    atomic_write_json(run_dir / "eval.json", results)


def regenerate(run_dir: Path) -> Path:
    """report.html (and its plots) of a finished run, rebuilt from its files; eval.json is not touched."""
    if not (run_dir / "eval.json").is_file():
        reading.require_run(run_dir)
        from ..errors import TuneforgeError

        raise TuneforgeError(f"{run_dir} has no eval.json (the run did not finish); resume it with --resume")
    results = reading.read_eval(run_dir)
    draw(run_dir, results)
    path = run_dir / "report.html"
    atomic_write_text(path, render_html(context(run_dir, results)))
    return path


def draw(run_dir: Path, results: dict[str, Any]) -> list[Path]:
    """curves.png, and confusion_<split>.png and reliability_<split>.png of the split the run is judged on,
    where the run has what they show."""
    task = task_class(results["task"])
    made = []
    base_loss = results.get("base", {}).get("validation", {}).get("loss")
    curves = plots.plot_curves(reading.read_metrics(run_dir), run_dir / "curves.png", task.curve_metric, base_loss)
    if curves:
        made.append(curves)
    split = headline_split(results)
    metrics = results.get("final", {}).get(split or "", {})
    if "confusion_matrix" in metrics:  # the judged split's (each picture costs ~1 s of a CPU core)
        labels = list(metrics.get("per_class", {})) or [str(i) for i in range(len(metrics["confusion_matrix"]))]
        made.append(plots.plot_confusion(metrics["confusion_matrix"], labels, run_dir / f"confusion_{split}.png",
                                         f"{split}, fine-tuned"))
    for key, table in metrics.items():  # other tables of counts, e.g. entity types (gold rows, predicted columns)
        if isinstance(table, dict) and {"labels", "matrix"} <= set(table):
            title = f"{split} {key.replace('_', ' ')}, fine-tuned: {table.get('rows', 'gold')} (rows) vs " \
                    f"{table.get('columns', 'predicted')}"
            made.append(plots.plot_confusion(table["matrix"], table["labels"], run_dir / f"{key}_{split}.png", title))
    for split, calib in (results.get("calibration") or {}).items():
        if calib.get("bins"):
            made.append(plots.plot_reliability(calib, run_dir / f"reliability_{split}.png"))
    return made


def context(run_dir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Everything the page shows, read from the run directory (missing pieces are simply left out)."""
    try:
        settings, provenance = reading.read_saved_config(run_dir)
    except (OSError, ValueError):
        settings, provenance = {}, {}
    audit_path = run_dir / "data_audit.json"
    audit = json.loads(audit_path.read_text(encoding="utf-8")) if audit_path.is_file() else None
    images = {p.stem: p for p in sorted(run_dir.glob("*.png"))}
    card = run_dir / "model" / "README.md"  # the model card (issue 17), when the run wrote one
    return {"run_dir": run_dir, "results": results, "task": task_class(results["task"]), "config": settings,
            "provenance": provenance, "audit": audit, "images": images, "split": headline_split(results),
            "card": card if card.is_file() else None}
