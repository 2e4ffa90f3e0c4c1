"""Replay: every training batch gets extra examples from earlier tasks or the reference text.

With fraction f, a batch of n new examples gets round(n·f/(1−f)) replayed ones (so they make up f of the
batch) and the loss is the example-weighted mean over both. Each replayed item carries the task that batches
and scores it, so an earlier classification head and plain reference text can be replayed alike.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import TuneforgeError


@dataclass
class ReplayItem:
    """One example of the replay pool, with the task that knows how to batch it and take its loss."""

    task: Any
    example: Any


class ReplayTask:
    """Wraps the training task: every batch of new data gets extra examples from earlier tasks/reference.

    With fraction f, a batch of n new examples gets round(n·f/(1−f)) replayed ones (so they make up f of
    the batch) and the loss is the example-weighted mean over both. Steps per epoch stay those of the
    new data; the replayed examples are drawn seeded by (seed, epoch), so a resumed run sees the same mix.
    Validation and test examples pass straight through to the wrapped task.
    """

    def __init__(self, task: Any, n_main: int, pool: list[ReplayItem], fraction: float):
        if not 0 < fraction < 1:
            raise TuneforgeError(f"`forgetting.replay` = {fraction}: the replayed share of a batch must be "
                                 "between 0 and 1 (e.g. 0.25)")
        if not pool:
            raise TuneforgeError("`forgetting.replay` found nothing to replay: the earlier tasks or the reference "
                                 "text hold no training examples")
        self.task, self.n_main, self.pool, self.fraction = task, n_main, pool, fraction

    def __getattr__(self, name: str) -> Any:  # evaluate, labels, metadata, ... come from the wrapped task
        return getattr(self.task, name)

    def batches(self, examples: list[Any], batch_size: int, shuffle: bool = False, seed: int = 0) -> list[list[int]]:
        main = self.task.batches(examples[:self.n_main], batch_size, shuffle=shuffle, seed=seed)
        rng = random.Random(seed * 7919 + 1)
        out = []
        for idx in main:
            k = max(1, round(len(idx) * self.fraction / (1 - self.fraction)))
            out.append(list(idx) + [self.n_main + rng.randrange(len(self.pool)) for _ in range(k)])
        return out

    def collate(self, examples: list[Any], idx: list[int], device: torch.device) -> dict[str, Any]:
        main = [i for i in idx if i < self.n_main]
        groups: dict[int, tuple[Any, list[Any]]] = {}
        for i in idx:
            if i >= self.n_main:
                item = examples[i]
                groups.setdefault(id(item.task), (item.task, []))[1].append(item.example)
        replay = [(task, len(exs), task.collate(exs, list(range(len(exs))), device)) for task, exs in groups.values()]
        # one process's share of a batch may hold replayed examples only (training/distributed.py)
        return {"main": self.task.collate(examples, main, device) if main else None, "n_main": len(main),
                "replay": replay}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        total = self.task.loss(model, batch["main"]) * batch["n_main"] if batch["main"] is not None else 0.0
        count = batch["n_main"]
        for task, n, sub in batch["replay"]:
            total = total + task.loss(model, sub) * n
            count += n
        return total / count

    @staticmethod
    def loss_units(batch: dict[str, Any]) -> None:
        return None  # the loss is the example-weighted mean over new and replayed examples

    def tokens(self, batch: dict[str, Any]) -> torch.Tensor:
        main = self.task.tokens(batch["main"]) if batch["main"] is not None else 0
        return main + sum(task.tokens(sub) for task, _, sub in batch["replay"])
