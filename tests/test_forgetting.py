"""Forgetting: the reference data, the probes, replay batches, heads on a shared body, and continued runs."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_tiny import make_tiny_bert, make_tiny_llama, minilm_tokenizer, sentiment_rows, tiny_train_config, \
    write_jsonl

from tuneforge.models import loading as models
from tuneforge.tasks.classification import ClassificationTask
from tuneforge.config import load_config
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.data.reference import load_reference
from tuneforge.guards.forgetting import change
from tuneforge.guards.probes import EmbeddingProbe, LMProbe
from tuneforge.guards.replay import ReplayItem, ReplayTask
from tuneforge.recipes.sequence import accuracy_matrix
from tuneforge.tasks.classification import HeadTask
from tuneforge.tasks.heads import grow_head
from tuneforge.tasks.textlm import TextLM


# ------------------------------------------------------------------ reference data

def test_builtin_reference_ships_in_the_package() -> None:
    ref = load_reference("builtin")
    assert ref is not None and len(ref.texts) >= 100 and len(ref.prompts) >= 20
    shipped = Path(__file__).parents[1] / "examples" / "reference"
    if shipped.exists():  # the package copy is the examples' data, byte for byte
        pkg = Path(__file__).parents[1] / "src" / "tuneforge" / "resources" / "reference"
        for name in ("general.jsonl", "prompts.jsonl"):
            assert (pkg / name).read_bytes() == (shipped / name).read_bytes(), name


def test_reference_file_and_off(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ref.jsonl", [{"text": "Rivers flow to the sea."}, {"prompt": "Say hi."}])
    ref = load_reference(str(path))
    assert ref is not None and ref.texts == ["Rivers flow to the sea."] and ref.prompts == ["Say hi."]
    assert load_reference(None) is None
    with pytest.raises(TuneforgeError, match="not found"):
        load_reference(str(tmp_path / "missing.jsonl"))


def test_change_direction_and_flag() -> None:
    worse_ppl = change(10.0, 12.0, "perplexity", 0.1)
    assert worse_ppl["relative_change"] == pytest.approx(0.2) and worse_ppl["flagged"]
    assert not change(10.0, 8.0, "perplexity", 0.1)["flagged"]      # lower perplexity is better
    drop = change(0.9, 0.6, "accuracy", 0.1)
    assert drop["relative_change"] == pytest.approx(-1 / 3) and drop["flagged"]
    assert not change(0.9, 0.95, "accuracy", 0.1)["flagged"]
    assert not change(0.9, 0.85, "accuracy", 0.1)["flagged"]         # -5.6% is under the threshold


def test_replay_and_ewc_need_something_to_protect() -> None:
    base = {"name": "x", "data": {"train": "x.jsonl"}}
    with pytest.raises(ConfigError, match="init_from"):
        load_config(None, ["forgetting.replay=0.2"], base=dict(base))
    with pytest.raises(ConfigError, match="init_from"):
        load_config(None, ["forgetting.ewc=10"], base=dict(base))
    with pytest.raises(ConfigError, match="reference"):
        load_config(None, ["task=instruction", "forgetting.reference=null", "forgetting.replay=0.2"], base=dict(base))
    with pytest.raises(ConfigError, match="scratch"):
        load_config(None, ["init_from=runs/a", "method.name=scratch"], base=dict(base))


# ------------------------------------------------------------------ replay batches

class CountTask:
    """Examples are floats; the loss of a batch is the mean of its examples (so weighting is visible)."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def batches(self, examples: list[Any], batch_size: int, shuffle: bool = False, seed: int = 0) -> list[list[int]]:
        return [list(range(i, min(i + batch_size, len(examples)))) for i in range(0, len(examples), batch_size)]

    def collate(self, examples: list[Any], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor([float(examples[i]) for i in idx])}

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["x"].mean() * self.scale

    @staticmethod
    def tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor(len(batch["x"]))


