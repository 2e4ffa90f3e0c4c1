"""What a run's evaluation adds to its numbers, from the per-example rows of every model on every split:
confidence intervals, base vs fine-tuned (and vs each baseline) paired tests, slices, calibration.

Everything is computed through the task's `tally` and `summarize` (evaluation/uncertainty.py), so it works
for any task that provides them and is skipped, silently, for one that does not. Seeded by train.seed:
the same run gives the same intervals. Cost, measured on 2 CPU cores for the sentiment demo (300 test
examples, 1,000 resamples, base + 2 baselines + fine-tuned, 8 slices): about 0.3 s.
"""
from __future__ import annotations

from typing import Any

from . import calibration, uncertainty
from .slices import slice_keys, slice_table

FINE_TUNED, BASE = "fine-tuned", "base"


def headline_split(results: dict[str, Any]) -> str | None:
    """The split a run is judged on: test when there is one, else validation."""
    final = results.get("final", {})
    return next((s for s in ("test", "validation") if s in final), None)


def analyze(task: Any, results: dict[str, Any], rows: dict[str, dict[str, list[dict[str, Any]]]],
            baseline_rows: dict[str, dict[str, list[dict[str, Any]]]], fields: dict[str, dict[str, Any]],
            eval_cfg: Any, seed: int) -> float:
    """Add "ci" to every stage's split metrics, "baselines", "comparisons", "slices" and "calibration" to
    `results`; returns the temperature predictions should use (1.0 unless eval.calibrate fitted one).
    `rows`: stage ("base", "final") -> split -> the task's per-example rows."""
    resamples = eval_cfg.bootstrap
    names = [m for m in task.headline]
    tallies = {stage: {split: task.tally(r) for split, r in by_split.items() if r} for stage, by_split in rows.items()}
    for stage, by_split in tallies.items():
        for split, tally in by_split.items():
            if tally is not None and split in results.get(stage, {}):
                results[stage][split] = uncertainty.with_intervals(results[stage][split], tally, task.summarize,
                                                                   names, resamples, seed)
    base_tallies = _baselines(task, results, baseline_rows, names, resamples, seed)
    split = headline_split(results)
    final = tallies.get("final", {}).get(split) if split else None
    if final is None:
        return 1.0
    others = {BASE: tallies.get("base", {}).get(split), **{k: v.get(split) for k, v in base_tallies.items()}}
    directions = {m: task.direction(m) for m in names}
    results["comparisons"] = {split: [
        {"a": name, "b": FINE_TUNED, **uncertainty.compare(t, final, task.summarize, names, directions, resamples,
                                                          seed, task.correct_column)}
        for name, t in others.items() if t is not None and len(next(iter(t.values()))) == len(final["n"])]}
    keys = slice_keys(rows["final"][split], task.auto_slices(rows["final"][split]), fields, list(eval_cfg.slices))
    if keys:
        results["slices"] = {split: slice_table(final, task.summarize, keys, names, task.primary_metric,
                                                task.direction(task.primary_metric), resamples, seed,
                                                task.slice_metrics)}
    return _calibration(task, results, rows.get("final", {}), split, eval_cfg.calibrate)


def _baselines(task: Any, results: dict[str, Any], baseline_rows: dict[str, dict[str, list[dict[str, Any]]]],
               names: list[str], resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """results["baselines"][name][split] = metrics with intervals; returns their tallies."""
    tallies: dict[str, dict[str, Any]] = {}
    for name, by_split in baseline_rows.items():
        for split, r in by_split.items():
            tally = task.tally(r) if r else None
            if tally is None:
                continue
            tallies.setdefault(name, {})[split] = tally
            metrics = {k: round(v, 4) for k, v in uncertainty.point(tally, task.summarize).items()}
            metrics["n"] = len(r)
            results.setdefault("baselines", {}).setdefault(name, {})[split] = uncertainty.with_intervals(
                metrics, tally, task.summarize, names, resamples, seed)
    return tallies


def _calibration(task: Any, results: dict[str, Any], final_rows: dict[str, list[dict[str, Any]]], split: str,
                 fit: bool) -> float:
    """ECE and reliability bins of the judged split; with `fit`, the temperature fitted on validation."""
    scores = task.scores(final_rows.get(split) or [])
    if scores is None:
        return 1.0
    temperature, note = 1.0, ""
    if fit:
        val = task.scores(final_rows.get("validation") or [])
        if val is not None and len(val.logits) >= 2:
            temperature = calibration.fit_temperature(val)
            note = f"temperature {temperature:g} fitted on {len(val.logits)} validation examples"
        else:
            note = "eval.calibrate: no validation split to fit a temperature on; probabilities left as they are"
    out = calibration.report(scores, temperature)
    if note:
        out["note"] = note
    results["calibration"] = {split: out}
    return temperature
