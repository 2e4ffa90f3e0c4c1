"""Extraction end to end on tiny random models (seconds): `tuneforge train` of a token_classification run
(spans and BIO files), predict with spans and offsets, eval, compare; an instruction run with data.schema."""
from __future__ import annotations

import html
import json
import random
from pathlib import Path

import pytest

from helpers_tiny import make_tiny_bert, make_tiny_llama, write_config, write_jsonl

PRODUCTS = ["Aurora kettle", "Cirrus", "Copper Rim mug", "descaling kit"]


def ticket(rng: random.Random, i: int) -> dict:
    """A short ticket with an ORDER_ID and a PRODUCT, and the same as tokens + BIO tags."""
    order, product = f"BK-{rng.randint(10000, 99999)}", rng.choice(PRODUCTS)
    head = rng.choice(["my order", "order", "about order"])
    text = f"{head} {order} : the {product} is broken"
    start = len(head) + 1
    p = text.index(product)
    spans = [{"start": start, "end": start + len(order), "label": "ORDER_ID"},
             {"start": p, "end": p + len(product), "label": "PRODUCT"}]
    tokens = head.split() + [order, ":", "the"] + product.split() + ["is", "broken"]
    tags = ["O"] * len(head.split()) + ["B-ORDER_ID", "O", "O", "B-PRODUCT"] + \
        ["I-PRODUCT"] * (len(product.split()) - 1) + ["O", "O"]
    return {"id": i, "text": text, "spans": spans, "tokens": tokens, "tags": tags}


@pytest.fixture(scope="module")
def token_run(tmp_path_factory):
    from tuneforge.cli import main

    root = tmp_path_factory.mktemp("tokens")
    rng = random.Random(0)
    rows = [ticket(rng, i) for i in range(60)]
    write_jsonl(root / "train.jsonl", [{k: r[k] for k in ("id", "text", "spans")} for r in rows[:48]])
    write_jsonl(root / "test.jsonl", [{k: r[k] for k in ("id", "text", "spans")} for r in rows[48:]])
    write_jsonl(root / "test_bio.jsonl", [{k: r[k] for k in ("id", "tokens", "tags")} for r in rows[48:]])
    cfg = write_config(root / "cfg.yaml", name="tok", task="token_classification",
                       model=str(make_tiny_bert(root / "bert")), output_dir=str(root / "runs"),
                       method={"name": "full"},
                       data={"train": str(root / "train.jsonl"), "test": str(root / "test.jsonl"),
                             "validation": 0.2, "max_length": 32},
                       privacy={"pii": "redact"}, leakage={"policy": "warn"}, forgetting={"reference": "builtin",
                                                                                          "samples": 8},
                       eval={"batch_size": 16},
                       train={"epochs": 4, "batch_size": 8, "lr": 3e-3, "precision": "fp32", "threads": 1,
                              "log_every": 1, "warmup": 0.0})
    assert main(["train", str(cfg), "--quiet"]) == 0
    return root


def test_token_run_reports_entity_metrics_base_and_fine_tuned(token_run):
    run = token_run / "runs" / "tok"
    ev = json.loads((run / "eval.json").read_text())
    for stage in ("base", "final"):
        test = ev[stage]["test"]
        assert {"entity_f1_micro", "entity_precision_micro", "entity_recall_micro", "entity_f1_macro",
                "token_accuracy", "per_type", "type_confusion", "mistakes"} <= set(test)
        assert set(test["per_type"]) == {"ORDER_ID", "PRODUCT"} and test["entities"] == 24
    assert ev["final"]["test"]["loss"] < ev["base"]["test"]["loss"]
    assert ev["forgetting"]["metric"] == "embedding_geometry"
    assert "type_confusion_test.png" in ev["plots"]
    meta = json.loads((run / "model" / "tuneforge.json").read_text())
    assert meta["types"] == ["ORDER_ID", "PRODUCT"] and meta["tags"][0] == "O"
    audit = json.loads((run / "data_audit.json").read_text())
    assert "extraction data" in audit["pii"]["sensitive"]
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "Per type (test)" in page and "<th>ORDER_ID</th>" not in page  # types are rows, metrics columns
    assert ("Mistakes: gold and predicted spans" in page) == bool(ev["final"]["test"]["mistakes"])


