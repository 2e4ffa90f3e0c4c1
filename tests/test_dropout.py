"""training/dropout.py: the cheap CPU dropout mask has dropout's distribution, gradient and model maths."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification

from tuneforge.config import MethodConfig
from tuneforge.methods import get_method
from tuneforge.training.dropout import attention, cpu_dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_the_mask_drops_each_element_independently_at_rate_p(p):
    torch.manual_seed(0)
    keep = keep_mask((1000, 4001), p)  # an odd size: the last int64's lanes are partly used
    n = keep.numel()
    rate = round(p * 65536) / 65536
    dropped = (~keep).float()
    assert abs(dropped.mean().item() - rate) < 5 * (rate * (1 - rate) / n) ** 0.5
    lanes = dropped[:, :4000].reshape(-1, 4)  # the 4 lanes of one random int64, and neighbours across int64s
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 0)]:
        both = (lanes[:, a] * lanes[:, b]).mean().item()
        assert abs(both - rate ** 2) < 5 * (rate ** 2 / lanes.shape[0]) ** 0.5
    columns = lanes.mean(0)  # each lane position alone is fair too (a biased high lane would show here)
    assert ((columns - rate).abs() < 5 * (rate * (1 - rate) / lanes.shape[0]) ** 0.5).all()


def test_dropout_scales_the_kept_elements_its_gradient_is_the_same_mask_and_it_keeps_a_bool():
    x = torch.randn(64, 100, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    y = dropout(x, 0.25)
    torch.manual_seed(1)
    keep = keep_mask(x.shape, 0.25)
    assert torch.equal(y, x.detach() * keep * (1 / 0.75))
    g = torch.randn_like(x)
    (grad,) = torch.autograd.grad(y, x, g)
    assert torch.equal(grad, g * keep * (1 / 0.75))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.dtype) or t, lambda t: t):
        dropout(x, 0.25)
    assert saved == [torch.bool]  # nn.Dropout on CPU keeps its noise in the input's dtype


def test_inside_cpu_dropout_nn_dropout_draws_the_cheap_mask_and_eval_mode_is_untouched():
    layer = torch.nn.Dropout(0.3)
    x = torch.randn(32, 50)
    torch.manual_seed(2)
    with cpu_dropout(torch.device("cpu")):
        inside = layer(x)
    torch.manual_seed(2)
    assert torch.equal(inside, x * keep_mask(x.shape, 0.3) * (1 / 0.7))
    torch.manual_seed(2)
    outside = layer(x)
    torch.manual_seed(2)
    assert torch.equal(outside, F.dropout(x, 0.3, True))  # outside: torch's own bernoulli_ mask, as before
    assert not torch.equal(outside, inside)
    with cpu_dropout(torch.device("cpu")):
        assert torch.equal(layer.eval()(x), x)


@pytest.mark.parametrize("mask_kind", ["bool", "float", "causal", "gqa"])
def test_attention_is_sdpa_with_the_probabilities_dropped(mask_kind):
    torch.manual_seed(3)
    q, k, v = torch.randn(2, 4, 9, 8), torch.randn(2, 4, 9, 8), torch.randn(2, 4, 9, 8)
    kw: dict = {}
    if mask_kind == "bool":
        kw["attn_mask"] = torch.rand(2, 1, 9, 9) > 0.3
        kw["attn_mask"][..., 0] = True
    elif mask_kind == "float":
        kw["attn_mask"] = torch.randn(2, 1, 9, 9)
    elif mask_kind == "causal":
        kw["is_causal"] = True
    else:
        k, v, kw["enable_gqa"] = k[:, :2], v[:, :2], True
    assert torch.allclose(attention(q, k, v, dropout_p=1e-12, **kw), F.scaled_dot_product_attention(q, k, v, **kw),
                          atol=1e-5)
    with cpu_dropout(torch.device("cpu")):
        torch.manual_seed(4)
        dropped = F.scaled_dot_product_attention(q, k, v, dropout_p=0.4, **kw)
    torch.manual_seed(4)
    keep = keep_mask((2, 4, 9, 9), 0.4)
    kk, vv = (k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)) if mask_kind == "gqa" else (k, v)
    scores = q @ kk.transpose(-2, -1) / 8 ** 0.5
    if mask_kind == "causal":
        scores = scores.masked_fill(~torch.ones(9, 9, dtype=torch.bool).tril(), float("-inf"))
    elif mask_kind == "bool":
        scores = scores.masked_fill(~kw["attn_mask"], float("-inf"))
    elif mask_kind == "float":
        scores = scores + kw["attn_mask"]
    assert torch.allclose(dropped, (scores.softmax(-1) * keep / 0.6) @ vv, atol=1e-5)


def tiny_classifier(dropout_p: float) -> torch.nn.Module:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        hidden_dropout_prob=dropout_p, attention_probs_dropout_prob=dropout_p, num_labels=3))


@pytest.mark.parametrize("peft", [False, True])
def test_a_bert_classifier_in_training_mode_computes_the_same_function(peft):
    """With a vanishing drop rate every dropout in BERT (hidden, attention through sdpa, classifier, PEFT's
    lora_dropout) passes through the cheap path and must leave the model's output as eval mode gives it:
    this checks the padding mask, shapes and scaling of the intercepted calls, not only the draws."""
    model = tiny_classifier(1e-9)
    if peft:
        cfg = MethodConfig(name="lora", r=4, alpha=8, dropout=1e-9)
        model = get_method("lora").apply(model, cfg, "classification")
    ids = torch.randint(5, 100, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[0, 7:] = 0
    mask[2, 3:] = 0
    ref = model.eval()(input_ids=ids, attention_mask=mask).logits
    with cpu_dropout(torch.device("cpu")):
        out = model.train()(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(out, ref, atol=1e-5)
    grads = torch.autograd.grad(out.sum(), [p for p in model.parameters() if p.requires_grad])
    assert all(torch.isfinite(g).all() for g in grads)


def test_real_dropout_in_a_training_forward_changes_the_output_by_the_expected_amount():
    model = tiny_classifier(0.5).train()
    ids = torch.randint(5, 100, (4, 12))
    with cpu_dropout(torch.device("cpu")):
        a = model(input_ids=ids).logits
        b = model(input_ids=ids).logits
    assert not torch.allclose(a, b)  # two draws, two masks
    torch.manual_seed(7)
    with cpu_dropout(torch.device("cpu")):
        c = model(input_ids=ids).logits
    torch.manual_seed(7)
    with cpu_dropout(torch.device("cpu")):
        d = model(input_ids=ids).logits
    assert torch.equal(c, d)  # the global generator decides: seeded runs repeat
