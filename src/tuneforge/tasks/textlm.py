"""Plain text as causal-LM examples: what the forgetting guard measures and replays for language models.

Not a task users pick in a config: the instruction task hands it to the guard as its replay source, and the
LM probe scores the reference text with `perplexity`. It collates, takes the loss and counts tokens like a
task, which is what replay needs to train reference text beside the instruction examples.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..training.device import autocast
from .base import pad_id, pad_right


class TextLM:
    """Plain text as causal-LM examples: the reference perplexity and the replay batches for LMs."""

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def encode(self, texts: list[str]) -> list[list[int]]:
        eos = self.tokenizer.eos_token_id
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length - 1)["input_ids"]
        return [row + ([eos] if eos is not None else []) for row in ids]

    def collate(self, examples: list[list[int]], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        ids, mask = pad_right([examples[i] for i in idx], pad_id(self.tokenizer))
        labels = ids.masked_fill(mask == 0, -100)  # no loss on padding
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device),
                "n_real": mask.sum()}  # n_real stays on the CPU: counting tokens must not wait for the device

    @staticmethod
    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["labels"]).loss

    @staticmethod
    def tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["n_real"]


@torch.no_grad()
def perplexity(model: nn.Module, batches: list[dict[str, torch.Tensor]], device: torch.device,
               dtype: torch.dtype | None) -> float:
    """exp(mean token NLL) over every labelled token of `batches` (token-weighted, not batch-weighted)."""
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    for batch in batches:
        with autocast(device, dtype):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
        nll += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                     ignore_index=-100, reduction="sum"))
        count += int((labels != -100).sum())
    model.train(was_training)
    return math.exp(nll / max(count, 1))
