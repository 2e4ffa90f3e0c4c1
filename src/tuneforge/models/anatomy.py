"""Model anatomy: where a Hugging Face model keeps its parts, found in one place.

Methods (freeze's top layers, qlora's full-precision head, LoRA's modules_to_save), the speed levers
(compiling each transformer block), continued runs (growing the classification head) and the causal-LM loss
(body and lm_head) all ask here, through a PEFT wrapper when there is one.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import TuneforgeError

BLOCK_LISTS = ("layers", "layer", "h", "blocks", "block")  # what HF models name their transformer block list
HEAD_NAMES = ("classifier", "score")  # sequence-classification heads (BERT-like, Llama-like)
HEAD_PARTS = HEAD_NAMES + ("out_proj",)  # RoBERTa's head ends in classifier.out_proj


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def layer_stack(model: nn.Module, named_only: bool = False) -> tuple[str, nn.ModuleList] | None:
    """(name, list) of the transformer's block list: the non-empty ModuleList holding the most parameters,
    among those named like a block list (BERT encoder.layer, Llama model.layers) when there are any.
    `named_only`: None unless one is named like that (what may safely be compiled block by block)."""
    stacks = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    named = [(n, m) for n, m in stacks if n.rsplit(".", 1)[-1] in BLOCK_LISTS]
    pool = named if named or named_only else stacks
    if not pool:
        return None
    return max(pool, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))


def transformer_blocks(model: nn.Module) -> nn.ModuleList | None:
    """The model's list of transformer blocks (see layer_stack), if it has one named like that."""
    found = layer_stack(model, named_only=True)
    return found[1] if found else None


def is_embedding(model: nn.Module, name: str) -> bool:
    """Whether parameter `name` belongs to an embedding (an nn.Embedding, or a module named like one)."""
    owner = name.rsplit(".", 1)[0]
    module = model.get_submodule(owner) if owner else model
    return isinstance(module, nn.Embedding) or "embed" in name.lower()


def head_names(model: nn.Module) -> list[str]:
    """The sequence-classification head(s) the model has, by module name (what modules_to_save trains)."""
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    return [h for h in HEAD_NAMES if h in names]


def output_head_name(model: nn.Module) -> str | None:
    """The module name of the output (LM) head, if the model has one."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in model.named_modules():
        if out is not None and module is out:
            return name.rsplit(".", 1)[-1]
    return None


def head_linear(model: nn.Module, n_out: int) -> tuple[nn.Module, str, nn.Linear]:
    """(parent module, attribute, layer) of the final classification projection (n_out outputs)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == n_out \
                and any(part in HEAD_PARTS for part in name.split(".")):
            found = name
    if found is None:
        raise TuneforgeError(f"cannot find the classification head ({n_out} outputs) of {type(model).__name__}")
    parent_name, _, attr = found.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attr, getattr(parent, attr)


def body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The transformer body (hidden states) and the lm_head, through a PEFT wrapper if there is one."""
    core = unwrap(model)
    body, head = core.base_model, core.get_output_embeddings()
    if body is core or head is None:
        raise TuneforgeError(f"{type(core).__name__} is not a causal LM with a separate body and lm_head")
    return body, head


def model_config(model: nn.Module) -> Any:
    """The transformers config, through a PEFT wrapper if there is one."""
    return unwrap(model).config


def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout layer of the body (models built before the config could say)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def mean_pooled(model: nn.Module, input_ids: Any, attention_mask: Any) -> Any:
    """(B, H) float sentence embeddings: the last hidden layer averaged over the real tokens (what
    sentence-transformers' MiniLM does), through the task head's model (it returns hidden states)."""
    return pooled_hidden(model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True),
                         attention_mask)


def pooled_hidden(out: Any, attention_mask: Any) -> Any:
    """mean_pooled of a forward already run with output_hidden_states: a classifier's evaluation gets its
    logits and the linear probe's embeddings from one pass (tasks/classification.py)."""
    hidden = out.hidden_states[-1].float()                          # (B, T, H)
    mask = attention_mask.unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)        # (B, H)


QUERY_NAMES = ("query", "q_proj", "q_lin")  # the attention's query projection (BERT, Llama/Qwen, DistilBERT)


def last_query(model: nn.Module) -> tuple[str, nn.Linear]:
    """(name, layer) of the query projection of the body's last transformer block."""
    blocks = transformer_blocks(model)
    if blocks is None:
        raise TuneforgeError(f"{type(unwrap(model)).__name__} has no transformer block list to pool in")
    last = blocks[-1]
    found = [(n, m) for n, m in last.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in QUERY_NAMES]
    if len(found) != 1:
        raise TuneforgeError(f"`train.pooling: mean` needs a separate query projection ({' | '.join(QUERY_NAMES)}) "
                             f"in the last block of {type(unwrap(model)).__name__}; this model has none (a fused "
                             "one cannot be zeroed alone): use train.pooling: model")
    prefix = next(n for n, m in model.named_modules() if m is last)
    return f"{prefix}.{found[0][0]}", found[0][1]


def pool_by_mean(model: nn.Module) -> str:
    """Make the token the head reads (BERT's [CLS], a decoder's last token) a mean over the text: the last
    block's query projection is zeroed, so every attention score there is equal and each token attends
    uniformly to the real tokens the mask (and, in a decoder, causality) lets it see. The model stays a
    plain Hugging Face classifier. Why: all-MiniLM-L6-v2 was trained for mean pooling, and its pooled [CLS]
    barely tells reviews apart: a standardized logistic-regression probe on the head's input (BERT's pooler
    output) scores 0.773 on the sentiment example's test reviews, 0.913 after this (measured). Returns the zeroed module's name (a PEFT method must save it with its
    adapter, since the base it loads onto still has the original query)."""
    name, query = last_query(model)
    with torch.no_grad():
        query.weight.zero_()
        if query.bias is not None:
            query.bias.zero_()
    return name
