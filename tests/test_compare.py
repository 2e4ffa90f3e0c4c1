"""`tuneforge compare` on a tiny model: rows, table, plots, stratified nested subsets, fresh-process runs."""
from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from helpers_tiny import sentiment_rows, tiny_train_config, write_jsonl, write_config
from tuneforge.cli import main
from tuneforge.recipes.compare import compare, parse_methods, parse_sizes, stratified_order
from tuneforge.config import load_config
from tuneforge.data.records import Record
from tuneforge.errors import TuneforgeError

ROW_KEYS = {"method", "size", "trainable_params", "trainable_pct", "peak_mem_mb", "train_s", "tokens_per_s",
            "metric_name", "metric"}


@pytest.fixture
def tiny_cfg(tiny_bert_dir, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(60))
    test = write_jsonl(tmp_path / "test.jsonl", sentiment_rows(15, seed=1))
    raw = tiny_train_config(tiny_bert_dir, train, tmp_path / "runs", name="tiny", epochs=1, batch_size=8)
    raw["data"]["test"] = str(test)
    return raw


def test_stratified_order_prefixes_are_balanced_and_nested():
    records = [Record({"label": "a" if i < 60 else "b"}, "f", i) for i in range(90)]  # 2:1
    order = stratified_order(records, "label", seed=0)
    assert sorted(order) == list(range(90))
    for n in (9, 30, 60):
        counts = Counter(records[i].fields["label"] for i in order[:n])
        assert abs(counts["a"] - 2 * n / 3) <= 1, (n, counts)
    assert order[:9] == stratified_order(records, "label", seed=0)[:9]  # deterministic, and prefixes nest


def test_compare_writes_rows_table_and_plots(tiny_cfg):
    cfg = load_config(None, base=tiny_cfg)
    rows = compare(cfg, ["full", "lora", "adapter"], [12, 40], isolate=False, min_steps=1)
    root = cfg.run_dir
    saved = json.loads((root / "compare.json").read_text())
    assert saved == json.loads(json.dumps(rows))
    assert [(r["method"], r["size"]) for r in rows] == [(m, n) for n in (12, 40) for m in ("full", "lora", "adapter")]
    for r in rows:
        assert ROW_KEYS <= r.keys() and not r.get("error"), r
        assert r["metric_name"] == "accuracy" and 0 <= r["metric"] <= 1 and r["metric_split"] == "test"
        assert r["train_s"] > 0 and r["tokens_per_s"] > 0 and r["peak_mem_mb"] is not None
        assert (root / "compare" / f"{r['method']}-{r['size']}" / "eval.json").exists()
    by = {(r["method"], r["size"]): r for r in rows}
    assert by["full", 40]["trainable_pct"] == 100.0
    assert by["lora", 40]["trainable_pct"] < 5 and by["adapter", 40]["trainable_pct"] < 5
    # subsets: stratified, nested, and every run shares one validation and one test file
    small = (root / "compare" / "data" / "train-12.jsonl").read_text().splitlines()
    large = (root / "compare" / "data" / "train-40.jsonl").read_text().splitlines()
    assert set(small) <= set(large)
    assert Counter(json.loads(line)["label"] for line in small) == {"negative": 4, "neutral": 4, "positive": 4}
    table = (root / "compare.md").read_text()
    assert "| lora | 40 |" in table and "RSS growth" in table
    assert (root / "compare.png").stat().st_size > 0 and (root / "learning_curve.png").stat().st_size > 0


def test_compare_cli_runs_each_method_in_a_fresh_process(tiny_cfg, tmp_path, capsys):
    tiny_cfg["train"]["max_steps"] = 2  # a fixed budget: no epoch scaling for the small subset
    config = write_config(tmp_path / "tiny.yaml", **tiny_cfg)
    assert main(["compare", str(config), "--methods", "lora", "--sizes", "20"]) == 0
    rows = json.loads((tmp_path / "runs" / "tiny" / "compare.json").read_text())
    assert len(rows) == 1 and rows[0]["memory_measure"].startswith("peak RSS growth (VmHWM")
    assert rows[0]["peak_rss_mb"] >= rows[0]["peak_mem_mb"] >= 0
    assert "| lora | 20 |" in capsys.readouterr().out
    # run again: the finished run with the same config and data is reused, not retrained
    assert main(["compare", str(config), "--methods", "lora", "--sizes", "20"]) == 0
    assert "reusing the finished run" in capsys.readouterr().err
    assert json.loads((tmp_path / "runs" / "tiny" / "compare.json").read_text()) == rows


def test_compare_arguments_are_checked():
    assert parse_sizes("200,50,50") == [50, 200] and parse_sizes("") == []
    assert parse_methods("lora, full,lora") == ["lora", "full"]
    with pytest.raises(TuneforgeError, match="choose from"):
        parse_methods("lora,magic")
    with pytest.raises(TuneforgeError, match="whole numbers"):
        parse_sizes("50,lots")


def test_derived_runs_give_peft_methods_more_steps_and_fewer_validations(tiny_cfg, tmp_path):
    from tuneforge.recipes.compare import EVALS, MIN_STEPS, PEFT_MIN_STEPS, DataPlan, derive

    cfg = load_config(None, base=tiny_cfg)  # batch 8, 1 epoch, no eval_every
    plan = DataPlan({16: tmp_path / "train-16.jsonl"}, None, None, 16)  # 2 steps per epoch
    steps = {}
    for method in ("full", "scratch", "lora", "adapter", "qlora"):
        sub = derive(cfg, method, 16, plan, tmp_path, keep_lr=False)
        steps[method] = sub.train.epochs * 2
        # 20+ tiny epochs: validated EVALS times in all (every eval_every steps), not after every epoch
        assert math.ceil(steps[method] / sub.train.eval_every) == EVALS
    assert steps["full"] == steps["scratch"] == MIN_STEPS
    assert steps["lora"] == steps["adapter"] == steps["qlora"] == PEFT_MIN_STEPS
    fixed = derive(cfg, "lora", 16, plan, tmp_path, keep_lr=False, min_steps=4)  # an explicit floor wins
    assert fixed.train.epochs == 2 and fixed.train.eval_every is None
