"""Invariants of every training method on tiny random BERT/Llama models.

Start equal to the base (adapter, LoRA, DoRA; QLoRA equal to its quantized base), only the method's
parameters train, save → load gives identical outputs, merged ≡ unmerged, QLoRA really holds 4-bit
weights, and the LoRA knobs (r, alpha, dropout, rsLoRA, targets, modules_to_save) do what they say.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers_tiny import make_tiny_llama
from tuneforge.models import loading as models
from tuneforge.config import MethodConfig
from tuneforge.errors import TuneforgeError
from tuneforge.methods import get_method
from tuneforge.methods.base import count_parameters, parameter_snapshot

LABELS = ["neg", "neu", "pos"]
TEXTS = ["great kettle, love it", "awful lid and broken", "it is a kettle", "love it"]


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def dirs(tiny_bert_dir, tiny_llama_dir) -> dict[str, Path]:
    return {"bert": tiny_bert_dir, "llama": tiny_llama_dir}


def classifier(path: Path, scratch: bool = False, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)  # the fresh head is random: same seed, same head
    return models.load_classifier(models.ModelSource("tiny", path), LABELS, scratch=scratch)


def batch(tokenizer) -> dict[str, torch.Tensor]:
    return dict(tokenizer(TEXTS, return_tensors="pt", padding=True))


def logits(model: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**b).logits.float().clone()


def train_steps(model: torch.nn.Module, b: dict[str, torch.Tensor], steps: int = 3, lr: float = 1e-2) -> None:
    """A few AdamW steps on a fixed batch, with a no-grad eval forward first (the CPU 4-bit trap)."""
    logits(model, b)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    labels = torch.tensor([2, 0, 1, 2])
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(**b).logits.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()


def cfg(name: str, **kw) -> MethodConfig:
    return MethodConfig(**{"name": name, "dropout": 0.0, "r": 4, "reduction": 8, "layers": 1, **kw})


# ------------------------------------------------------------------ start equal to the base

@pytest.mark.parametrize("name,arch", [("adapter", "bert"), ("adapter", "llama"), ("lora", "bert"),
                                       ("dora", "llama")])
def test_method_starts_equal_to_base(dirs, minilm_tokenizer, arch, name):
    b = batch(minilm_tokenizer)
    base = classifier(dirs[arch])
    before = logits(base, b)
    model = get_method(name).apply(base, cfg(name), "classification")
    atol = 0.0 if name != "dora" else 1e-5  # DoRA recomputes W as m * W / ||W||: equal up to rounding
    torch.testing.assert_close(logits(model, b), before, rtol=0, atol=atol)


def test_qlora_starts_equal_to_its_quantized_base(tiny_bert_dir, minilm_tokenizer):
    from tuneforge.methods.qlora import quantize_linears, skip_names

    b = batch(minilm_tokenizer)
    quantized = classifier(tiny_bert_dir)
    quantize_linears(quantized, skip_names(quantized, ["classifier"]))
    model = get_method("qlora").apply(classifier(tiny_bert_dir), cfg("qlora"), "classification")
    torch.testing.assert_close(logits(model, b), logits(quantized, b), rtol=0, atol=0)
    # and 4-bit is an approximation of the base, not a different model
    assert (logits(model, b) - logits(classifier(tiny_bert_dir), b)).abs().max() < 0.1


# ------------------------------------------------------------------ only the method's parameters train

EXPECTED_TRAINABLE = {
    "adapter": lambda n: ".adapter." in n or n.startswith("classifier") or n.startswith("score"),
    "lora": lambda n: "lora_" in n or "modules_to_save" in n,
    "dora": lambda n: "lora_" in n or "modules_to_save" in n,
    "qlora": lambda n: "lora_" in n or "modules_to_save" in n,
}


@pytest.mark.parametrize("name,arch", [("adapter", "bert"), ("adapter", "llama"), ("qlora", "bert"),
                                       ("qlora", "llama"), ("dora", "bert")])
def test_only_method_parameters_change(dirs, minilm_tokenizer, arch, name):
    b = batch(minilm_tokenizer)
    model = get_method(name).apply(classifier(dirs[arch]), cfg(name), "classification")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(EXPECTED_TRAINABLE[name](n) for n in trainable), sorted(trainable)
    n_train, n_total = count_parameters(model)
    assert n_train < 0.05 * n_total, (n_train, n_total)
    snap = parameter_snapshot(model)
    train_steps(model, b)
    after = dict(model.named_parameters())
    changed = {n for n in snap if not torch.equal(snap[n], after[n].detach())}
    assert changed and changed <= trainable, sorted(changed - trainable)
    # every adapter/LoRA tensor got a gradient through the frozen (possibly 4-bit) base
    moved_body = {n for n in changed if "classifier" not in n and "score" not in n}
    assert moved_body, "only the head changed: gradients did not reach the adapters"


def test_scratch_is_fresh_weights_same_architecture(tiny_bert_dir):
    # seed 1: the tiny "pretrained" model was itself initialised from seed 0
    pretrained, fresh = classifier(tiny_bert_dir), classifier(tiny_bert_dir, scratch=True, seed=1)
    method = get_method("scratch")
    assert method.scratch
    fresh = method.apply(fresh, cfg("scratch"), "classification")
    p, f = dict(pretrained.named_parameters()), dict(fresh.named_parameters())
    assert p.keys() == f.keys() and all(p[k].shape == f[k].shape for k in p)
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(p[key], f[key])
    assert count_parameters(fresh)[0] == count_parameters(fresh)[1]  # everything trains


@pytest.mark.parametrize("arch,stack", [("bert", "bert.encoder.layer."), ("llama", "model.layers.")])
def test_freeze_trains_only_top_layers_and_head(dirs, arch, stack):
    model = get_method("freeze").apply(classifier(dirs[arch]), cfg("freeze", layers=1), "classification")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(n.startswith(stack + "1.") for n in trainable)
    assert not any(n.startswith(stack + "0.") or "embed" in n for n in trainable)
    assert any(n.startswith(("classifier", "score")) for n in trainable)
    head_only = get_method("freeze").apply(classifier(dirs[arch]), cfg("freeze", layers=0), "classification")
    assert not any(n.startswith(stack) for n, p in head_only.named_parameters() if p.requires_grad)
    with pytest.raises(TuneforgeError, match="method.layers"):
        get_method("freeze").apply(classifier(dirs[arch]), cfg("freeze", layers=5), "classification")


# ------------------------------------------------------------------ save → load, merge

@pytest.mark.parametrize("name,arch", [("adapter", "bert"), ("adapter", "llama"), ("qlora", "bert"),
                                       ("dora", "llama"), ("freeze", "bert")])
def test_save_load_gives_identical_outputs(dirs, minilm_tokenizer, tmp_path, arch, name):
    b = batch(minilm_tokenizer)
    method = get_method(name)
    model = method.apply(classifier(dirs[arch]), cfg(name), "classification")
    train_steps(model, b)
    expected = logits(model, b)
    method.save(model, tmp_path)
    reloaded = method.load(classifier(dirs[arch]), tmp_path)
    torch.testing.assert_close(logits(reloaded, b), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["lora", "dora", "qlora"])
def test_merged_equals_unmerged(tiny_bert_dir, minilm_tokenizer, name):
    b = batch(minilm_tokenizer)
    method = get_method(name)
    model = method.apply(classifier(tiny_bert_dir), cfg(name), "classification")
    train_steps(model, b)
    expected = logits(model, b)
    merged = method.merge(model)
    assert not any("lora" in n for n, _ in merged.named_modules())
    assert all(type(m).__name__ != "Linear4bit" for m in merged.modules())  # qlora: plain fp32 again
    torch.testing.assert_close(logits(merged, b), expected, rtol=0, atol=1e-5)


def test_adapter_merge_is_refused_with_a_reason(tiny_bert_dir):
    model = get_method("adapter").apply(classifier(tiny_bert_dir), cfg("adapter"), "classification")
    with pytest.raises(TuneforgeError, match="cannot be merged.*not a linear map"):
        get_method("adapter").merge(model)


# ------------------------------------------------------------------ adapter specifics

def test_adapter_styles_reduction_and_base_layer(dirs):
    from tuneforge.methods.adapters import AdapterLayer

    def wrapped(arch: str, **kw) -> dict[str, AdapterLayer]:
        model = get_method("adapter").apply(classifier(dirs[arch]), cfg("adapter", **kw), "classification")
        return {n: m for n, m in model.named_modules() if isinstance(m, AdapterLayer)}

    houlsby = wrapped("bert", adapter_style="houlsby")
    assert sorted(houlsby) == sorted(f"bert.encoder.layer.{i}.{s}" for i in (0, 1)
                                     for s in ("attention.output.dense", "output.dense"))
    assert all(isinstance(m.base_layer, torch.nn.Linear) for m in houlsby.values())
    pfeiffer = wrapped("bert", adapter_style="pfeiffer", reduction=4)
    assert sorted(pfeiffer) == [f"bert.encoder.layer.{i}.output.dense" for i in (0, 1)]
    assert next(iter(pfeiffer.values())).adapter.down.out_features == 32 // 4
    llama = wrapped("llama")
    assert sorted(n.split(".", 3)[-1] for n in llama) == ["mlp.down_proj", "mlp.down_proj",
                                                          "self_attn.o_proj", "self_attn.o_proj"]


def test_adapter_saved_files_are_safetensors_and_small(tiny_bert_dir, tmp_path):
    import json

    from safetensors.torch import load_file

    method = get_method("adapter")
    method.save(method.apply(classifier(tiny_bert_dir), cfg("adapter"), "classification"), tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["style"] == "houlsby" and config["reduction"] == 8 and len(config["modules"]) == 4
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert all(".adapter." in k or k.startswith("classifier.") for k in tensors), sorted(tensors)
    assert any(k.startswith("classifier.") for k in tensors)


def test_adapter_on_causal_lm_starts_equal(tiny_llama_dir, minilm_tokenizer):
    torch.manual_seed(0)
    base = models.load_causal_lm(models.ModelSource("tiny", tiny_llama_dir))
    b = batch(minilm_tokenizer)
    before = logits(base, b)
    model = get_method("adapter").apply(base, cfg("adapter"), "instruction")
    torch.testing.assert_close(logits(model, b), before, rtol=0, atol=0)
    assert all(".adapter." in n for n, p in model.named_parameters() if p.requires_grad)


# ------------------------------------------------------------------ QLoRA really is 4-bit

def test_qlora_base_holds_4bit_nf4_weights(tiny_bert_dir):
    from tuneforge.methods.qlora import memory_report

    model = get_method("qlora").apply(classifier(tiny_bert_dir), cfg("qlora"), "classification")
    quantized = [m.get_base_layer() for n, m in model.named_modules() if hasattr(m, "lora_A")]
    assert quantized and all(type(q).__name__ == "Linear4bit" for q in quantized)
    for q in quantized:
        w = q.weight
        assert w.dtype == torch.uint8 and w.numel() * 2 == q.in_features * q.out_features  # two weights a byte
        assert w.quant_state.quant_type == "nf4" and w.quant_state.nested  # double quantization
        assert not w.requires_grad
    # Memory on a layer big enough that the per-layer code books (~1 KB) do not dominate, as in real models.
    from tuneforge.methods.qlora import quantize_linears

    layer = torch.nn.Sequential(torch.nn.Linear(512, 256))
    quantize_linears(layer, set())
    report = memory_report(layer)
    assert report["quantized_params"] == 512 * 256
    assert 4.0 < report["bits_per_weight"] < 4.3, report  # 4 bits + 8-bit absmax per 64 + nested scales
    assert report["nf4_mb"] < report["bf16_mb"] / 3 and report["nf4_mb"] < report["fp32_mb"] / 6
    head = dict(model.named_modules())["base_model.model.classifier"]
    assert "ModulesToSave" in type(head).__name__  # the head stays full precision and trains


# ------------------------------------------------------------------ the LoRA knobs

def lora_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}


def test_lora_rank_alpha_dropout_and_rslora(tiny_bert_dir):
    model = get_method("lora").apply(classifier(tiny_bert_dir), cfg("lora", r=4, alpha=8, dropout=0.2),
                                     "classification")
    layer = next(iter(lora_layers(model).values()))
    assert layer.r["default"] == 4 and layer.lora_A["default"].weight.shape[0] == 4
    assert layer.scaling["default"] == pytest.approx(8 / 4)
    assert layer.lora_dropout["default"].p == pytest.approx(0.2)
    rs = get_method("lora").apply(classifier(tiny_bert_dir), cfg("lora", r=4, alpha=8, rslora=True), "classification")
    assert next(iter(lora_layers(rs).values())).scaling["default"] == pytest.approx(8 / 4 ** 0.5)


def test_lora_targets_by_name_and_all_linear(tiny_bert_dir):
    named = get_method("lora").apply(classifier(tiny_bert_dir), cfg("lora", targets=["query", "value"]),
                                     "classification")
    assert {n.rsplit(".", 1)[-1] for n in lora_layers(named)} == {"query", "value"}
    every = get_method("lora").apply(classifier(tiny_bert_dir), cfg("lora", targets="all-linear"), "classification")
    assert {n.rsplit(".", 1)[-1] for n in lora_layers(every)} >= {"query", "key", "value", "dense"}
    assert not any("classifier" in n for n in lora_layers(every))  # the head trains fully, no LoRA on it
    with pytest.raises(TuneforgeError, match="no module named"):
        get_method("lora").apply(classifier(tiny_bert_dir), cfg("lora", targets=["nope"]), "classification")


def test_lora_modules_to_save_head_trains_and_is_saved(tiny_bert_dir, tmp_path):
    from safetensors.torch import load_file

    method = get_method("lora")
    model = method.apply(classifier(tiny_bert_dir), cfg("lora", modules_to_save=["classifier"]), "classification")
    assert any("classifier" in n and p.requires_grad for n, p in model.named_parameters())
    method.save(model, tmp_path)
    assert any("classifier" in k for k in load_file(str(tmp_path / "adapter_model.safetensors")))
    none = method.apply(classifier(tiny_bert_dir), cfg("lora", modules_to_save="none", targets=["query"]),
                        "classification")
    # PEFT's SEQ_CLS task type still keeps the classification head trainable: a random head must learn
    assert any("classifier" in n and p.requires_grad for n, p in none.named_parameters())
