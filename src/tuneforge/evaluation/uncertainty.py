"""How sure a number is: bootstrap confidence intervals, and paired tests between two models.

Every metric a task reports is computed from sums of per-example columns (its `tally`: correct 0/1,
true/false positives per class, a generation score per answer, a loss sum and a token count ...), through
the task's `summarize`. A bootstrap resample is then a vector of counts w (how often each example was
drawn), and its metrics are summarize(w @ columns): 1,000 resamples of 300 examples are one (1000 × 300)
@ (300 × m) product. This is hand-written rather than scipy.stats.bootstrap because that calls the
statistic once per resample (sklearn's precision_recall_fscore_support: ~1.5 ms each, 4 metrics × 1,000
resamples × every split, slice and baseline = tens of seconds a run; this way: milliseconds) and because
the same weights must resample two models at once for the paired test.

- `intervals`: percentile bootstrap (seeded), `[lo, hi]` per metric.
- `paired`: the difference between two models on the same examples, its interval and a two-sided
  p-value (paired bootstrap, Berg-Kirkpatrick et al. 2012: the resampled differences, shifted to the null,
  that are at least as extreme as the observed one).
- `mcnemar`: the exact McNemar test on per-example correctness (classification), scipy's binomial test.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

Columns = dict[str, np.ndarray]           # name -> (n,) per-example values
Summarize = Callable[[Columns], dict[str, Any]]  # column sums (any leading shape) -> metric values

RESAMPLES = 1000
LEVEL = 0.95
ALPHA = 0.05                  # a paired test below this says "better"/"worse", else "not distinguishable"
CHUNK_CELLS = 2_000_000       # resample weights per chunk (resamples × examples): bounds memory at ~16 MB


def stack(columns: Columns) -> tuple[list[str], np.ndarray]:
    names = sorted(columns)
    return names, np.stack([np.asarray(columns[k], dtype=np.float64) for k in names], axis=1)  # (n, m)


def resample_sums(matrices: list[np.ndarray], resamples: int, seed: int) -> list[np.ndarray]:
    """(resamples, m) column sums of each (n, m) matrix under the same seeded bootstrap draws."""
    n = matrices[0].shape[0]
    rng = np.random.default_rng(seed)
    out: list[list[np.ndarray]] = [[] for _ in matrices]
    per = max(1, CHUNK_CELLS // max(n, 1))
    for start in range(0, resamples, per):
        b = min(per, resamples - start)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)  # (b, n)
        for k, m in enumerate(matrices):
            out[k].append(weights @ m)
    return [np.concatenate(parts) for parts in out]


def _as_columns(names: list[str], sums: np.ndarray) -> Columns:
    return {k: sums[..., j] for j, k in enumerate(names)}


def point(columns: Columns, summarize: Summarize) -> dict[str, float]:
    """The metrics on all examples (scalars only)."""
    names, m = stack(columns)
    return {k: float(v) for k, v in summarize(_as_columns(names, m.sum(0))).items() if np.ndim(v) == 0}


def _bounds(values: np.ndarray, level: float) -> list[float] | None:
    finite = values[np.isfinite(values)]
    if finite.size < 0.9 * values.size or finite.size == 0:  # mostly undefined (e.g. no fact in the resample)
        return None
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return [round(float(lo), 4), round(float(hi), 4)]


def intervals(columns: Columns, summarize: Summarize, metrics: list[str] | None = None,
              resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict[str, list[float]]:
    """metric -> [lo, hi], the percentile bootstrap interval (`metrics`: only these; default all scalars)."""
    names, m = stack(columns)
    if m.shape[0] < 2 or resamples < 1:
        return {}
    (sums,) = resample_sums([m], resamples, seed)
    values = summarize(_as_columns(names, sums))
    out = {}
    for k, v in values.items():
        if (metrics is None or k in metrics) and np.ndim(v) == 1:
            bounds = _bounds(np.asarray(v, dtype=np.float64), level)
            if bounds is not None:
                out[k] = bounds
    return out


def paired(a: Columns, b: Columns, summarize: Summarize, metrics: list[str], resamples: int = RESAMPLES,
           seed: int = 0, level: float = LEVEL) -> dict[str, dict[str, Any]]:
    """metric -> {delta (b − a), ci, p}: model b against model a on the same examples, in the same order."""
    names_a, ma = stack(a)
    names_b, mb = stack(b)
    assert ma.shape[0] == mb.shape[0], (ma.shape, mb.shape)
    if ma.shape[0] < 2 or resamples < 1:
        return {}
    sa, sb = resample_sums([ma, mb], resamples, seed)
    va, vb = summarize(_as_columns(names_a, sa)), summarize(_as_columns(names_b, sb))
    pa, pb = point(a, summarize), point(b, summarize)
    out = {}
    for k in metrics:
        if k not in va or k not in vb or k not in pa or k not in pb or not np.isfinite(pb[k] - pa[k]):
            continue
        delta = pb[k] - pa[k]
        diffs = np.asarray(vb[k], dtype=np.float64) - np.asarray(va[k], dtype=np.float64)
        diffs = diffs[np.isfinite(diffs)]
        if diffs.size == 0:
            continue
        extreme = np.abs(diffs - delta) >= abs(delta) - 1e-12
        p = (extreme.sum() + 1) / (diffs.size + 1)
        out[k] = {"delta": round(delta, 4), "ci": _bounds(diffs, level), "p": round(float(min(p, 1.0)), 4),
                  "test": "paired bootstrap"}
    return out


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """Exact McNemar test: did b get right what a got wrong more often than the reverse?

    `only_a` / `only_b`: examples only a / only b got right; p is the two-sided exact binomial p-value of
    the discordant pairs (no normal approximation: the counts are small on small test sets)."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(min(only_a, only_b), n, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p": round(min(p, 1.0), 6), "test": "McNemar (exact)"}


