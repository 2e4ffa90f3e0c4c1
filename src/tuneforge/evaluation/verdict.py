"""The one paragraph a reader needs: did fine-tuning work, how sure is that, and what to do next.

Built only from eval.json (the primary metric with its interval, the paired tests against the base model
and the baselines, the diagnosis, the weakest slices, calibration and forgetting), so `tuneforge report`
rebuilds it for any finished run, and the CLI prints it after training.
"""
from __future__ import annotations

from typing import Any

from .analysis import BASE, headline_split

WELL_CALIBRATED = 0.05   # ECE at or below this: the probabilities can be read as probabilities


def fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def ci_text(ci: list[float] | None) -> str:
    return f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else ""


def test_of(comparison: dict[str, Any], metric: str) -> tuple[str, str] | None:
    """(verdict, test name) of b against a: McNemar when the task has correctness, else the paired bootstrap."""
    if "mcnemar" in comparison:
        return comparison["mcnemar"]["verdict"], "McNemar"
    m = comparison.get("metrics", {}).get(metric)
    return (m["verdict"], "paired bootstrap") if m else None


def outcome(results: dict[str, Any], task: Any) -> tuple[str, list[str]]:
    """("good" | "bad" | "mixed" | "unknown", sentences about the result against the base and baselines)."""
    split = headline_split(results)
    if split is None:
        return "unknown", ["No validation or test split was evaluated, so there is nothing to judge the run on."]
    m = task.primary_metric
    final = results["final"][split]
    value = final.get(m)
    if not isinstance(value, (int, float)):
        return "unknown", [f"The {split} split has no {m}."]
    n = final.get("n")
    head = f"On {n:,} {split} examples" if isinstance(n, int) else f"On the {split} split"
    said = [f"{head} the fine-tuned model scores {m} {value:.3f}{ci_text(final.get('ci', {}).get(m))}"]
    comps = {c["a"]: c for c in results.get("comparisons", {}).get(split, [])}
    verdicts = {}
    for name, c in comps.items():
        ref = (results.get("base", {}).get(split, {}) if name == BASE
               else results.get("baselines", {}).get(name, {}).get(split, {})).get(m)
        test = test_of(c, m)
        if test is None or not isinstance(ref, (int, float)):
            continue
        verdicts[name] = test[0]
        who = "the base model" if name == BASE else f"the {name} baseline"
        said.append(f"against {ref:.3f} for {who}: {test[0]} ({test[1]})")
    text = [said[0] + ("; " + "; ".join(said[1:]) if len(said) > 1 else "") + "."]
    if BASE not in verdicts:
        base = results.get("base", {}).get(split, {}).get(m)
        text.append(f"The base model scores {base:.3f}, but without a paired test (eval.bootstrap: 0, or a "
                    "distributed evaluation, which keeps no per-example rows) whether that difference is real is "
                    "unknown." if isinstance(base, (int, float)) else
                    "The base model was not evaluated (eval.base: false), so what fine-tuning bought is unknown.")
        return "unknown", text
    beat = {k: v.startswith("better") for k, v in verdicts.items()}
    if not beat[BASE]:
        worse = verdicts[BASE].startswith("worse")
        return "bad", text + [("Fine-tuning made the model worse than the base." if worse else
                               "Fine-tuning made no difference that this test set can show.")]
    costs = costs_against_base(results, comps[BASE], split, task)
    if costs:
        return "mixed", text + [f"But it got worse on {', '.join(costs)} (paired bootstrap): what it learned cost "
                                "what the base model could already do."]
    lost = [k for k, b in beat.items() if not b]
    if lost:
        return "mixed", text + [f"It beats the base model, but not the {', '.join(lost)} baseline: most of what it "
                                "knows the frozen base already knew, or the data is easy."]
    return "good", text + ["Fine-tuning worked: it beats the base model" + (" and every baseline" if len(beat) > 1
                                                                            else "") + "."]


def costs_against_base(results: dict[str, Any], comparison: dict[str, Any], split: str, task: Any) -> list[str]:
    """The other headline metrics the paired test finds worse than the base ("rouge_l 0.632 → 0.444"), except
    those measured from the starting model (Task.relative_to_start: the base's value is fixed by construction)."""
    base, final = results.get("base", {}).get(split, {}), results["final"][split]
    return [f"{k} {base[k]:.3f} → {final[k]:.3f}" for k, r in comparison.get("metrics", {}).items()
            if k != task.primary_metric and k not in task.relative_to_start and r["verdict"].startswith("worse")
            and isinstance(base.get(k), (int, float)) and isinstance(final.get(k), (int, float))]


def paragraph(results: dict[str, Any], task: Any) -> dict[str, str]:
    """{"tone": good | bad | mixed | unknown, "text": the verdict paragraph}."""
    tone, text = outcome(results, task)
    diag = results.get("diagnosis") or {}
    if diag:
        text.append(f"Diagnosis: {diag.get('summary', diag.get('label'))}.")
    split = headline_split(results)
    weak = (results.get("slices", {}).get(split) or {}).get("weak", []) if split else []
    if weak:
        text.append(f"Weakest slice{'s' if len(weak) > 1 else ''}: {', '.join(weak[:3])} (worse than overall "
                    "beyond its interval).")
    calib = (results.get("calibration") or {}).get(split or "")
    if calib:
        c = calib.get("calibrated")
        if c:
            text.append(f"Calibration: ECE {calib['ece']:.3f}, {c['ece']:.3f} after temperature scaling "
                        f"(T = {c['temperature']:g}, applied by predict).")
        elif calib["ece"] <= WELL_CALIBRATED:
            text.append(f"Its probabilities are well calibrated (ECE {calib['ece']:.3f}).")
        else:
            text.append(f"Its probabilities are off by {calib['ece']:.3f} on average (ECE): set eval.calibrate: true "
                        "to fit a temperature on validation.")
    forgetting = results.get("forgetting") or {}
    if forgetting.get("flagged"):
        text.append(f"Forgetting flagged: {forgetting['metric']} {fmt(forgetting['before'])} → "
                    f"{fmt(forgetting['after'])} ({100 * forgetting['relative_change']:+.1f}%).")
    advice = diag.get("advice") or []
    text.append(f"Next: {advice[0]}." if advice else "Next: nothing the curves ask for; more data for the weakest "
                "slices is the usual way up." if weak else "Next: nothing the curves ask for.")
    return {"tone": tone, "text": " ".join(text)}
