"""Several finished runs side by side: one self-contained page (`tuneforge report RUN RUN ...`).

What each run is (method, model, trainable share, time, diagnosis), its headline metrics with intervals on
the split it is judged on, every run tested against the first on the examples they share (matched by
file:line from predictions/<split>.jsonl: McNemar where the task has per-example correctness, the paired
bootstrap for every headline metric), the settings that differ, the validation curves overlaid, and each
run's verdict. Runs of different tasks cannot be compared.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import TuneforgeError
from ..runs import reading
from ..tasks import task_class
from . import plots, uncertainty
from .analysis import headline_split
from .html import esc, image, num, page, section, table, text_cell, verdict_class, with_ci
from .tblog import flatten
from .verdict import paragraph

IGNORED_SETTINGS = ("name", "output_dir")  # differ by construction


def load(run_dir: Path) -> dict[str, Any]:
    if not (run_dir / "eval.json").is_file():
        reading.require_run(run_dir)
        raise TuneforgeError(f"{run_dir} has no eval.json (the run did not finish); resume it with --resume")
    results = reading.read_eval(run_dir)
    settings, _ = reading.read_saved_config(run_dir)
    return {"dir": run_dir, "name": results.get("run") or run_dir.name, "results": results, "settings": settings,
            "split": headline_split(results), "rows": {}, "metrics": reading.read_metrics(run_dir)}


def paired_against(first: dict[str, Any], other: dict[str, Any], task: Any, seed: int = 0) -> dict[str, Any] | str:
    """`other` against `first` on the examples both predicted (by file:line), or why they cannot be paired."""
    split = first["split"]
    if split is None or other["split"] != split:
        return "judged on different splits"
    a = reading.read_predictions(first["dir"], split) or []
    b = reading.read_predictions(other["dir"], split) or []
    if not a or not b:
        return "no predictions/ to pair (a run from before tuneforge kept them)"
    by_where = {r["where"]: r for r in b if "where" in r}
    shared = [(r, by_where[r["where"]]) for r in a if r.get("where") in by_where]
    if len(shared) < 2:
        return "no test examples in common"
    ta, tb = task.tally([x for x, _ in shared]), task.tally([y for _, y in shared])
    if ta is None or tb is None:
        return "this task keeps no per-example scores"
    names = list(task.headline)
    return uncertainty.compare(ta, tb, task.summarize, names, {m: task.direction(m) for m in names},
                               uncertainty.RESAMPLES, seed, task.correct_column)


def _runs_table(runs: list[dict[str, Any]]) -> str:
    rows = []
    for r in runs:
        res, t = r["results"], r["results"].get("training", {})
        share = f"{100 * t['trainable_params'] / max(t['total_params'], 1):.2f}%" if "trainable_params" in t else ""
        rows.append([esc(r["name"]), esc(res.get("method")), esc(res.get("model")), share,
                     num(t.get("train_seconds"), 1), esc((res.get("diagnosis") or {}).get("label", "")),
                     esc(res.get("date", ""))])
    return table(["run", "method", "model", "trained", "train s", "diagnosis", "date"], rows,
                 text_cols=(0, 1, 2, 5, 6))


def _metrics_table(runs: list[dict[str, Any]], task: Any) -> str:
    names = list(dict.fromkeys(task.headline + ("loss",)))
    rows = []
    for r in runs:
        m = r["results"].get("final", {}).get(r["split"] or "", {})
        ci = m.get("ci", {})
        rows.append([esc(r["name"]), esc(r["split"] or ""), num(m.get("n"))]
                    + [with_ci(m.get(k), ci.get(k)) for k in names])
    return table(["run", "split", "n"] + [esc(k) for k in names], rows, text_cols=(0, 1))


def _paired_table(runs: list[dict[str, Any]], task: Any) -> str:
    rows = []
    for other in runs[1:]:
        result = paired_against(runs[0], other, task)
        if isinstance(result, str):
            rows.append([esc(other["name"]), "", "", f"<span class='muted'>{esc(result)}</span>"])
            continue
        m = result.get("mcnemar")
        mc = (f"<span class='{verdict_class(m['verdict'])}'>{esc(m['verdict'])}</span><span class='ci'>"
              f"{m['only_b']} fixed, {m['only_a']} broken</span>") if m else ""
        tests = "; ".join(f"{k} Δ {v['delta']:+.3f}: {v['verdict']}" for k, v in result["metrics"].items())
        rows.append([esc(other["name"]), num(result["n"]), mc, esc(tests)])
    if not rows:
        return ""
    return (f"<p class='muted small'>Each run against <b>{esc(runs[0]['name'])}</b> on the examples both predicted "
            "(matched by file:line).</p>"
            + table(["run", "shared examples", "McNemar", "paired bootstrap (run − first)"], rows,
                    text_cols=(0, 2, 3), wide_text=(3,)))


def _settings_table(runs: list[dict[str, Any]]) -> str:
    flat = [flatten(r["settings"]) for r in runs]
    keys = sorted({k for f in flat for k in f} - set(IGNORED_SETTINGS))
    differ = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
    rows = [[esc(k)] + [text_cell(f.get(k, "")) for f in flat] for k in differ]
    return table(["setting"] + [esc(r["name"]) for r in runs], rows, text_cols=tuple(range(len(runs) + 1))) \
        if rows else "<p class='muted'>The runs' settings are the same (apart from their names).</p>"


def render(run_dirs: list[Path]) -> str:
    runs = [load(d) for d in run_dirs]
    tasks = {r["results"].get("task") for r in runs}
    if len(tasks) > 1:
        kinds = ", ".join(f"{r['dir']} ({r['results'].get('task')})" for r in runs)
        raise TuneforgeError(f"runs of different tasks cannot be compared: {kinds}; give runs of one task")
    task = task_class(tasks.pop())
    with tempfile.TemporaryDirectory() as tmp:
        curves = plots.plot_overlay({r["name"]: r["metrics"] for r in runs}, Path(tmp) / "overlay.png",
                                    task.curve_metric)
        overlay = image(curves, "validation curves")
    verdicts = "".join(f"<h3>{esc(r['name'])}</h3><div class='verdict {v['tone']}'>{esc(v['text'])}</div>"
                       for r in runs for v in [paragraph(r["results"], task)])
    sections = [section("runs", "Runs", _runs_table(runs)), section("metrics", "Metrics", _metrics_table(runs, task)),
                section("paired", "Paired tests", _paired_table(runs, task)),
                section("settings", "Settings that differ", _settings_table(runs)),
                section("curves", "Validation curves", overlay), section("verdicts", "Verdicts", verdicts)]
    header = (f"<header><h1>{len(runs)} runs compared</h1><p class='meta'><b>{esc(task.name)}</b> · "
              + " · ".join(f"<a href='{esc(r['dir'].resolve().as_uri())}/report.html'>{esc(r['name'])}</a>"
                           for r in runs) + f" · {esc(time.strftime('%Y-%m-%d %H:%M'))}</p></header>")
    return page(f"tuneforge · {' vs '.join(r['name'] for r in runs)}", header, sections)