def test_replay_mixes_the_fraction_into_every_batch() -> None:
    main, old = CountTask(), CountTask()
    train = [1.0] * 30
    pool = [ReplayItem(old, 3.0) for _ in range(10)]
    task = ReplayTask(main, len(train), pool, 0.25)
    examples = train + pool
    batches = task.batches(examples, 6, shuffle=True, seed=5)
    assert len(batches) == len(main.batches(train, 6))                # steps per epoch unchanged
    for idx in batches:
        new = [i for i in idx if i < 30]
        replayed = [i for i in idx if i >= 30]
        assert len(new) == 6 and len(replayed) == 2                    # 2 / 8 = 25% of the batch
    assert batches == task.batches(examples, 6, shuffle=True, seed=5)  # seeded: exact resume
    assert batches != task.batches(examples, 6, shuffle=True, seed=6)
    batch = task.collate(examples, batches[0], torch.device("cpu"))
    # Example-weighted mean: (6·1 + 2·3) / 8.
    assert float(task.loss(None, batch)) == pytest.approx(1.5)
    assert int(task.tokens(batch)) == 8


def test_replay_passes_evaluation_through() -> None:
    class Evaluating(CountTask):
        labels = ["a", "b"]

        def evaluate(self, *a: Any, **k: Any) -> dict[str, float]:
            return {"loss": 0.5}

    task = ReplayTask(Evaluating(), 1, [ReplayItem(CountTask(), 0.0)], 0.5)
    assert task.evaluate(None, [], 1, torch.device("cpu"), None) == {"loss": 0.5}
    assert task.labels == ["a", "b"]


# ------------------------------------------------------------------ heads on a shared body

def test_grow_head_keeps_earlier_logits(tmp_path: Path) -> None:
    src = models.ModelSource("tiny", make_tiny_bert(tmp_path / "bert"))
    model = models.load_classifier(src, ["neg", "neu", "pos"]).eval()
    tok = minilm_tokenizer()
    base = ClassificationTask(tok, ["business", "sports"], "text", "label", 32)
    heads = [{"name": "sentiment", "labels": ["neg", "neu", "pos"], "offset": 0, "run": "a"},
             {"name": "topics", "labels": ["business", "sports"], "offset": 3, "run": "b"}]
    task = HeadTask.wrap(base, 3, heads)
    enc = tok(["a great kettle", "the match ended"], return_tensors="pt", padding=True)
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    with torch.no_grad():
        before = model(**batch).logits
        grow_head(model, task)
        after = model(**batch).logits
        sliced = task.logits(model, batch)
    assert after.shape == (2, 5) and model.config.num_labels == 5
    torch.testing.assert_close(after[:, :3], before)                   # task A's head is untouched
    torch.testing.assert_close(sliced, after[:, 3:])
    assert task.model_labels == ["sentiment:neg", "sentiment:neu", "sentiment:pos", "topics:business", "topics:sports"]
    assert task.metadata()["heads"] == heads and task.metadata()["labels"] == ["business", "sports"]
    old = HeadTask.wrap(ClassificationTask(tok, ["neg", "neu", "pos"], "text", "label", 32), 0, [])
    with torch.no_grad():
        torch.testing.assert_close(old.logits(model, batch), before)


# ------------------------------------------------------------------ probes

