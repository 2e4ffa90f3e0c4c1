"""LoRA invariants on a tiny random BERT: B=0 equals the base, only adapter+head train, PEFT reloads it."""
from __future__ import annotations

import torch

from tuneforge.models import loading as models
from tuneforge.tasks.classification import ClassificationTask
from tuneforge.config import MethodConfig
from tuneforge.data.records import Record
from tuneforge.methods import get_method
from tuneforge.methods.base import count_parameters, parameter_snapshot

LABELS = ["neg", "neu", "pos"]


def _setup(tiny_bert_dir, tokenizer, **method):
    torch.manual_seed(0)
    base = models.load_classifier(models.ModelSource("tiny", tiny_bert_dir), LABELS)
    task = ClassificationTask(tokenizer, LABELS, "text", "label", 32)
    records = [Record({"text": t, "label": y}, "t", i) for i, (t, y) in
               enumerate([("great kettle", "pos"), ("awful lid", "neg"), ("it is a kettle", "neu"),
                          ("love it", "pos")], start=1)]
    examples = task.encode(records)
    batch = task.collate(examples, list(range(len(examples))), torch.device("cpu"))
    return base, task, batch, MethodConfig(**{"name": "lora", "dropout": 0.0, **method})


def test_lora_with_b_zero_equals_base(tiny_bert_dir, minilm_tokenizer):
    base, task, batch, cfg = _setup(tiny_bert_dir, minilm_tokenizer)
    base.eval()
    before = task.logits(base, batch).detach().clone()
    model = get_method("lora").apply(base, cfg, "classification").eval()
    torch.testing.assert_close(task.logits(model, batch), before, rtol=0, atol=0)


def test_only_adapter_and_head_parameters_change(tiny_bert_dir, minilm_tokenizer):
    base, task, batch, cfg = _setup(tiny_bert_dir, minilm_tokenizer)
    model = get_method("lora").apply(base, cfg, "classification")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable), trainable
    n_train, n_total = count_parameters(model)
    assert 0 < n_train < 0.2 * n_total
    before = parameter_snapshot(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):  # two steps: B leaves zero on step one, so A moves on step two
        task.loss(model, batch).backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable, changed - trainable
    assert any("lora_B" in n for n in changed) and any("lora_A" in n for n in changed)
    assert any("classifier" in n for n in changed)


def test_saved_adapter_reloads_with_plain_peft(tiny_bert_dir, minilm_tokenizer, tmp_path):
    from peft import PeftConfig, PeftModel

    base, task, batch, cfg = _setup(tiny_bert_dir, minilm_tokenizer)
    method = get_method("lora")
    model = method.apply(base, cfg, "classification")
    with torch.no_grad():  # make the adapter non-trivial
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    model.eval()
    expected = task.logits(model, batch).detach()
    method.save(model, tmp_path)
    assert (tmp_path / "adapter_config.json").exists() and (tmp_path / "adapter_model.safetensors").exists()
    assert PeftConfig.from_pretrained(str(tmp_path)).peft_type.value == "LORA"
    fresh = models.load_classifier(models.ModelSource("tiny", tiny_bert_dir), LABELS)
    reloaded = PeftModel.from_pretrained(fresh, str(tmp_path)).eval()
    torch.testing.assert_close(task.logits(reloaded, batch), expected)


def test_merge_equals_unmerged(tiny_bert_dir, minilm_tokenizer):
    base, task, batch, cfg = _setup(tiny_bert_dir, minilm_tokenizer)
    method = get_method("lora")
    model = method.apply(base, cfg, "classification")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    model.eval()
    expected = task.logits(model, batch).detach()
    merged = method.merge(model).eval()
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(task.logits(merged, batch), expected, rtol=1e-4, atol=1e-5)


def test_explicit_targets_are_checked(tiny_bert_dir, minilm_tokenizer):
    import pytest

    from tuneforge.errors import TuneforgeError

    base, task, batch, cfg = _setup(tiny_bert_dir, minilm_tokenizer, targets=["query", "value"])
    model = get_method("lora").apply(base, cfg, "classification")
    wrapped = {n.split(".lora_A")[0].split(".")[-1] for n, _ in model.named_parameters() if "lora_A" in n}
    assert wrapped == {"query", "value"}
    base2, *_ = _setup(tiny_bert_dir, minilm_tokenizer)
    with pytest.raises(TuneforgeError, match=r"no module named \['q_proj'\]"):
        get_method("lora").apply(base2, MethodConfig(targets=["q_proj"]), "classification")
