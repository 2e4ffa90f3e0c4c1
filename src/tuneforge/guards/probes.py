"""Forgetting probes: what the guard measures before and after training.

- LMProbe (language models): perplexity on general text, and on the base model's own greedy answers to
  general prompts (answered once, before training; re-scored after).
- EmbeddingProbe (text encoders): the geometry of mean-pooled sentence embeddings on general text, as the
  Pearson correlation of pairwise cosine similarities before vs after (1.0 = unchanged).
- PreviousTasksProbe (continued runs): the accuracy of every earlier task on its own test data, through its
  own slice of the shared head.
The task picks LMProbe or EmbeddingProbe (Task.forgetting_probe); the guard builds PreviousTasksProbe from
the earlier tasks the train recipe prepared. Each has `metric`, `measure(model, first)` and `details()`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.reference import Reference
from ..errors import TuneforgeError
from ..evaluation.generation import greedy
from ..models.anatomy import mean_pooled
from ..tasks.base import pad_id, pad_right
from ..tasks.textlm import TextLM, perplexity
from ..training.device import autocast

ANSWER_BATCH = 16  # prompts per generation batch and (prompt, answer) pairs per scoring batch


class LMProbe:
    """Instruction models: perplexity on general text, and on the base model's own answers to general prompts."""

    metric = "perplexity"

    def __init__(self, ref: Reference, tokenizer: Any, max_length: int, samples: int, max_new_tokens: int,
                 device: torch.device, dtype: torch.dtype | None):
        self.lm, self.tokenizer, self.device, self.dtype = TextLM(tokenizer, max_length), tokenizer, device, dtype
        texts = self.lm.encode(ref.texts[:samples]) if ref.texts else []
        self.text_batches = [self.lm.collate(texts, list(range(i, min(i + 16, len(texts)))), device)
                             for i in range(0, len(texts), 16)]
        self.prompts = ref.prompts[:samples]
        self.max_new_tokens = max_new_tokens
        self.answer_batches: list[dict[str, torch.Tensor]] = []
        self.answers: list[str] = []

    def measure(self, model: nn.Module, first: bool) -> dict[str, Any]:
        if first and self.prompts:  # the base model answers once; later we re-score those answers
            self.answers = base_answers(model, self.tokenizer, self.prompts, self.max_new_tokens, self.device,
                                        self.dtype)
            self.answer_batches = answer_batches(self.tokenizer, self.prompts, self.answers, self.device)
        out: dict[str, Any] = {}
        if self.text_batches:
            out["perplexity"] = perplexity(model, self.text_batches, self.device, self.dtype)
        if self.answer_batches:
            out["base_answer_perplexity"] = perplexity(model, self.answer_batches, self.device, self.dtype)
        return out

    def details(self) -> dict[str, Any]:
        return {"texts": sum(len(b["input_ids"]) for b in self.text_batches), "prompts": len(self.prompts),
                "sample_answers": [{"prompt": p, "base_answer": a} for p, a in zip(self.prompts[:3], self.answers[:3])]}


def chat_text(tokenizer: Any, prompt: str) -> str:
    """The prompt as the model sees it at inference: its chat template when it has one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt + "\n"


def base_answers(model: nn.Module, tokenizer: Any, prompts: list[str], max_new_tokens: int, device: torch.device,
                 dtype: torch.dtype | None) -> list[str]:
    """Greedy answers (deterministic, so before/after differences are the model's, not sampling noise),
    stopping where the model's own generation config says."""
    ids = [tokenizer(chat_text(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    new = greedy(model, ids, max_new_tokens, device, dtype, tokenizer.pad_token_id, None, ANSWER_BATCH)
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def answer_batches(tokenizer: Any, prompts: list[str], answers: list[str], device: torch.device,
                   batch_size: int = ANSWER_BATCH) -> list[dict[str, torch.Tensor]]:
    """(prompt, answer) pairs with the loss on the answer tokens only."""
    rows = []
    for p, a in zip(prompts, answers):
        if not a:
            continue
        head = tokenizer(chat_text(tokenizer, p), add_special_tokens=False)["input_ids"]
        tail = tokenizer(a, add_special_tokens=False)["input_ids"]
        rows.append((head, tail))
    batches = []
    for i in range(0, len(rows), batch_size):
        part = rows[i:i + batch_size]
        ids, mask = pad_right([h + t for h, t in part], pad_id(tokenizer))
        labels, _ = pad_right([[-100] * len(h) + t for h, t in part], -100)
        batches.append({"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)})
    return batches


class EmbeddingProbe:
    """Classifiers: how well the body keeps the geometry of its sentence embeddings on general text.

    The metric is the Pearson correlation between the pairwise cosine similarities of mean-pooled
    last-layer embeddings before and after training (1.0 = unchanged geometry).
    """

    metric = "embedding_geometry"

    def __init__(self, ref: Reference, tokenizer: Any, max_length: int, samples: int, device: torch.device,
                 dtype: torch.dtype | None):
        self.device, self.dtype = device, dtype
        texts = ref.texts[:samples]
        self.batches = [tokenizer(texts[i:i + 32], truncation=True, max_length=max_length, padding=True,
                                  return_tensors="pt").to(device) for i in range(0, len(texts), 32)]
        self.base: torch.Tensor | None = None

    @torch.no_grad()
    def similarities(self, model: nn.Module) -> torch.Tensor:
        was_training = model.training
        model.eval()
        pooled = []
        for enc in self.batches:
            with autocast(self.device, self.dtype):
                pooled.append(mean_pooled(model, enc["input_ids"], enc["attention_mask"]))  # (B, H)
        model.train(was_training)
        emb = F.normalize(torch.cat(pooled), dim=-1)
        sims = emb @ emb.T
        upper = torch.triu_indices(len(sims), len(sims), offset=1)
        return sims[upper[0], upper[1]].cpu()

    def measure(self, model: nn.Module, first: bool) -> dict[str, Any]:
        sims = self.similarities(model)
        if first:
            self.base = sims
        if self.base is None:
            raise TuneforgeError("the embedding probe measures a change: call measure(model, first=True) first")
        corr = torch.corrcoef(torch.stack([self.base, sims]))[0, 1]
        return {"embedding_geometry": float(corr)}

    def details(self) -> dict[str, Any]:
        return {"texts": sum(len(b["input_ids"]) for b in self.batches)}


@dataclass
class PreviousTask:
    """An earlier task of a continued run: its head-sliced task and its train/test examples."""

    name: str
    run: str
    task: Any
    train: list[Any]
    test: list[Any]


class PreviousTasksProbe:
    """Continued runs: accuracy of every earlier task on its own test data, through its own head."""

    metric = "accuracy"

    def __init__(self, previous: list[PreviousTask], batch_size: int, device: torch.device, dtype: torch.dtype | None):
        self.previous, self.batch_size, self.device, self.dtype = previous, batch_size, device, dtype

    def measure(self, model: nn.Module, first: bool) -> dict[str, Any]:
        per_task = {p.name: float(p.task.evaluate(model, p.test, self.batch_size, self.device, self.dtype)["accuracy"])
                    for p in self.previous}
        return {"accuracy": sum(per_task.values()) / len(per_task), "tasks": per_task}

    def details(self) -> dict[str, Any]:
        return {"previous": [{"name": p.name, "run": p.run, "test_examples": len(p.test)} for p in self.previous]}
