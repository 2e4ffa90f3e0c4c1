"""task: regression (tasks/regression.py): metrics against hand-computed values, target parsing, and a tiny-BERT
run through the CLI (in-process) that learns a continuous target; its predict, eval and export in the
target's own units, and early stopping on val_mae (mode auto: min)."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from helpers_tiny import make_tiny_bert, tiny_train_config, write_config, write_jsonl

from tuneforge import cli
from tuneforge.data.records import Record
from tuneforge.errors import DataError
from tuneforge.tasks import task_class
from tuneforge.tasks.regression import RegressionTask, regression_metrics, target_value
from tuneforge.training.validation import metric_mode

LEVELS = {1: ["awful", "terrible"], 2: ["poor", "weak"], 3: ["okay", "average"], 4: ["good", "nice"],
          5: ["superb", "excellent"]}
FILLER = ["the", "kettle", "was", "very", "it", "is", "lamp", "really"]


def rated_rows(n: int, seed: int) -> list[dict]:
    """Texts whose words say the level (1-5); the target is 100 + 10·level + noise: continuous (every
    value distinct, so nothing can be stratified by it) and far from 0, so only a model that undoes the
    standardisation predicts it in the right place."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        level = i % 5 + 1
        words = [rng.choice(LEVELS[level]), rng.choice(LEVELS[level])] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "hours": round(100 + 10 * level + rng.uniform(-1, 1), 3)})
    return rows


# ------------------------------------------------------------------ metrics and targets

def test_metrics_match_hand_computed_values() -> None:
    # errors 0.5, 0, -1, 1: MAE 2.5/4; MSE 2.25/4 → RMSE 0.75; R² = 1 - 2.25/5 (SS_tot around 2.5);
    # Spearman: ranks (1, 2, 3, 4) vs (1, 2.5, 2.5, 4): Pearson 4.5 / sqrt(5 · 4.5) = sqrt(0.9)
    m = regression_metrics([1, 2, 3, 4], [1.5, 2, 2, 5])
    assert m["mae"] == pytest.approx(0.625) and m["rmse"] == pytest.approx(0.75)
    assert m["r2"] == pytest.approx(0.55) and m["spearman"] == pytest.approx(math.sqrt(0.9))
    assert m["n"] == 4
    perfect = regression_metrics([3, 1, 2], [30, 10, 20])  # ranks agree although the values are far off
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["r2"] < -50


def test_undefined_metrics_are_zero_not_nan() -> None:
    """Constant predictions rank nothing, one example has no variance: 0.0 (scikit-learn's R² convention),
    never a NaN that would break early stopping and eval.json."""
    flat = regression_metrics([1, 2, 3], [2, 2, 2])
    assert flat["spearman"] == 0.0 and flat["r2"] == pytest.approx(0.0) and flat["mae"] == pytest.approx(2 / 3)
    one = regression_metrics([4.0], [3.5])
    assert one["r2"] == 0.0 and one["spearman"] == 0.0 and one["mae"] == pytest.approx(0.5)


@pytest.mark.parametrize("value, number", [(4, 4.0), (4.5, 4.5), ("4.5", 4.5), (" 3 ", 3.0), (-2, -2.0), ("1e3", 1000.0)])
def test_targets_are_numbers_or_text_that_reads_as_one(value: object, number: float) -> None:
    assert target_value(Record({"y": value}, "f.csv", 7), "y") == number


@pytest.mark.parametrize("value, says", [("five", "is not a number"), (float("nan"), "not a finite number"),
                                         ("inf", "not a finite number"), (10 ** 400, "not a finite number"),
                                         (True, "is a boolean"), (None, "null label"), ("", "empty label"),
                                         ([1, 2], "is a list")])
def test_bad_targets_name_the_line(value: object, says: str) -> None:
    with pytest.raises(DataError) as e:
        target_value(Record({"y": value}, "f.jsonl", 7), "y")
    assert str(e.value).startswith("f.jsonl:7: ") and says in str(e.value)


def test_registered_and_early_stopping_directions() -> None:
    assert task_class("regression") is RegressionTask
    assert metric_mode("val_mae", "auto", RegressionTask.metrics) == "min"
    assert metric_mode("val_rmse", "auto", RegressionTask.metrics) == "min"
    assert metric_mode("val_r2", "auto", RegressionTask.metrics) == "max"
    assert metric_mode("val_spearman", "auto", RegressionTask.metrics) == "max"
    assert RegressionTask.stratify_column(None) is None  # a continuous target has no strata  # type: ignore[arg-type]


# ------------------------------------------------------------------ end to end on a tiny BERT

