"""Confidence intervals and paired tests (evaluation/uncertainty.py), on simulated classifiers (numpy, fast)."""
from __future__ import annotations

import numpy as np
import pytest

from tuneforge.evaluation import uncertainty
from tuneforge.evaluation.genmetrics import generation_metrics, generation_summary, generation_tally, example_scores
from tuneforge.evaluation.metrics import classification_summary, classification_tally

LABELS = ["a", "b", "c"]
PRIOR = np.array([0.5, 0.3, 0.2])
# P(predicted = column | true = row): a decent, imperfect 3-class classifier
CONFUSION = np.array([[0.85, 0.10, 0.05],
                      [0.15, 0.75, 0.10],
                      [0.10, 0.20, 0.70]])


def simulate(n: int, rng: np.random.Generator) -> list[dict]:
    y = rng.choice(3, size=n, p=PRIOR)
    p = (rng.random(n)[:, None] > CONFUSION[y].cumsum(1)).sum(1)  # one draw from each row's distribution
    return [{"label": LABELS[t], "predicted": LABELS[q], "probs": dict.fromkeys(LABELS, 0.0)} for t, q in zip(y, p)]


def population() -> dict[str, float]:
    """The simulated classifier's true accuracy and macro F1 (expected counts of an infinite test set)."""
    joint = PRIOR[:, None] * CONFUSION                    # P(true = i, predicted = j)
    tp = np.diag(joint)
    precision, recall = tp / joint.sum(0), tp / joint.sum(1)
    return {"accuracy": float(tp.sum()), "f1_macro": float(np.mean(2 * precision * recall / (precision + recall)))}


def summarize(sums):
    return classification_summary(sums)


def test_summary_matches_sklearn_on_random_predictions() -> None:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    rng = np.random.default_rng(3)
    rows = simulate(150, rng)
    rows += [{"label": "a", "predicted": "d", "probs": {}}]  # a class never true: sklearn counts it with zeros
    labels = LABELS + ["d"]
    got = uncertainty.point(classification_tally(rows, labels), summarize)
    t, p = [labels.index(r["label"]) for r in rows], [labels.index(r["predicted"]) for r in rows]
    assert got["accuracy"] == pytest.approx(accuracy_score(t, p))
    for avg in ("macro", "micro", "weighted"):
        pr, rc, f, _ = precision_recall_fscore_support(t, p, labels=range(4), average=avg, zero_division=0)
        assert (got[f"precision_{avg}"], got[f"recall_{avg}"], got[f"f1_{avg}"]) == pytest.approx((pr, rc, f)), avg


def test_multi_label_summary_matches_sklearn() -> None:
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(4)
    truth = rng.random((80, 3)) < 0.4
    pred = np.where(rng.random((80, 3)) < 0.8, truth, ~truth)
    rows = [{"label": [LABELS[k] for k in range(3) if t[k]], "predicted": [LABELS[k] for k in range(3) if q[k]]}
            for t, q in zip(truth, pred)]
    got = uncertainty.point(classification_tally(rows, LABELS), summarize)
    assert got["accuracy"] == pytest.approx(accuracy_score(truth, pred))  # subset accuracy
    assert got["f1_macro"] == pytest.approx(f1_score(truth, pred, average="macro", zero_division=0))
    assert got["f1_micro"] == pytest.approx(f1_score(truth, pred, average="micro", zero_division=0))


def test_interval_coverage_is_about_95_percent_over_500_seeds() -> None:
    """The 95% interval should contain the classifier's true accuracy (and macro F1) in ~95% of test sets."""
    truth = population()
    hits = {"accuracy": 0, "f1_macro": 0}
    seeds = 500
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        tally = classification_tally(simulate(200, rng), LABELS)
        ci = uncertainty.intervals(tally, summarize, list(hits), resamples=400, seed=seed)
        for k in hits:
            hits[k] += ci[k][0] <= truth[k] <= ci[k][1]
    coverage = {k: v / seeds for k, v in hits.items()}
    print("coverage", coverage)
    # binomial sd of a 95% coverage over 500 seeds is ~1 point; percentile intervals run slightly narrow
    assert 0.915 <= coverage["accuracy"] <= 0.975, coverage
    assert 0.90 <= coverage["f1_macro"] <= 0.975, coverage


def test_intervals_are_seeded_and_contain_the_estimate() -> None:
    tally = classification_tally(simulate(120, np.random.default_rng(0)), LABELS)
    a = uncertainty.intervals(tally, summarize, ["accuracy", "f1_macro"], seed=7)
    b = uncertainty.intervals(tally, summarize, ["accuracy", "f1_macro"], seed=7)
    c = uncertainty.intervals(tally, summarize, ["accuracy", "f1_macro"], seed=8)
    assert a == b and a != c
    est = uncertainty.point(tally, summarize)
    assert a["accuracy"][0] < est["accuracy"] < a["accuracy"][1]
    # a tenfold larger test set gives an interval about sqrt(10) ≈ 3.2x narrower
    big = classification_tally(simulate(1200, np.random.default_rng(1)), LABELS)
    wide = uncertainty.intervals(big, summarize, ["accuracy"], seed=7)["accuracy"]
    assert 2.2 < (a["accuracy"][1] - a["accuracy"][0]) / (wide[1] - wide[0]) < 4.5