def verdict(delta: float, p: float, better: str = "max", alpha: float = ALPHA) -> str:
    """'better, p = 0.003' / 'worse, p = 0.01' / 'not distinguishable (p = 0.41)' for b against a."""
    if p >= alpha:
        return f"not distinguishable (p = {p:.2g})"
    up = delta > 0 if better == "max" else delta < 0
    shown = "< 0.001" if p < 0.001 else f"= {p:.2g}"
    return f"{'better' if up else 'worse'}, p {shown}"


def with_intervals(metrics: dict[str, Any], columns: Columns | None, summarize: Summarize, names: list[str],
                   resamples: int, seed: int) -> dict[str, Any]:
    """`metrics` plus "ci": {metric: [lo, hi]} for `names` (what eval.json keeps per split)."""
    if columns is None or resamples < 1:
        return metrics
    ci = intervals(columns, summarize, names, resamples, seed)
    return {**metrics, "ci": ci} if ci else metrics


def compare(a: Columns, b: Columns, summarize: Summarize, names: list[str], directions: dict[str, str],
            resamples: int, seed: int, correct: str | None = None) -> dict[str, Any]:
    """b against a on every metric in `names` (paired bootstrap), plus McNemar on `correct` when the task
    has a per-example correctness column; each with its verdict."""
    out: dict[str, Any] = {"n": int(len(next(iter(a.values())))) if a else 0,
                           "metrics": paired(a, b, summarize, names, resamples, seed)}
    for k, r in out["metrics"].items():
        r["verdict"] = verdict(r["delta"], r["p"], directions.get(k, "max"))
    if correct and correct in a and correct in b:
        m = mcnemar(a[correct], b[correct])
        delta = float(np.mean(b[correct]) - np.mean(a[correct]))
        m["verdict"] = verdict(delta, m["p"], "max")
        out["mcnemar"] = m
    return out