def test_lm_probe_perplexity_and_base_answers(tmp_path: Path) -> None:
    path = make_tiny_llama(tmp_path / "llama")
    src = models.ModelSource("tiny", path)
    tok = models.load_tokenizer(src)
    model = models.load_causal_lm(src).eval()
    ref = load_reference("builtin")
    assert ref is not None
    probe = LMProbe(ref, tok, 64, 4, 6, torch.device("cpu"), None)
    before = probe.measure(model, first=True)
    # A random model over a ~30k vocabulary: perplexity in the thousands, finite.
    assert math.isfinite(before["perplexity"]) and before["perplexity"] > 100
    assert "base_answer_perplexity" in before and len(probe.answers) == 4
    again = probe.measure(model, first=False)
    assert again["perplexity"] == pytest.approx(before["perplexity"], rel=1e-5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert probe.measure(model, first=False)["perplexity"] != pytest.approx(before["perplexity"], rel=1e-3)


def test_text_lm_masks_padding() -> None:
    lm = TextLM(minilm_tokenizer(), 16)
    ex = lm.encode(["short", "a somewhat longer sentence here"])
    batch = lm.collate(ex, [0, 1], torch.device("cpu"))
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    assert int(TextLM.tokens(batch)) == len(ex[0]) + len(ex[1])


def test_embedding_probe_is_one_for_the_same_model(tmp_path: Path) -> None:
    src = models.ModelSource("tiny", make_tiny_bert(tmp_path / "bert"))
    model = models.load_classifier(src, ["a", "b"]).eval()
    ref = load_reference("builtin")
    assert ref is not None
    probe = EmbeddingProbe(ref, minilm_tokenizer(), 32, 24, torch.device("cpu"), None)
    assert probe.measure(model, first=True)["embedding_geometry"] == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        for p in model.bert.encoder.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    assert probe.measure(model, first=False)["embedding_geometry"] < 0.999


# ------------------------------------------------------------------ continued runs, end to end (tiny models)

def topic_rows(n: int, seed: int) -> list[dict[str, Any]]:
    words = {"sports": ["goal", "match", "team"], "business": ["market", "profit", "shares"]}
    return [{"id": f"t{seed}-{i}", "text": f"{words[lab][i % 3]} {words[lab][(i + 1) % 3]} news{seed}x{i}", "label": lab}
            for i, lab in enumerate(["sports", "business"] * (n // 2))]


@pytest.mark.slow
def test_continued_runs_measure_and_mitigate_forgetting(tmp_path: Path) -> None:
    from tuneforge.recipes.inference import load_run, predict_run
    from tuneforge.recipes.train import train

    model = make_tiny_bert(tmp_path / "bert")
    a_train = write_jsonl(tmp_path / "a.jsonl", sentiment_rows(48, 0))
    a_test = write_jsonl(tmp_path / "a_test.jsonl", sentiment_rows(24, 1))
    b_train = write_jsonl(tmp_path / "b.jsonl", topic_rows(40, 0))
    b_test = write_jsonl(tmp_path / "b_test.jsonl", topic_rows(20, 1))
    cfg_a = tiny_train_config(model, a_train, tmp_path / "runs", name="sentiment", epochs=3, lr=3e-3)
    cfg_a["data"]["test"] = str(a_test)
    run_a = train(load_config(None, base=cfg_a), quiet=True).run_dir
    a_acc = json.loads((run_a / "eval.json").read_text())["final"]["test"]["accuracy"]

    results = {}
    for variant, extra in {"plain": {}, "guarded": {"replay": 0.3, "ewc": 50.0, "l2_to_base": 0.01},
                           "lora": {}}.items():
        cfg_b = tiny_train_config(model, b_train, tmp_path / "runs" / variant, name="topics", epochs=2, lr=3e-3)
        cfg_b["data"]["test"] = str(b_test)
        cfg_b["init_from"] = str(run_a)
        cfg_b["forgetting"].update(extra)
        if variant == "lora":
            cfg_b["method"] = {"name": "lora", "r": 4}
        out = train(load_config(None, base=cfg_b), quiet=True)
        f = out.eval["forgetting"]
        results[variant] = f
        assert f["metric"] == "accuracy" and set(f["tasks"]) == {"sentiment"}
        assert f["before"] == pytest.approx(a_acc)  # A's head is intact when B starts
        assert set(f) >= {"before", "after", "relative_change", "flagged"}
        # The saved B model is a plain classifier with both heads; predict reads B's slice.
        pred = predict_run(out.run_dir, texts=["goal match"])[0]
        assert set(pred["probs"]) == {"business", "sports"}
        _, task, reloaded = load_run(out.run_dir)
        assert isinstance(task, HeadTask) and reloaded.config.num_labels == 5
    assert results["guarded"]["mitigation"]["replay_pool"] > 0
    assert results["guarded"]["mitigation"]["fisher_mean"] > 0
    matrix = accuracy_matrix([run_a, tmp_path / "runs" / "plain" / "topics"])
    assert matrix["task_names"] == ["sentiment", "topics"]
    assert matrix["matrix"][0][1] is None and matrix["matrix"][0][0] == pytest.approx(a_acc)
    assert matrix["forgetting"]["sentiment"] == pytest.approx(a_acc - results["plain"]["after"])


@pytest.mark.slow
def test_sequence_command_on_tiny_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from tuneforge.cli import main

    model = make_tiny_bert(tmp_path / "bert")
    a_train = write_jsonl(tmp_path / "a.jsonl", sentiment_rows(36, 0))
    b_train = write_jsonl(tmp_path / "b.jsonl", topic_rows(30, 0))
    stage = lambda name, data: {**tiny_train_config(model, data, tmp_path, name=name, epochs=1),  # noqa: E731
                                "output_dir": "ignored"}
    spec = {"name": "seq", "output_dir": str(tmp_path / "runs"),
            "set": {"data.test": 0.25},
            "tasks": [{"config": stage("a", a_train)}, {"config": stage("b", b_train)}],
            "variants": {"plain": {}, "replay": {"forgetting.replay": 0.5}}}
    path = tmp_path / "seq.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert main(["sequence", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "plain: accuracy after training" in out and "reduction" in out
    report = json.loads((tmp_path / "runs" / "seq" / "sequence.json").read_text())
    assert set(report["variants"]) == {"plain", "replay"}
    for v in report["variants"].values():
        assert len(v["matrix"]) == 2 and v["matrix"][0][1] is None and "backward_transfer" in v
    assert (tmp_path / "runs" / "seq" / "a" / "eval.json").exists()            # task A trained once
    assert (tmp_path / "runs" / "seq" / "replay" / "b" / "eval.json").exists()
    a_eval, b_eval = tmp_path / "runs" / "seq" / "a" / "eval.json", tmp_path / "runs" / "seq" / "plain" / "b" / "eval.json"
    a_time, b_time = a_eval.stat().st_mtime, b_eval.stat().st_mtime
    assert main(["sequence", str(path), "--quiet", "--variants", "plain"]) == 0  # unchanged runs are reused
    assert a_eval.stat().st_mtime == a_time and b_eval.stat().st_mtime == b_time
    os.utime(a_eval, (b_time + 10, b_time + 10))  # task A looks retrained: B, trained from the old A, is stale
    assert main(["sequence", str(path), "--quiet", "--variants", "plain"]) == 0
    assert b_eval.stat().st_mtime > b_time


def test_replay_and_fisher_never_use_the_probed_texts() -> None:
    ref = load_reference("builtin")
    assert ref is not None
    held = ref.training_texts(64)
    assert held == ref.texts[64:] and not set(held) & set(ref.texts[:64])
    with pytest.raises(TuneforgeError, match="lower it"):
        ref.training_texts(len(ref.texts))


def test_a_user_reference_file_is_redacted_like_the_training_data(tmp_path: Path) -> None:
    """Its prompts reach eval.json (the base model's sample answers) and replay trains on its texts."""
    path = tmp_path / "ref.jsonl"
    path.write_text(json.dumps({"prompt": "Write to jane.doe@example.com about the refund."}) + "\n"
                    + json.dumps({"text": "Call +44 20 7946 0958 for the kettle manual."}) + "\n", encoding="utf-8")
    kept = load_reference(str(path), pii="warn")
    assert "jane.doe@example.com" in kept.prompts[0]
    ref = load_reference(str(path), pii="redact")
    assert "jane.doe@example.com" not in ref.prompts[0] and "<EMAIL" in ref.prompts[0]
    assert "7946" not in ref.texts[0]
