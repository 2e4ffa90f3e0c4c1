"""Greedy generation: the one path every caller that generates takes.

Batched, with similar prompt lengths batched together and left padding (decoder-only models continue from
the right edge), the KV cache on, deterministic (greedy) unless a `Sampling` asks for temperature / top-p,
stopping at any of the stop ids (and stop strings), and optionally streaming tokens as they come (chat,
serve). The instruction task's evaluation and predictions, the forgetting probe's base-model answers, chat
and the server all call it; each decodes the returned ids its own way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from ..training.device import autocast


@dataclass
class Sampling:
    """What an API caller may ask beyond greedy decoding (OpenAI's temperature, top_p, stop, seed)."""

    temperature: float = 0.0            # 0: greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)  # stop strings (the text is cut before them by the caller)
    seed: int | None = None
    tokenizer: Any = None               # needed by transformers to match stop strings
    stopping: list[Any] = field(default_factory=list)  # extra StoppingCriteria (e.g. a cancelled request)


@torch.no_grad()
def greedy(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, device: torch.device,
           dtype: torch.dtype | None, pad_id: int, stop_ids: list[int] | None, batch_size: int = 16,
           streamer: Any = None, sampling: Sampling | None = None) -> list[list[int]]:
    """The generated ids after each prompt (stop and padding ids included), in the prompts' order.

    `stop_ids` None stops where the model's own generation config says (its eos). A `streamer` receives
    the tokens as they are generated; it needs batch_size 1. `sampling` (temperature > 0) samples instead,
    seeded when it has a seed; its stop strings end generation too."""
    from tqdm.auto import tqdm
    from transformers import GenerationConfig, StoppingCriteriaList

    stop = stop_ids if stop_ids is not None else model.generation_config.eos_token_id
    s = sampling or Sampling()
    sample = {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p} if s.temperature > 0 else \
        {"do_sample": False}
    config = GenerationConfig(max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=stop,
                              stop_strings=s.stop or None, **sample)
    extra: dict[str, Any] = {"tokenizer": s.tokenizer} if s.stop else {}
    if s.stopping:
        extra["stopping_criteria"] = StoppingCriteriaList(s.stopping)
    if s.seed is not None:
        torch.manual_seed(s.seed)
    was_training = model.training
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    # A bar on a terminal for evaluation's and predict's batches (minutes on a CPU); none for chat's one stream.
    bar = tqdm(total=len(prompts), desc="generate", unit="answer", dynamic_ncols=True, leave=False,
               disable=True if streamer is not None or len(prompts) <= batch_size else None)
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            ids, mask = pad_left([prompts[i] for i in idx], pad_id)
            with autocast(device, dtype):
                gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     generation_config=config, streamer=streamer, **extra)
            for r, i in enumerate(idx):
                out[i] = gen[r, ids.shape[1]:].tolist()
            bar.update(len(idx))
    finally:
        bar.close()
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
