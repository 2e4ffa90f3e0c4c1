"""What the diagnosis reads in preference curves (PreferenceTask.curve_signals, asked by guards/diagnosis.py).

- Over-optimization (reported as overfitting): the validation reward margin grows several-fold while the
  test generations end worse than before training (ROUGE-L or fact accuracy against the chosen answers): the
  policy widens margins by drifting from what it could say, not by saying it better.
- Underfitting: validation reward accuracy stays at 0.5 (± STUCK) at every evaluation: the model does not
  tell chosen from rejected apart yet.
"""
from __future__ import annotations

import math
from typing import Any

MARGIN_GROWTH = 3.0    # the last validation margin is this many times the first ...
MARGIN_FLOOR = 1.0     # ... and at least this large (reward units: β·nats)
DEGRADE = 0.05         # a test generation metric this far below the starting model's = degraded
STUCK = 0.05           # reward accuracy within this of 0.5 = stuck at chance
GENERATION = ("rouge_l", "fact_accuracy")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def signals(val: list[dict[str, Any]], results: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    stuck = stuck_at_chance(val, results)
    if stuck:
        out["underfitting"] = [stuck]
    over = over_optimization(val, results)
    if over:
        out["overfitting"] = [over]
    return out


def stuck_at_chance(val: list[dict[str, Any]], results: dict[str, Any]) -> str:
    acc = [(r["step"], r["reward_accuracy"]) for r in val if _finite(r.get("reward_accuracy"))]
    if acc:
        if all(abs(a - 0.5) <= STUCK for _, a in acc):
            low, high = min(a for _, a in acc), max(a for _, a in acc)
            return (f"validation reward accuracy stayed at {low:.3f}–{high:.3f} over {len(acc)} evaluation(s) "
                    f"(steps {acc[0][0]}–{acc[-1][0]}): the model does not tell chosen from rejected apart yet")
        return ""
    final = results.get("final", {}).get("train", {}).get("reward_accuracy")
    if _finite(final) and abs(final - 0.5) <= STUCK:
        return f"training reward accuracy {final:.3f} at the end: the model does not tell chosen from rejected apart"
    return ""


def over_optimization(val: list[dict[str, Any]], results: dict[str, Any]) -> str:
    margins = [(r["step"], r["reward_margin"]) for r in val if _finite(r.get("reward_margin"))]
    start = results.get("base", {}).get("validation", {}).get("reward_margin")
    if _finite(start):  # the starting model's margin is step 0 (0 when it is its own reference): two evaluations
        margins.insert(0, (0, start))  # late in a short run would otherwise hide the growth (support-bot-prefs)
    if len(margins) < 2:
        return ""
    (s0, m0), (s1, m1) = margins[0], margins[-1]
    if not (m1 >= MARGIN_FLOOR and m1 >= MARGIN_GROWTH * m0):
        return ""
    before, after = results.get("base", {}).get("test", {}), results.get("final", {}).get("test", {})
    worse = [f"{k} {before[k]:.3f} → {after[k]:.3f}" for k in GENERATION
             if _finite(before.get(k)) and _finite(after.get(k)) and before[k] - after[k] >= DEGRADE]
    if not worse:
        return ""
    kl = next((r["kl"] for r in reversed(val) if _finite(r.get("kl"))), None)
    return (f"validation reward margin grew from {m0:.3f} (step {s0}) to {m1:.3f} (step {s1}) while the test "
            f"generations got worse than before training ({', '.join(worse)})"
            + (f"; KL to the reference {kl:.3f} per token" if kl is not None else "")
            + ": over-optimization, the margins grow by drifting from the reference, not by answering better")