@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One full fine-tuning run of a tiny random BERT on the synthetic target, through the CLI."""
    tmp = tmp_path_factory.mktemp("regression")
    model = make_tiny_bert(tmp / "bert")
    train = write_jsonl(tmp / "train.jsonl", rated_rows(200, 0))
    test = write_jsonl(tmp / "test.jsonl", rated_rows(40, 1))
    cfg = tiny_train_config(model, train, tmp / "runs", name="reg", epochs=8, batch_size=8, lr=2e-3, log_every=5,
                            early_stopping={"metric": "val_mae", "patience": 3})
    cfg.update(task="regression", eval={"base": True, "batch_size": 32})
    cfg["data"].update(label="hours", test=str(test))
    assert cli.main(["train", str(write_config(tmp / "c.yaml", **cfg)), "--quiet"]) == 0
    run = tmp / "runs" / "reg"
    return {"run": run, "test": test, "eval": json.loads((run / "eval.json").read_text()), "model": model, "tmp": tmp}


def test_learns_the_target_and_beats_the_base_model(trained: dict) -> None:
    ev = trained["eval"]
    base, final = ev["base"]["test"], ev["final"]["test"]
    assert set(RegressionTask.headline) <= set(final) and set(RegressionTask.headline) <= set(base)
    assert base["r2"] < 0.2 and final["r2"] > 0.9 and final["r2"] > base["r2"] + 0.7
    assert final["mae"] < 3 < base["mae"]  # hours; the levels are 10 apart
    assert final["spearman"] > 0.9
    # The loss is the MSE of the standardised target: ~1 is what predicting the training mean scores.
    assert 0.8 < base["loss"] < 1.5 and final["loss"] < 0.1
    assert ev["diagnosis"]["label"] == "healthy", ev["diagnosis"]
    html = (trained["run"] / "report.html").read_text()
    assert all(f"<th>{k}</th>" in html for k in RegressionTask.headline)
    meta = json.loads((trained["run"] / "model" / "tuneforge.json").read_text())
    assert meta["task"] == "regression" and 125 < meta["target_mean"] < 135 and 10 < meta["target_std"] < 18


def test_early_stopping_on_val_mae_keeps_the_lowest(trained: dict) -> None:
    t, history = trained["eval"]["training"], trained["eval"]["history"]
    assert len(history) >= 3 and all("val_mae" in h for h in history)
    assert t["best_metric"] == pytest.approx(min(h["val_mae"] for h in history))  # mode auto → min


def test_predict_answers_in_the_targets_units(trained: dict, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli.main(["predict", str(trained["run"]), "--text", "superb excellent the kettle",
                     "--text", "awful terrible the lamp"]) == 0
    high, low = [json.loads(line)["value"] for line in capsys.readouterr().out.splitlines()]
    assert 140 < high < 160 and 100 < low < 120


def test_eval_reproduces_the_final_test_metrics(trained: dict, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli.main(["eval", str(trained["run"]), "--data", str(trained["test"]), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    final = trained["eval"]["final"]["test"]
    for k in (*RegressionTask.headline, "loss"):
        assert metrics[k] == pytest.approx(final[k], abs=1e-4), k


def test_lora_run_saves_the_head_and_exports_plain_transformers(trained: dict) -> None:
    """An adapter run rebuilds from its base + adapter (the head trained fully as modules_to_save), and
    `export --merge` gives a model plain transformers loads, with the standardisation in its config.json."""
    tmp = trained["tmp"]
    cfg = tiny_train_config(trained["model"], tmp / "train.jsonl", tmp / "runs", name="reg-lora", epochs=2,
                            batch_size=16)
    cfg.update(task="regression", method={"name": "lora", "r": 4, "alpha": 8})
    cfg["data"].update(label="hours", test=str(trained["test"]))
    assert cli.main(["train", str(write_config(tmp / "lora.yaml", **cfg)), "--quiet"]) == 0
    run = tmp / "runs" / "reg-lora"
    final = json.loads((run / "eval.json").read_text())["final"]["test"]
    from tuneforge.recipes.export import export_run
    from tuneforge.recipes.inference import evaluate_run

    assert evaluate_run(run, str(trained["test"]))["mae"] == pytest.approx(final["mae"], abs=1e-4)
    info = export_run(run, tmp / "exported", merge=True)
    assert info.max_abs_diff is not None and info.max_abs_diff < 1e-3
    target = json.loads((tmp / "exported" / "config.json").read_text())["tuneforge_target"]
    assert target["column"] == "hours" and target["std"] > 0
