"""Canaries: secrets planted in training data with `pii: redact` appear nowhere in the run directory
(every file, binary included: checkpoints, TensorBoard events, tokenizer, logs) and are never generated."""
from __future__ import annotations

from pathlib import Path

from helpers_tiny import make_tiny_bert, make_tiny_llama, sentiment_rows, tiny_train_config, write_config, write_jsonl

from tuneforge import cli

CANARIES = ["carol.canary@example.org", "4111 1111 1111 1111", "AKIAIOSFODNN7CANARY1", "GB82 WEST 1234 5698 7654 32",
            "+44 20 7946 0958"]


def _plant(rows: list[dict], key: str) -> list[dict]:
    for i, row in enumerate(rows[:len(CANARIES) * 3]):
        row[key] = f"{row[key]} contact {CANARIES[i % len(CANARIES)]} now"
    return rows


def _raw_hits(run: Path) -> list[str]:
    hits = []
    for path in run.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(run)}: {c}" for c in CANARIES if c.encode() in data]
    return hits


def test_classification_run_holds_no_canary(tmp_path: Path) -> None:
    model = make_tiny_bert(tmp_path / "bert")
    train = write_jsonl(tmp_path / "train.jsonl", _plant(sentiment_rows(40), "text"))
    cfg = tiny_train_config(model, train, tmp_path / "runs", name="canary", checkpoint_every=2)
    cfg["privacy"] = {"pii": "redact"}
    assert cli.main(["train", str(write_config(tmp_path / "c.yaml", **cfg)), "--quiet"]) == 0
    run = tmp_path / "runs" / "canary"
    assert (run / "eval.json").exists() and any((run / "checkpoints").iterdir())
    assert _raw_hits(run) == []
    audit = (run / "data_audit.json").read_text()
    assert '"EMAIL"' in audit and '"CREDIT_CARD"' in audit  # found and counted, never stored raw
    card = (run / "model" / "README.md").read_text()  # the model card tells the vetting story, by type only
    vetting = card.split("## Data vetting")[1].split("\n## ")[0]
    assert all(w in vetting for w in ("`privacy.pii: redact`", "EMAIL", "CREDIT_CARD", "redacted"))


def test_instruction_run_never_learns_or_emits_a_canary(tmp_path: Path, capsys) -> None:
    model = make_tiny_llama(tmp_path / "llama")
    rows = [{"instruction": f"Question {i}: how do I reach support?", "output": f"Write to us, ticket {i}."}
            for i in range(30)]
    train = write_jsonl(tmp_path / "train.jsonl", _plant(rows, "output"))
    # The test split's references carry canaries too: eval.json keeps sample references, so without
    # redaction they would land in the run directory and this test would fail.
    test = write_jsonl(tmp_path / "test.jsonl", _plant([{"instruction": f"Where is ticket {i}?",
                                                         "output": f"Ticket {i} is open."} for i in range(15)],
                                                       "output"))
    cfg = tiny_train_config(model, train, tmp_path / "runs", name="canary-lm")
    cfg.update(task="instruction", privacy={"pii": "redact"}, method={"name": "full"},
               eval={"base": False, "batch_size": 8, "max_new_tokens": 16, "samples": 15})
    cfg["data"] = {"train": str(train), "validation": 0.2, "test": str(test), "max_length": 64}
    assert cli.main(["train", str(write_config(tmp_path / "c.yaml", **cfg)), "--quiet"]) == 0
    run = tmp_path / "runs" / "canary-lm"
    assert _raw_hits(run) == []
    capsys.readouterr()
    assert cli.main(["predict", str(run), "--prompt", "Question 3: how do I reach support? contact"]) == 0
    out = capsys.readouterr().out
    assert out and not any(c in out for c in CANARIES)


def test_instruction_fact_column_is_redacted_everywhere(tmp_path: Path) -> None:
    """`fact` reaches eval.json (samples) and fact_accuracy: it is scanned and redacted like the response,
    with the same per-record placeholder, so the fact still matches the redacted answer."""
    model = make_tiny_llama(tmp_path / "llama")
    card = "4111 1111 1111 1111"
    rows = [{"instruction": f"Which card is on file for order {i}?", "output": f"The card {card} is on file.",
             "fact": card} for i in range(24)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    test = write_jsonl(tmp_path / "test.jsonl", [{"instruction": f"Card for ticket {i}?", "output": f"Card {card}.",
                                                   "fact": card} for i in range(6)])
    cfg = tiny_train_config(model, train, tmp_path / "runs", name="fact")
    cfg.update(task="instruction", privacy={"pii": "redact"}, method={"name": "full"},
               leakage={"policy": "warn"},
               eval={"base": False, "batch_size": 8, "max_new_tokens": 4, "samples": 6})
    cfg["data"] = {"train": str(train), "validation": 0.2, "test": str(test), "max_length": 64}
    assert cli.main(["train", str(write_config(tmp_path / "c.yaml", **cfg)), "--quiet"]) == 0
    run = tmp_path / "runs" / "fact"
    hits = [str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and card.encode() in p.read_bytes()]
    assert hits == []
    import json

    samples = json.loads((run / "eval.json").read_text())["final"]["test"]["samples"]
    assert samples and all(s["fact"] == "<CREDIT_CARD_1>" and "<CREDIT_CARD_1>" in s["reference"] for s in samples)