def test_predict_prints_spans_with_offsets(token_run, capsys):
    from tuneforge.cli import main

    run = token_run / "runs" / "tok"
    text = "order BK-12345 : the Cirrus is broken"
    assert main(["predict", str(run), "--text", text]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["text"] == text and isinstance(row["spans"], list)
    for span in row["spans"]:
        assert text[span["start"]:span["end"]] == span["text"] and span["label"] in ("ORDER_ID", "PRODUCT")
        assert 0 < span["score"] <= 1
    assert main(["predict", str(run), "--data", str(token_run / "test_bio.jsonl")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    tokens = [json.loads(line)["tokens"] for line in (token_run / "test_bio.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(len(r["tags"]) == len(t) for r, t in zip(rows, tokens))


def test_eval_reads_spans_and_bio_files_alike(token_run):
    from tuneforge.recipes.inference import evaluate_run

    run = token_run / "runs" / "tok"
    spans = evaluate_run(run, str(token_run / "test.jsonl"))
    bio = evaluate_run(run, str(token_run / "test_bio.jsonl"))
    assert spans["entities"] == bio["entities"] == 24
    assert spans["entity_f1_micro"] == pytest.approx(bio["entity_f1_micro"])


def test_compare_ranks_token_runs_by_entity_f1(token_run):
    from tuneforge.config import load_config
    from tuneforge.recipes.compare import compare

    cfg = load_config(token_run / "cfg.yaml", ["name=cmp", "forgetting.reference=null", "train.epochs=1"])
    rows = compare(cfg, ["full", "lora"], [], isolate=False, min_steps=2)
    assert [r["method"] for r in rows] == ["full", "lora"] and not any(r.get("error") for r in rows)
    assert all(r["metric_name"] == "entity_f1_micro" and isinstance(r["metric"], float) for r in rows)
    assert "entity_f1_micro" in (cfg.run_dir / "compare.md").read_text()
    from tuneforge.recipes.export import export_command

    lora = Path(rows[1]["run_dir"])  # merged LoRA reloads in plain transformers' AutoModelForTokenClassification
    assert export_command(lora, None, merge=True) == 0
    assert json.loads((lora / "export" / "tuneforge.json").read_text())["merged_from"] == "lora"


@pytest.mark.parametrize("name", ["full", "lora", "dora", "qlora", "adapter", "freeze", "scratch"])
def test_every_method_trains_and_reloads_a_token_classifier(tmp_path_factory, name):
    import torch

    from tuneforge.config import load_config
    from tuneforge.data.records import Record
    from tuneforge.methods import get_method
    from tuneforge.models import loading
    from tuneforge.tasks import task_class

    root = tmp_path_factory.getbasetemp() / "tiny-token-bert"
    model_dir = root if (root / "config.json").exists() else make_tiny_bert(root)
    cfg = load_config(None, base={"name": "m", "task": "token_classification", "model": str(model_dir),
                                  "method": {"name": name, "layers": 1}, "data": {"train": "x"}})
    source = loading.resolve(str(model_dir))
    rows = [ticket(random.Random(i), i) for i in range(4)]
    records = [Record({"text": r["text"], "spans": r["spans"]}, "t.jsonl", i + 1) for i, r in enumerate(rows)]
    task = task_class("token_classification").from_config(cfg, loading.load_tokenizer(source), records)
    method = get_method(name)
    model = method.apply(task.load_model(cfg, source, method), cfg.method, task)
    batch = task.collate(task.encode(records), [0, 1, 2, 3], torch.device("cpu"))
    task.loss(model, batch).backward()
    grads = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None and p.grad.abs().sum()]
    assert any("classifier" in n for n in grads), name  # the head always trains
    model.eval()
    with torch.no_grad():
        before = task.logits(model, batch)
    out = tmp_path_factory.mktemp(name)
    method.save(model, out)
    again = method.load(task.load_model(cfg, loading.ModelSource("run", out) if method.saves_full_model
                                        else source, method), out)
    again.eval()
    with torch.no_grad():
        assert torch.allclose(task.logits(again, batch), before, atol=1e-4), name


def test_a_scratch_run_predicts_with_its_trained_weights(token_run):
    """load_run builds a scratch model from its config (fresh weights), then loads what training saved."""
    from tuneforge.config import load_config
    from tuneforge.recipes.inference import evaluate_run
    from tuneforge.recipes.train import train

    cfg = load_config(token_run / "cfg.yaml", ["name=scratch", "method.name=scratch", "train.epochs=1",
                                               "forgetting.reference=null"])
    final = train(cfg, quiet=True).eval["final"]["test"]
    again = evaluate_run(cfg.run_dir, str(token_run / "test.jsonl"))
    assert again["loss"] == pytest.approx(final["loss"], rel=1e-5)


def test_bad_token_data_is_one_line(tmp_path, capsys):
    from tuneforge.cli import main

    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "order BK-1", "spans": [{"start": 6, "end": 99,
                                                                                    "label": "ORDER_ID"}]}])
    cfg = write_config(tmp_path / "c.yaml", name="bad", task="token_classification", output_dir=str(tmp_path),
                       data={"train": str(train), "validation": None})
    assert main(["train", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {train}:1: span 6-99 (ORDER_ID) lies outside the text")
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- instruction with a JSON Schema

def test_instruction_run_with_a_schema_scores_json_and_shows_invalid_answers(tmp_path, capsys):
    from tuneforge.cli import main

    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"code": {"type": "string"}},
                                  "required": ["code"]}), encoding="utf-8")
    rows = [{"instruction": f"Code of E{i}?", "output": json.dumps({"code": f"E{i}"})} for i in range(12)]
    write_jsonl(tmp_path / "train.jsonl", rows[:9])
    write_jsonl(tmp_path / "test.jsonl", rows[9:])
    cfg = write_config(tmp_path / "c.yaml", name="js", task="instruction", model=str(make_tiny_llama(tmp_path / "m")),
                       output_dir=str(tmp_path / "runs"), method={"name": "lora", "r": 2, "alpha": 4},
                       data={"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl"),
                             "validation": None, "max_length": 48, "schema": "schema.json"},
                       privacy={"pii": "off"}, leakage={"policy": "warn"}, forgetting={"reference": None},
                       eval={"max_new_tokens": 4, "batch_size": 8},
                       train={"epochs": 1, "batch_size": 4, "precision": "fp32", "threads": 1})
    assert main(["train", str(cfg), "--quiet"]) == 0  # data.schema is relative to the config file
    ev = json.loads((tmp_path / "runs" / "js" / "eval.json").read_text())
    for stage in ("base", "final"):
        test = ev[stage]["test"]
        assert {"json_validity", "schema_validity", "field_exact_match", "field_f1", "per_field"} <= set(test)
        # a random 2-layer model writes no JSON: every answer is listed with its reason
        assert test["json_validity"] == 0.0 and len(test["invalid_outputs"]) == 3
        assert test["invalid_outputs"][0]["error"].startswith(("not JSON", "empty answer"))
    meta = json.loads((tmp_path / "runs" / "js" / "model" / "tuneforge.json").read_text())
    assert meta["schema"]["required"] == ["code"]
    page = (tmp_path / "runs" / "js" / "report.html").read_text(encoding="utf-8")
    assert "Invalid outputs" in page and "Per field (test)" in page
    assert html.escape(test["invalid_outputs"][0]["error"][:40]) in page  # each invalid answer, with why
    # `tuneforge eval` scores JSON answers with the schema saved in the run, without the file
    schema.unlink()
    capsys.readouterr()  # the training summary
    assert main(["eval", str(tmp_path / "runs" / "js"), "--data", str(tmp_path / "test.jsonl"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["json_validity"] == test["json_validity"] and again["field_f1"] == test["field_f1"]
    assert len(again["invalid_outputs"]) == 3


def test_missing_schema_file_is_one_line(tmp_path, capsys):
    from tuneforge.cli import main

    write_jsonl(tmp_path / "train.jsonl", [{"instruction": "q", "output": "{}"}] * 4)
    cfg = write_config(tmp_path / "c.yaml", name="js", task="instruction", model=str(make_tiny_llama(tmp_path / "m")),
                       output_dir=str(tmp_path / "runs"), data={"train": str(tmp_path / "train.jsonl"),
                                                                 "validation": None, "schema": "nope.json"},
                       privacy={"pii": "off"}, leakage={"policy": "warn"})
    assert main(["train", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`data.schema`: schema file nope.json not found" in err[0]
    assert not (tmp_path / "runs" / "js").exists()
