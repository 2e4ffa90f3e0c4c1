"""k-fold cross-validation: folds disjoint and covering, stratified, group-aware; the CLI path end to end."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from helpers_tiny import make_tiny_bert, sentiment_rows, tiny_train_config, write_jsonl

from tuneforge.config import load_config
from tuneforge.recipes.crossval import cross_validate, fold_indices, fold_splits, summarize
from tuneforge.data.records import Record
from tuneforge.errors import TuneforgeError


def records(labels: list[str], groups: list[int] | None = None) -> list[Record]:
    return [Record({"text": f"t{i}", "label": y, **({"g": groups[i]} if groups else {})}, "f.jsonl", i + 1)
            for i, y in enumerate(labels)]


def test_folds_disjoint_covering_and_stratified() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 7  # imbalanced, with a small class
    recs = records(labels)
    folds = fold_indices(recs, 5, "label", 0)
    held = [set(h) for _, h in folds]
    assert sum(len(h) for h in held) == len(recs)
    assert set().union(*held) == set(range(len(recs)))
    for (train, h), hs in zip(folds, held):
        assert not set(train) & hs and len(train) + len(h) == len(recs)
        counts = Counter(labels[i] for i in h)
        # Each fold's share of every class is within one record of the even share.
        for label, total in Counter(labels).items():
            assert abs(counts[label] - total / 5) <= 1, (label, counts)
    sizes = [len(h) for h in held]
    assert max(sizes) - min(sizes) <= 1


def test_folds_are_seeded() -> None:
    recs = records(["a", "b"] * 20)
    assert fold_indices(recs, 4, "label", 0) == fold_indices(recs, 4, "label", 0)
    assert fold_indices(recs, 4, "label", 0) != fold_indices(recs, 4, "label", 1)


def test_group_folds_keep_groups_together() -> None:
    groups = [i // 3 for i in range(60)]  # 20 groups of 3
    recs = records(["a", "b", "c"] * 20, groups)
    folds = fold_indices(recs, 4, "label", 0, group="g")
    owner = {}
    for k, (_, held) in enumerate(folds):
        for i in held:
            assert owner.setdefault(groups[i], k) == k  # a group lives in one fold only
    assert sum(len(h) for _, h in folds) == 60


def test_bad_k_is_a_clear_error() -> None:
    with pytest.raises(TuneforgeError, match="at least 2 folds"):
        fold_indices(records(["a", "b"]), 1, "label", 0)
    with pytest.raises(TuneforgeError, match="more folds"):
        fold_indices(records(["a", "b"]), 3, "label", 0)


def test_fold_validation_is_carved_from_the_fold_train_part() -> None:
    recs = records(["a", "b"] * 20)
    cfg = load_config(None, base={"name": "x", "data": {"train": "f.jsonl", "validation": 0.25}})
    train_idx, held_idx = fold_indices(recs, 4, "label", 0)[0]
    splits = fold_splits(recs, train_idx, held_idx, cfg, 1)
    where = {k: {r.line for r in v} for k, v in splits.items()}
    assert where["test"] == {recs[i].line for i in held_idx}
    assert not where["train"] & where["validation"] and not where["train"] & where["test"]
    assert not where["validation"] & where["test"]
    assert len(splits["validation"]) == round(0.25 * len(train_idx))


def test_summary_mean_and_std() -> None:
    folds = [{"metrics": {"held_out": {"accuracy": a, "loss": 1 - a}, "validation": {}}, "diagnosis": "healthy"}
             for a in (0.8, 0.9, 1.0)]
    s = summarize(folds, 3)
    assert s["held_out"]["accuracy"]["mean"] == pytest.approx(0.9)
    assert s["held_out"]["accuracy"]["std"] == pytest.approx(0.1)  # sample std (ddof=1)
    assert s["held_out"]["accuracy"]["text"] == "0.9000 ± 0.1000"
    assert s["diagnosis"] == {"healthy": 3}


@pytest.mark.slow
def test_cross_validate_end_to_end(tmp_path: Path) -> None:
    model = make_tiny_bert(tmp_path / "bert")
    data = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(36))
    base = tiny_train_config(model, data, tmp_path / "runs", name="cvtest", epochs=1)
    base["data"]["test"] = 0.2  # ignored under --cv: the held-out folds are the test sets
    cfg = load_config(None, base=base)
    report = cross_validate(cfg, 3, quiet=True)  # 3 folds of 12: each fold's held-out part is 4 per class
    saved = json.loads((tmp_path / "runs" / "cvtest" / "cv.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(report["summary"]))
    held = [set(f["held_out"]) for f in saved["folds"]]
    assert sum(map(len, held)) == 36 and len(set().union(*held)) == 36
    assert all(f["held_out_labels"] == {"negative": 4, "neutral": 4, "positive": 4} for f in saved["folds"])
    for i in range(1, 4):
        run = tmp_path / "runs" / "cvtest" / "cv" / f"fold-{i}"
        result = json.loads((run / "eval.json").read_text())
        assert result["final"]["test"]["n"] == 12  # the held-out fold, not data.test
    summary = report["summary"]
    assert set(summary["held_out"]["accuracy"]) == {"mean", "std", "text"}
    assert "loss" in summary["held_out"] and "f1_macro" in summary["held_out"]
    with pytest.raises(TuneforgeError, match="--overwrite"):
        cross_validate(cfg, 3, quiet=True)
