"""A preference evaluation's per-example rows (predictions/<split>.jsonl) and the columns intervals, paired
tests and slices are computed from (evaluation/uncertainty.py).

A pair's row: `chosen_logps`/`rejected_logps` (the policy's summed log-probabilities), `reward_margin` (reward
of chosen − rejected; null without a reward), `correct` (the chosen answer has the higher reward; null for a
tie, e.g. a model that is its own reference, which counts half as in `reward_accuracy`), `logp_correct` (the
policy itself finds the chosen answer likelier), `kl`/`kl_tokens` (summed per-token KL to the reference over
both answers), and `loss`/`tokens`: the chosen answer's summed NLL and its token count (the memorization
audit's score; the perplexity the generation summary reports). An unpaired (KTO) completion's row: `desirable`,
`logps`, `reward`, `correct` (the reward has the label's sign), `kl`, `loss`/`tokens` of that completion.
Generated examples add the instruction task's prompt/reference/generated and scores.

The columns reproduce scoring.Tally.metrics: over pairs when the split has any (unpaired rows then count for
nothing), else over the unpaired completions; `correct` (0/1, McNemar's) only when no counted row is a tie.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...evaluation.genmetrics import generation_summary, generation_tally, ratio
from .scoring import Tally


def _outcome(diff: float) -> bool | None:
    """True/False: which way a comparison went; None: a tie (or no reward to compare)."""
    return None if diff == 0 or math.isnan(diff) else diff > 0


def _num(x: float, digits: int = 4) -> float | None:
    return None if math.isnan(x) else round(x, digits)


def example_rows(tally: Tally, examples: list[Any]) -> list[dict[str, Any]]:
    """One row per example, in input order, from the numbers `tally` kept of each batch's rows."""
    sides: list[list[list[float]]] = [[] for _ in examples]  # per example: its main rows, chosen first
    for p, order, values in tally.kept:
        for k, i in enumerate(order):
            if k < p or k >= 2 * p:  # a pair's chosen row, or an unpaired completion
                sides[i].insert(0, values[k].tolist())
            else:
                sides[i].append(values[k].tolist())
    return [_row(e, s) for e, s in zip(examples, sides)]


def _row(e: Any, sides: list[list[float]]) -> dict[str, Any]:
    (pol, reward, tokens, kl, kl_n) = sides[0]
    row: dict[str, Any] = {"where": e.where, "length": len(e.prompt or e.chosen.ids)}
    if e.rejected is None:
        row.update(desirable=bool(e.desirable), logps=_num(pol), reward=_num(reward),
                   correct=_outcome(reward if e.desirable else -reward))
    else:
        pol_r, reward_r, _, kl_r, kl_rn = sides[1]
        row.update(chosen_logps=_num(pol), rejected_logps=_num(pol_r), reward_margin=_num(reward - reward_r),
                   correct=_outcome(reward - reward_r), logp_correct=_outcome(pol - pol_r))
        kl, kl_n = kl + kl_r, kl_n + kl_rn
    if not math.isnan(kl):
        row.update(kl=round(kl, 6), kl_tokens=int(kl_n))
    row.update(loss=round(-pol, 4), tokens=int(tokens))
    return row


def _wins(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([0.5 if r.get(key) is None else float(r[key]) for r in rows])


def tally(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The generation columns (instruction's), and per row: whether it counts (`ranked`), its reward and
    log-probability wins, the chosen/rejected (desirable/undesirable) counts and sums, the KL sums."""
    if not rows:
        return None
    cols = generation_tally(rows)
    paired = any("rejected_logps" in r for r in rows)
    ranked = np.array([float(("rejected_logps" in r) == paired) for r in rows])
    counted = [r for r, w in zip(rows, ranked) if w]
    if paired:
        chosen = np.array([r.get("chosen_logps") or 0.0 for r in rows]) * ranked
        rejected = np.array([r.get("rejected_logps") or 0.0 for r in rows]) * ranked
        cols.update(c_n=ranked, r_n=ranked, c_logps=chosen, r_logps=rejected, logp_wins=_wins(rows, "logp_correct")
                    * ranked)
        if all(r.get("reward_margin") is not None for r in counted):
            cols["margin"] = np.array([r.get("reward_margin") or 0.0 for r in rows]) * ranked
    else:
        good = np.array([float(bool(r.get("desirable"))) for r in rows])
        logps = np.array([r.get("logps") or 0.0 for r in rows])
        cols.update(c_n=good, r_n=1 - good, c_logps=logps * good, r_logps=logps * (1 - good))
        if all(r.get("reward") is not None for r in counted):
            reward = np.array([r["reward"] for r in rows])
            cols.update(c_reward=reward * good, r_reward=reward * (1 - good))
    cols["ranked"] = ranked
    if "margin" in cols or "c_reward" in cols:
        cols["wins"] = _wins(rows, "correct") * ranked
        if all(r.get("correct") is not None for r in counted):
            cols["correct"] = np.array([float(bool(r.get("correct"))) for r in rows]) * ranked
    if all("kl" in r for r in rows):
        cols.update(kl_sum=np.array([r["kl"] for r in rows]), kl_tokens=np.array([float(r["kl_tokens"]) for r in rows]))
    return cols


def summarize(sums: dict[str, Any]) -> dict[str, Any]:
    """scoring.Tally.metrics from column sums (and the generation metrics, the chosen answers' perplexity)."""
    out = generation_summary(sums)
    out.update(chosen_logps=ratio(sums["c_logps"], sums["c_n"]), rejected_logps=ratio(sums["r_logps"], sums["r_n"]))
    if "logp_wins" in sums:
        out["logp_accuracy"] = ratio(sums["logp_wins"], sums["ranked"])
    if "wins" in sums:
        out["reward_accuracy"] = ratio(sums["wins"], sums["ranked"])
    if "margin" in sums:
        out["reward_margin"] = ratio(sums["margin"], sums["ranked"])
    elif "c_reward" in sums:
        out["reward_margin"] = ratio(sums["c_reward"], sums["c_n"]) - ratio(sums["r_reward"], sums["r_n"])
    if "kl_sum" in sums:
        out["kl"] = ratio(sums["kl_sum"], sums["kl_tokens"])
    return out
