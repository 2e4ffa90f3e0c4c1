"""Evaluating a language model on instruction examples: loss and perplexity on the supervised tokens, and on
test splits greedy generations scored against the references (evaluation/genmetrics.py; with data.schema the
JSON answers too, evaluation/structured.py). Three ways in: `evaluate` (the metrics), `evaluate_rows` (the
metrics and a row per example, for intervals, slices and predictions/), and `evaluate_shard` + `merge_shards`
(a distributed run's processes each take a share). A mixin of InstructionTask: it needs `batches`,
`collate`, `loss_sum`, `example_losses`, `generate`, `samples` and `schema`."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ...evaluation.genmetrics import example_scores, generation_metrics, generation_summary, generation_tally
from ...evaluation.structured import structured_metrics
from ...training.device import autocast
from .example import GENERATE_SPLITS, Example


def loss_summary(loss_sum: float, tokens: int, n: int) -> dict[str, Any]:
    """Mean loss per supervised token, its perplexity, and the counts (the part every evaluation shares)."""
    loss = loss_sum / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "n": n, "tokens": tokens}


class Evaluation:
    samples: int
    schema: dict[str, Any] | None

    def evaluate(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None, generate: bool | None = None) -> dict[str, Any]:
        """Loss and perplexity on the supervised tokens; generation metrics too on test/eval splits.
        `generate=None` generates for examples from GENERATE_SPLITS that have a reference, so validation
        during training stays cheap (loss only) while base/final test evaluations compare generations.
        `evaluate_rows` computes the same with a row per example; evaluate_shard + merge_shards split the work
        between the processes of a distributed run.
        """
        return self.merge_shards([self.evaluate_shard(model, examples, batch_size, device, dtype, generate)],
                                 examples)

    @torch.no_grad()
    def evaluate_shard(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                       dtype: torch.dtype | None, generate: bool | None = None) -> dict[str, Any]:
        """Summed loss and supervised tokens of `examples`, and the replies to those evaluate generates for."""
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                s, n = self.loss_sum(model, batch)
            total, count = total + float(s), count + n
        gen = self._to_generate(examples, generate)
        outputs = self.generate(model, [examples[i].prompt or [] for i in gen], batch_size, device, dtype) \
            if gen else []
        model.train(was_training)
        return {"loss_sum": total, "tokens": count, "outputs": outputs}

    def merge_shards(self, shards: list[dict[str, Any]], examples: list[Example]) -> dict[str, Any]:
        out = loss_summary(sum(s["loss_sum"] for s in shards), sum(s["tokens"] for s in shards), len(examples))
        outputs = [o for s in shards for o in s["outputs"]]  # contiguous shares, in order: the examples' order
        if outputs:
            out.update(self._generation_report([e for e in examples if e.reference is not None and e.prompt],
                                               outputs))
        return out

    def _to_generate(self, examples: list[Example], generate: bool | None) -> list[int]:
        """The examples evaluation generates for (by default: those of GENERATE_SPLITS with a reference)."""
        gen = [i for i, e in enumerate(examples) if e.reference is not None and e.prompt]
        if generate is None:
            generate = bool(gen) and all(examples[i].split in GENERATE_SPLITS for i in gen)
        return gen if generate else []

    @torch.no_grad()
    def evaluate_rows(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                      dtype: torch.dtype | None, generate: bool | None = None
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """`evaluate`'s metrics and a row per example: its loss and tokens, and where it was generated,
        the prompt, reference, answer and the answer's scores."""
        was_training = model.training
        model.eval()
        losses, tokens = torch.zeros(len(examples)), torch.zeros(len(examples))
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                s, n = self.example_losses(model, batch, len(idx))
            losses[idx], tokens[idx] = losses[idx] + s, tokens[idx] + n
        out = loss_summary(float(losses.sum()), int(tokens.sum()), len(examples))
        rows = [{"where": e.where, "length": len(e.prompt or e.ids), "loss": round(float(losses[i]), 4),
                 "tokens": int(tokens[i])} for i, e in enumerate(examples)]
        gen = self._to_generate(examples, generate)
        if gen:
            outputs = self.generate(model, [examples[i].prompt or [] for i in gen], batch_size, device, dtype)
            out.update(self._generation_report([examples[i] for i in gen], outputs, [rows[i] for i in gen]))
        model.train(was_training)
        return out, rows

    def example_nll(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                    dtype: torch.dtype | None) -> tuple[np.ndarray, np.ndarray]:
        """Each example's summed cross-entropy over its supervised tokens, and their number (no generation)."""
        _, rows = self.evaluate_rows(model, examples, batch_size, device, dtype, generate=False)
        return np.array([r["loss"] for r in rows]), np.array([max(r["tokens"], 1) for r in rows])

    def _generation_report(self, gen: list[Example], outputs: list[str],
                           rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Generation metrics and samples; each example's row (if given) gets its prompt, reference, answer and
        scores."""
        references = [e.reference or "" for e in gen]
        metrics: dict[str, Any] = generation_metrics(outputs, references, [e.fact for e in gen])
        for e, o, row in zip(gen, outputs, rows or []):
            row.update({"prompt": e.question, "reference": e.reference, "generated": o,
                        **({"fact": e.fact} if e.fact else {}), **example_scores(o, e.reference or "", e.fact)})
        metrics["samples"] = [{"where": e.where, "prompt": e.question, "reference": e.reference,
                               "generated": o, **({"fact": e.fact} if e.fact else {})}
                              for e, o in list(zip(gen, outputs))[:self.samples]]
        if self.schema is not None:  # JSON answers: validity, schema validity, field-level scores, invalid ones
            metrics.update(structured_metrics(outputs, references, self.schema, [e.where for e in gen]))
        return metrics

    @classmethod
    def tally(cls, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        return generation_tally(rows) if rows else None

    @classmethod
    def summarize(cls, sums: dict[str, Any]) -> dict[str, Any]:
        return generation_summary(sums)
