"""Greedy generation: the one path every caller that generates takes.

Batched, with similar prompt lengths batched together and left padding (decoder-only models continue from
the right edge), the KV cache on, deterministic (greedy), stopping at any of the stop ids, and optionally
streaming tokens as they come (chat). The instruction task's evaluation and predictions, the forgetting
probe's base-model answers and chat all call it; each decodes the returned ids its own way.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..training.device import autocast


@torch.no_grad()
def greedy(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, device: torch.device,
           dtype: torch.dtype | None, pad_id: int, stop_ids: list[int] | None, batch_size: int = 16,
           streamer: Any = None) -> list[list[int]]:
    """The generated ids after each prompt (stop and padding ids included), in the prompts' order.

    `stop_ids` None stops where the model's own generation config says (its eos). A `streamer` receives
    the tokens as they are generated; it needs batch_size 1."""
    from transformers import GenerationConfig

    stop = stop_ids if stop_ids is not None else model.generation_config.eos_token_id
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id, eos_token_id=stop)
    was_training = model.training
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            ids, mask = pad_left([prompts[i] for i in idx], pad_id)
            with autocast(device, dtype):
                gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     generation_config=config, streamer=streamer)
            for r, i in enumerate(idx):
                out[i] = gen[r, ids.shape[1]:].tolist()
    finally:
        model.train(was_training)
    return out


def pad_left(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of shape (rows, longest row), each row right-aligned after `pad` ids (mask 0 there)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row):] = torch.tensor(row)
        mask[r, width - len(row):] = 1
    return ids, mask
