"""Generation metrics for instruction runs: exact match, token F1, ROUGE-L and fact accuracy.

Exact match and token F1 use SQuAD-style normalization (lowercase, no punctuation, no articles,
single spaces) so that "Paris." and "paris" agree. ROUGE-L comes from the `rouge-score` package (F-measure,
Porter stemming). `fact_accuracy` is the fraction of answers that contain the record's `fact` string
(case-insensitive) — the metric that says whether the model learned what it was taught.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from functools import lru_cache
from typing import Any, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lowercase, drop punctuation and English articles, squeeze whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall (bag of normalized words)."""
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


def contains_fact(prediction: str, fact: str) -> bool:
    return fact.strip().lower() in prediction.lower()


def generation_metrics(predictions: Sequence[str], references: Sequence[str],
                       facts: Sequence[str | None] | None = None) -> dict[str, float]:
    """Mean of each metric over the examples; `fact_accuracy` only over examples that carry a fact."""
    assert len(predictions) == len(references), (len(predictions), len(references))
    n = max(len(predictions), 1)
    out = {
        "exact_match": sum(map(exact_match, predictions, references)) / n,
        "token_f1": sum(map(token_f1, predictions, references)) / n,
        "rouge_l": sum(map(rouge_l, predictions, references)) / n,
    }
    pairs = [(p, f) for p, f in zip(predictions, facts or []) if f]
    if pairs:
        out["fact_accuracy"] = sum(contains_fact(p, f) for p, f in pairs) / len(pairs)
    return out


GENERATION_SCORES = ("exact_match", "token_f1", "rouge_l")


def example_scores(prediction: str, reference: str, fact: str | None) -> dict[str, Any]:
    """One answer's scores (a row of predictions/<split>.jsonl): generation_metrics averages these."""
    out: dict[str, Any] = {"exact_match": exact_match(prediction, reference),
                           "token_f1": round(token_f1(prediction, reference), 4),
                           "rouge_l": round(rouge_l(prediction, reference), 4)}
    if fact:
        out["fact_hit"] = float(contains_fact(prediction, fact))
    return out


def generation_tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-example columns for the bootstrap: each score where generated, fact hits, loss sums and tokens."""
    import numpy as np

    gen = [r for r in rows if "rouge_l" in r]
    cols = {"n": np.ones(len(rows)), "generated": np.array([float("rouge_l" in r) for r in rows]),
            "fact_n": np.array([float("fact_hit" in r) for r in rows]),
            "fact_hit": np.array([float(r.get("fact_hit", 0.0)) for r in rows]),
            "loss": np.array([float(r.get("loss", 0.0)) for r in rows]),
            "tokens": np.array([float(r.get("tokens", 0)) for r in rows])}
    if gen:
        cols.update({k: np.array([float(r.get(k, 0.0)) for r in rows]) for k in GENERATION_SCORES})
    return cols


def ratio(num: Any, den: Any) -> Any:
    """num / den of column sums (any leading resample axis), NaN where den is 0 (a resample without any)."""
    import numpy as np

    den = np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.full(den.shape, np.nan), where=den > 0)


def generation_summary(sums: dict[str, Any]) -> dict[str, Any]:
    """Means of the scores over generated answers, fact accuracy over answers with a fact, perplexity."""
    import numpy as np

    out: dict[str, Any] = {k: ratio(sums[k], sums["generated"]) for k in GENERATION_SCORES if k in sums}
    if np.any(np.asarray(sums["fact_n"]) > 0):
        out["fact_accuracy"] = ratio(sums["fact_hit"], sums["fact_n"])
    if np.any(np.asarray(sums["tokens"]) > 0):
        out["perplexity"] = np.exp(np.minimum(ratio(sums["loss"], sums["tokens"]), 50.0))
    return out
