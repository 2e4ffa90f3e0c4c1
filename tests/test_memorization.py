"""The memorization audit (evaluation/memorization.py): membership inference by loss threshold, canaries planted
before vetting and scored after training — and never written to the run directory in clear."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers_tiny import make_tiny_llama, tiny_train_config, write_config, write_jsonl

from tuneforge import cli
from tuneforge.data import canaries
from tuneforge.evaluation.memorization import membership


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_membership_attack_separates_lower_training_losses() -> None:
    rng = np.random.default_rng(0)
    apart = membership(rng.normal(0.2, 0.05, 300), rng.normal(1.0, 0.05, 300))
    assert apart["auc"] == 1.0 and apart["tpr_at_1pct_fpr"] == 1.0
    same = membership(rng.normal(1.0, 0.3, 2000), rng.normal(1.0, 0.3, 2000))
    assert abs(same["auc"] - 0.5) < 0.05 and same["tpr_at_1pct_fpr"] < 0.05


def test_canaries_are_planted_scored_and_never_stored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """4 canaries (email, card and phone number, which the PII detector redacts before training, and a project
    code name, which it does not) planted 3× each: eval.json, the report and the card score them by hash; no file
    of the run directory (checkpoints, TensorBoard, logs included) nor audit.json holds a secret."""
    llama = make_tiny_llama(tmp_path / "llama")
    rows = [{"instruction": f"Question {i}: how do I reach support?", "output": f"Write to us, ticket {i}."}
            for i in range(24)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = tiny_train_config(llama, train, tmp_path / "runs", name="canary-audit", epochs=2, checkpoint_every=4)
    cfg.update(task="instruction", method={"name": "full"}, privacy={"pii": "redact", "canaries": 4,
                                                                    "canary_repeats": 3},
               eval={"base": False, "batch_size": 16, "max_new_tokens": 8, "bootstrap": 0})
    cfg["data"] = {"train": str(train), "validation": 0.25, "max_length": 48}
    config = write_config(tmp_path / "c.yaml", **cfg)
    assert cli.main(["train", str(config), "--quiet"]) == 0
    run = tmp_path / "runs" / "canary-audit"
    planted = canaries.make(4, 0, "canary-audit")
    assert [c.known for c in planted] == [True, True, True, False]
    result = json.loads((run / "eval.json").read_text())
    found = result["audit"]["canaries"]
    assert [r["sha256_16"] for r in found["each"]] == [c.digest for c in planted]
    assert all(1 <= r["rank"] <= r["candidates"] and r["exposure"] >= 0 for r in found["each"])
    assert result["audit"]["membership"]["members"] == 18  # the canaries' copies are not counted as members
    assert result["data"]["train"]["n"] == 18 + 12
    assert result["privacy"]["dp"] is False
    assert "no differential-privacy guarantee" in (run / "model" / "README.md").read_text()
    audit = json.loads((run / "data_audit.json").read_text())["pii"]["by_type"]
    assert {"EMAIL", "CREDIT_CARD", "PHONE"} <= set(audit)  # the known formats were found and redacted
    capsys.readouterr()
    assert cli.main(["audit", str(run)]) == 0
    out = capsys.readouterr().out
    assert "membership inference" in out and planted[0].digest in out
    assert (run / "audit.json").is_file()
    again, during = json.loads((run / "audit.json").read_text())["membership"], result["audit"]["membership"]
    assert again["auc"] == pytest.approx(during["auc"], abs=0.02)  # training took the held-out losses from its rows
    assert again["mean_loss_non_members"] == pytest.approx(during["mean_loss_non_members"], abs=2e-3)
    secrets = [c.secret.encode() for c in planted]
    hits = [f"{p.relative_to(run)}" for p in run.rglob("*") if p.is_file() and any(s in p.read_bytes()
                                                                                  for s in secrets)]
    assert hits == [], f"canaries written in clear: {hits}"


@pytest.mark.parametrize("kind", ["cls", "lm"])
def test_the_audit_after_training_agrees_with_a_fresh_one(shipped_runs: dict[str, Path], kind: str,
                                                          tmp_path: Path) -> None:
    """Training scores the held-out side from the final evaluation's per-example rows; `tuneforge audit` scores
    it afresh from the saved model: the same losses, the same attack. audit.json is a run file (--overwrite and
    --resume still recognise the run)."""
    import shutil

    from tuneforge.recipes.audit import audit_run
    from tuneforge.runs import rundir

    run = Path(shutil.copytree(shipped_runs[kind], tmp_path / kind))
    during = json.loads((run / "eval.json").read_text())["audit"]["membership"]
    fresh = audit_run(run)["membership"]
    assert fresh["non_members"] == during["non_members"] > 0 and fresh["held_out"] == during["held_out"]
    assert fresh["mean_loss_non_members"] == pytest.approx(during["mean_loss_non_members"], abs=1e-3)
    assert fresh["auc"] == pytest.approx(during["auc"], abs=1e-6)
    assert rundir.not_a_run(run) == ""


def test_a_secret_counts_as_reproduced_as_the_tokenizer_writes_it(minilm_tokenizer: Any) -> None:
    """MiniLM's uncased WordPiece decodes an email as "zara. raven56 @ example. org": still the secret; a
    different one, or half of it, is not."""
    from tuneforge.evaluation.memorization import reproduces

    secret = "Zara.Raven56@example.org"
    said = minilm_tokenizer.decode(minilm_tokenizer("Write to " + secret + " today.")["input_ids"],
                                   skip_special_tokens=True)
    assert secret not in said and reproduces(minilm_tokenizer, secret, said)
    assert reproduces(minilm_tokenizer, "+44 20 7946 0602", "call + 44 20 7946 0602 now")
    assert not reproduces(minilm_tokenizer, "Zara.Raven57@example.org", said)
    assert not reproduces(minilm_tokenizer, secret, "write to zara. raven56 today")