def test_mcnemar_matches_the_hand_computed_exact_test() -> None:
    # a right on 2 examples b got wrong, b right on 8 that a got wrong; 30 both right, 10 both wrong.
    a = np.array([1] * 2 + [0] * 8 + [1] * 30 + [0] * 10)
    b = np.array([0] * 2 + [1] * 8 + [1] * 30 + [0] * 10)
    m = uncertainty.mcnemar(a, b)
    # two-sided exact: 2 · P(X ≤ 2), X ~ Binomial(10, 1/2) = 2 · (1 + 10 + 45) / 1024 = 0.109375
    assert (m["only_a"], m["only_b"]) == (2, 8)
    assert m["p"] == pytest.approx(0.109375)
    six = uncertainty.mcnemar(np.zeros(6), np.ones(6))  # 2 · (1/2)^6
    assert six["p"] == pytest.approx(0.03125)
    assert uncertainty.mcnemar(a, a)["p"] == 1.0


def test_paired_bootstrap_tells_a_real_difference_from_none() -> None:
    rng = np.random.default_rng(5)
    rows = simulate(300, rng)
    same = uncertainty.compare(classification_tally(rows, LABELS), classification_tally(rows, LABELS), summarize,
                               ["accuracy"], {"accuracy": "max"}, 500, 0, "correct")
    assert same["metrics"]["accuracy"]["delta"] == 0 and same["metrics"]["accuracy"]["p"] == 1.0
    assert same["mcnemar"]["verdict"].startswith("not distinguishable")
    fixed = [dict(r, predicted=r["label"]) if i % 2 else r for i, r in enumerate(rows)]  # half the errors fixed
    better = uncertainty.compare(classification_tally(rows, LABELS), classification_tally(fixed, LABELS), summarize,
                                 ["accuracy", "f1_macro"], {"accuracy": "max", "f1_macro": "max"}, 500, 0, "correct")
    acc = better["metrics"]["accuracy"]
    assert acc["delta"] > 0 and acc["p"] < 0.01 and acc["verdict"].startswith("better")
    assert acc["ci"][0] > 0
    assert better["mcnemar"]["only_a"] == 0 and better["mcnemar"]["p"] < 0.001


def test_verdict_wording_follows_the_direction() -> None:
    assert uncertainty.verdict(0.02, 0.003) == "better, p = 0.003"
    assert uncertainty.verdict(0.02, 0.0001) == "better, p < 0.001"
    assert uncertainty.verdict(-0.5, 0.01, better="min") == "better, p = 0.01"  # a lower perplexity is better
    assert uncertainty.verdict(0.01, 0.4) == "not distinguishable (p = 0.4)"


def test_generation_tally_reproduces_the_generation_metrics() -> None:
    preds = ["The BK-500 costs €129.", "no idea", "Paris", "warranty is two years"]
    refs = ["The BK-500 costs €129, VAT included.", "Reset with the button.", "paris", "Two years of warranty."]
    facts = ["€129", "button", None, "two years"]
    rows = [{"loss": 2.0, "tokens": 4, **example_scores(p, r, f)} for p, r, f in zip(preds, refs, facts)]
    got = uncertainty.point(generation_tally(rows), generation_summary)
    want = generation_metrics(preds, refs, facts)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-4), k
    assert got["perplexity"] == pytest.approx(np.exp(8.0 / 16))
    ci = uncertainty.intervals(generation_tally(rows), generation_summary, ["rouge_l", "fact_accuracy"], seed=0)
    assert ci["rouge_l"][0] <= got["rouge_l"] <= ci["rouge_l"][1]


def test_a_verdict_without_a_paired_test_names_why_and_claims_nothing() -> None:
    """Base metrics but no comparison (eval.bootstrap: 0, a distributed evaluation): both numbers, tone
    unknown, never "the base was not evaluated"; with the paired test of the rows, its verdict."""
    from tuneforge.evaluation.verdict import paragraph
    from tuneforge.tasks.preference.task import PreferenceTask

    base = {"n": 80, "reward_accuracy": 0.5, "reward_margin": 0.0, "kl": 0.0, "rouge_l": 0.632}
    final = {"n": 80, "reward_accuracy": 0.9625, "reward_margin": 6.71, "kl": 1.57, "rouge_l": 0.444}
    v = paragraph({"base": {"test": base}, "final": {"test": final}}, PreferenceTask)
    assert v["tone"] == "unknown" and "The base model scores 0.500, but without a paired test" in v["text"]
    assert "not evaluated" not in v["text"]
    test = {"delta": 0.4625, "ci": [0.41, 0.51], "p": 0.001, "test": "paired bootstrap", "verdict": "better, p = 0.001"}
    comparisons = {"test": [{"a": "base", "b": "fine-tuned", "n": 80, "metrics": {"reward_accuracy": test}}]}
    v = paragraph({"base": {"test": base}, "final": {"test": final}, "comparisons": comparisons}, PreferenceTask)
    assert v["tone"] == "good" and "against 0.500 for the base model: better, p = 0.001 (paired bootstrap)" in v["text"]
    worse = {**test, "delta": -0.188, "verdict": "worse, p = 0.002"}
    comparisons["test"][0]["metrics"].update(kl={**worse, "delta": 1.57}, rouge_l=worse)  # kl: 0 at the start
    v = paragraph({"base": {"test": base}, "final": {"test": final}, "comparisons": comparisons}, PreferenceTask)
    assert v["tone"] == "mixed" and "worse on rouge_l 0.632 → 0.444 (paired bootstrap)" in v["text"]
    assert "kl" not in v["text"]

