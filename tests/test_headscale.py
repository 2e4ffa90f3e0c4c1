"""privacy.dp.standardize_head (training/headscale.py): under DP the head reads its input standardized by the
builtin public reference texts, and the run ends with a plain head computing the same function."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_tiny import make_tiny_bert, minilm_tokenizer, sentiment_rows, tiny_train_config, write_jsonl

from tuneforge.config import load_config
from tuneforge.data.reference import load_reference
from tuneforge.training import dp, headscale


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_folded_head_computes_what_the_standardized_one_did() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 3)
    head = headscale.StandardizedHead(linear, torch.randn(16), torch.rand(16) + 0.1)
    x = torch.randn(5, 16) * 4
    assert torch.allclose(head.folded()(x), head(x), atol=1e-5)
    assert not torch.allclose(linear(x), head(x))


class _Task:
    model_labels = ["a", "b", "c"]
    tokenizer = minilm_tokenizer()


def test_the_statistics_are_the_public_reference_texts(tmp_path: Path) -> None:
    """μ and σ are the head input's over the builtin reference texts (what no training record touches)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(make_tiny_bert(tmp_path / "b")), num_labels=3)
    texts = load_reference("builtin").texts
    want = headscale.head_inputs(model, model.classifier, _Task.tokenizer, texts, 32, torch.device("cpu"), None)
    assert want is not None and want.shape == (len(texts), model.config.hidden_size)
    line = headscale.standardize(model, _Task(), 32, torch.device("cpu"), None)
    assert f"{len(texts)} public reference texts" in line
    assert isinstance(model.classifier, headscale.StandardizedHead)
    assert torch.allclose(model.classifier.mean, want.mean(0))
    assert torch.allclose(model.classifier.inv_std, 1 / want.std(0))
    assert headscale.fold(model) == 1 and type(model.classifier) is torch.nn.Linear


def _dp_run(tmp_path: Path, method: str, standardize: bool) -> Any:
    from tuneforge.recipes.train import train

    bert = make_tiny_bert(tmp_path / "bert")
    raw = tiny_train_config(bert, write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40)), tmp_path / "runs",
                            name=f"{method}-{standardize}", epochs=1, lr=5e-3, batch_size=8)
    raw["method"] = {"name": method, "r": 4}
    raw["privacy"] = {"pii": "off", "dp": {"epsilon": 8, "accountant": "rdp", "standardize_head": standardize}}
    raw["eval"] = {"base": False, "batch_size": 32, "baselines": False, "bootstrap": 0, "audit": False}
    return bert, train(load_config(None, base=raw), quiet=True)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_dp_run_saves_a_plain_head_that_predicts_what_the_run_measured(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           method: str) -> None:
    """The saved model (full) or adapter (LoRA) loads in plain transformers/PEFT, with the head's usual keys,
    and its test predictions are the ones the run wrote."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    monkeypatch.setattr(dp, "noise_multiplier", lambda *a: 0.8)
    bert, out = _dp_run(tmp_path, method, True)
    notes = json.loads((out.run_dir / "eval.json").read_text())["notes"]
    assert any("standardize_head: the head reads its input standardized" in n for n in notes), notes
    model_dir = out.run_dir / "model"
    if method == "full":
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    else:
        from peft import PeftModel

        labels = ["negative", "neutral", "positive"]  # sentiment_rows' labels, as the model card tells a user
        base = AutoModelForSequenceClassification.from_pretrained(str(bert), id2label=dict(enumerate(labels)),
                                                                  label2id={n: i for i, n in enumerate(labels)})
        model = PeftModel.from_pretrained(base, str(model_dir))
    keys = [k for k, _ in model.named_parameters() if "classifier" in k]
    assert keys and not any(".linear." in k for k in keys), keys
    model.eval()
    rows = [json.loads(line) for line in (out.run_dir / "predictions" / "validation.jsonl").open()]
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    texts = [r["text"] for r in rows]
    with torch.no_grad():
        probs = torch.softmax(model(**tok(texts, padding=True, truncation=True, max_length=32,
                                          return_tensors="pt")).logits, -1)
    names = [model.config.id2label[i] for i in probs.argmax(-1).tolist()]
    assert names == [r["predicted"] for r in rows]


def test_off_the_head_reads_its_input_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dp, "noise_multiplier", lambda *a: 0.8)
    _, out = _dp_run(tmp_path, "full", False)
    notes = json.loads((out.run_dir / "eval.json").read_text())["notes"]
    assert not any("standardize_head" in n for n in notes)
