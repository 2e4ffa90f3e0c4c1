"""Slices (evaluation/slices.py) and calibration (evaluation/calibration.py): hand-built cases, numpy only."""
from __future__ import annotations

import numpy as np
import pytest

from tuneforge.evaluation import calibration
from tuneforge.evaluation.metrics import classification_summary, classification_tally
from tuneforge.evaluation.slices import buckets, categories, missing_columns, slice_keys, slice_table
from tuneforge.tasks.classification import ClassificationTask

LABELS = ["neg", "neu", "pos"]


def rows_of(n: int, seed: int = 0) -> list[dict]:
    """Predictions that are right 90% of the time except on "neu" (50%), with lengths and two source files."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = LABELS[i % 3]
        right = rng.random() < (0.5 if label == "neu" else 0.95)
        out.append({"where": f"{'a' if i % 2 else 'b'}.jsonl:{i + 1}", "length": int(rng.integers(4, 60)),
                    "label": label, "predicted": label if right else LABELS[(i + 1) % 3],
                    "probs": dict.fromkeys(LABELS, 0.0)})
    return out


def test_slices_sum_back_to_the_whole() -> None:
    rows = rows_of(300)
    fields = {r["where"]: {"shop": ["north", "south", None][i % 3]} for i, r in enumerate(rows)}
    keys = slice_keys(rows, ClassificationTask.auto_slices(rows), fields, ["shop"])
    assert set(keys) == {"true label", "input length", "source file", "shop"}
    tally = classification_tally(rows, LABELS)
    table = slice_table(tally, classification_summary, keys, ["accuracy", "f1_macro"], "accuracy", "max", 200, 0)
    total_right = int(tally["correct"].sum())
    for name in keys:
        part = [e for e in table["slices"] if e["slice"] == name]
        assert sum(e["n"] for e in part) == len(rows), name
        # each slice's accuracy times its size is its count of right answers: they add up to the whole's
        assert round(sum(e["metrics"]["accuracy"] * e["n"] for e in part)) == total_right, name
    shops = {e["value"] for e in table["slices"] if e["slice"] == "shop"}
    assert shops == {"north", "south", "(missing)"}
    assert table["overall"] == pytest.approx(total_right / len(rows), abs=1e-4)


def test_the_weak_slice_is_flagged_and_the_noise_is_not() -> None:
    rows = rows_of(300)
    keys = slice_keys(rows, ClassificationTask.auto_slices(rows), {}, [])
    table = slice_table(classification_tally(rows, LABELS), classification_summary, keys, ["accuracy"], "accuracy",
                        "max", 500, 0)
    assert table["weak"] == ["true label = neu"]
    neu = next(e for e in table["slices"] if e["value"] == "neu")
    assert neu["ci"]["accuracy"][1] < table["overall"]
    assert not any(e.get("weak") for e in table["slices"] if e["slice"] == "source file")


def test_length_buckets_and_categories() -> None:
    names = buckets(list(range(1, 31)), "tokens")
    assert len(set(names)) == 3 and names[0] == "≤ 10 tokens" and names[-1] == "> 20 tokens"
    assert names[15] == "11–20 tokens"
    assert set(buckets([7] * 10)) == {"≤ 7"}  # a single value: one bucket, dropped by slice_keys
    many = categories([f"v{i % 20}" for i in range(200)])
    assert len(set(many)) == 13 and "(other)" in many  # the 12 most frequent kept
    assert len(set(categories(list(range(100))))) == 3  # numbers with many values are bucketed


def test_a_slice_column_no_record_has_is_named() -> None:
    class R:
        def __init__(self, fields: dict) -> None:
            self.fields = fields

    records = [R({"text": "x", "label": "a", "shop": "n"})]
    assert missing_columns(["shop"], records) == ""
    problem = missing_columns(["region"], records)
    assert "'region'" in problem and "label, shop, text" in problem and "eval.slices" in problem


def test_ece_on_a_hand_built_case() -> None:
    # 10 predictions: 4 at confidence 0.9 (3 right), 6 at confidence 0.6 (3 right), 15 bins.
    conf = np.array([0.9] * 4 + [0.6] * 6)
    right = np.array([1, 1, 1, 0] + [1, 1, 1, 0, 0, 0], dtype=float)
    # bins: 0.9 → |0.75 − 0.9| = 0.15 on 4/10; 0.6 → |0.5 − 0.6| = 0.10 on 6/10  ⇒  0.06 + 0.06 = 0.12
    assert calibration.ece(conf, right) == pytest.approx(0.12)
    bins = calibration.reliability(conf, right)
    assert [(b["n"], b["accuracy"], b["confidence"]) for b in bins] == [(6, 0.5, 0.6), (4, 0.75, 0.9)]
    assert calibration.ece(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0


def test_temperature_scaling_recovers_an_overconfident_models_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, size=(3000, 3))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = (rng.random(3000)[:, None] > p.cumsum(1)).sum(1)
    truth = np.eye(3)[y]
    scores = calibration.Scores(LABELS, truth, true_logits * 2.5)  # the model is 2.5x too sure
    t = calibration.fit_temperature(scores)
    assert t == pytest.approx(2.5, rel=0.08)
    rep = calibration.report(scores, t)
    assert rep["calibrated"]["ece"] < rep["ece"] / 2 and rep["calibrated"]["nll"] < rep["nll"]
    assert (scores.probs(t).argmax(1) == scores.probs().argmax(1)).all()  # never changes the predicted class


def test_multi_label_calibration_counts_every_label_decision() -> None:
    truth = np.array([[1, 0], [0, 1], [1, 1]], dtype=float)
    scores = calibration.Scores(["x", "y"], truth, np.array([[3.0, -3.0], [-3.0, 3.0], [3.0, 3.0]]), multi_label=True)
    conf, right = scores.confidence()
    assert len(conf) == 6 and right.tolist() == truth.ravel().tolist()
    assert calibration.report(scores)["unit"] == "label decisions"
