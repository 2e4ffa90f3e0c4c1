"""train.pooling: mean (models/anatomy.pool_by_mean): the token a sequence head reads becomes a uniform mean
over the text, the model stays a plain Hugging Face classifier, a LoRA adapter carries the change so plain
PEFT loads it right, and what cannot carry it is one error line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_tiny import (assert_refused_in_one_line, make_tiny_bert, make_tiny_llama, sentiment_rows,
                          tiny_train_config, write_jsonl)

from tuneforge.config import load_config
from tuneforge.models import anatomy


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("make", [make_tiny_bert, make_tiny_llama])
def test_the_read_token_attends_uniformly_to_the_text(tmp_path: Path, make: Any) -> None:
    """After pool_by_mean the last layer's attention of every query is uniform over the real tokens it may see
    (the mask; a decoder's causality too), and the other layers are untouched."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(make(tmp_path / "m")), num_labels=2,
                                                               attn_implementation="eager").eval()
    ids = torch.tensor([[5, 9, 12, 7, 3, 8], [5, 11, 4, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    model.config.pad_token_id = 0
    before = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    name = anatomy.pool_by_mean(model)
    assert name.endswith(("query", "q_proj")) and ".1." in name  # the last of the tiny model's 2 layers
    after = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    assert torch.equal(before[0], after[0])
    last = after[-1]                                                      # (B, heads, T, T)
    causal = getattr(model.config, "is_decoder", False) or "llama" in model.config.model_type
    for b, n_real in enumerate(mask.sum(1).tolist()):
        for q in range(n_real):
            seen = q + 1 if causal else n_real
            want = torch.zeros(ids.shape[1])
            want[:seen] = 1.0 / seen
            assert torch.allclose(last[b, :, q], want.expand_as(last[b, :, q]), atol=1e-6), (b, q)
    assert not torch.allclose(before[-1][0, :, 5], last[0, :, 5])         # it was not uniform before


def _train_pooled(tmp_path: Path, method: str) -> Any:
    from tuneforge.recipes.train import train

    bert = make_tiny_bert(tmp_path / "bert")
    raw = tiny_train_config(bert, write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40)), tmp_path / "runs",
                            name=method, epochs=1, lr=5e-3, batch_size=8, pooling="mean")
    raw["method"] = {"name": method, "r": 4}
    raw["eval"] = {"base": False, "batch_size": 32, "baselines": False, "bootstrap": 0, "audit": False}
    return bert, train(load_config(None, base=raw), quiet=True)


def test_a_lora_adapter_carries_the_zeroed_query_to_plain_peft(tmp_path: Path) -> None:
    """LoRA with pooling: the last query is not LoRA-wrapped, stays zero and frozen through training, and is
    saved whole in the adapter, so plain PEFT on the unchanged base (tuneforge not involved) gives the
    trained model's logits; without it the base's own query would come back."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    bert, out = _train_pooled(tmp_path, "lora")
    model_dir = out.run_dir / "model"
    saved = json.loads((model_dir / "adapter_config.json").read_text())
    zeroed = "bert.encoder.layer.1.attention.self.query"
    assert zeroed in saved["modules_to_save"] and zeroed in saved["exclude_modules"]

    base = AutoModelForSequenceClassification.from_pretrained(str(bert), num_labels=3)  # sentiment_rows' labels
    assert base.bert.encoder.layer[1].attention.self.query.weight.abs().sum() > 0
    model = PeftModel.from_pretrained(base, str(model_dir)).eval()
    query = model.base_model.model.bert.encoder.layer[1].attention.self.query
    assert torch.count_nonzero(query.modules_to_save["default"].weight) == 0
    assert not hasattr(query.modules_to_save["default"], "lora_A")

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    batch = tok(["good great fine", "bad awful poor movie"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        with model.disable_adapter():
            unpooled = model(**batch).logits
    assert not torch.allclose(logits, unpooled)
    from tuneforge.recipes.inference import load_run  # tuneforge's own loading agrees with plain PEFT
    with torch.no_grad():
        ours = load_run(out.run_dir).model(**batch).logits
    assert torch.allclose(ours, logits, atol=1e-5), (ours, logits)


def test_full_fine_tuning_saves_the_pooled_model(tmp_path: Path) -> None:
    """Full fine-tuning trains the zeroed query like any weight (zero is its start); the saved model is a
    plain HF classifier whose last query is what training made of zero, not the base's."""
    from transformers import AutoModelForSequenceClassification

    bert, out = _train_pooled(tmp_path, "full")
    base = AutoModelForSequenceClassification.from_pretrained(str(bert), num_labels=2)
    saved = AutoModelForSequenceClassification.from_pretrained(str(out.run_dir / "model"))
    start = base.bert.encoder.layer[1].attention.self.query.weight
    trained = saved.bert.encoder.layer[1].attention.self.query.weight
    assert trained.abs().sum() > 0                          # it trained
    assert trained.norm() < (trained - start).norm() / 2    # from zero: nearer zero than the base's query


@pytest.mark.parametrize("change, key", [
    ({"task": "token_classification", "train": {"pooling": "mean"}}, "`train.pooling`"),
    ({"method": {"name": "adapter"}, "train": {"pooling": "mean"}}, "`train.pooling`"),
    ({"method": {"name": "qlora"}, "train": {"pooling": "mean"}}, "`train.pooling`"),
    ({"train": {"pooling": "max"}}, "train.pooling"),
    ({"init_from": "runs/a", "train": {"pooling": "mean"}}, "`train.pooling`"),
])
def test_what_pooling_cannot_run_with_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        change: dict[str, Any], key: str) -> None:
    assert_refused_in_one_line(tmp_path, change, key, capsys)
