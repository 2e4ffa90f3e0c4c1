"""Text classification: records → token ids → length-bucketed batches → loss, predictions, metrics.

Binary, multi-class, and multi-label (a list of labels per record) with any Hugging Face encoder or
decoder that has a sequence-classification head. A run continued from an earlier one (`init_from`) is a
HeadTask: its labels are a slice of one head shared with the earlier tasks (tasks/heads.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.records import Record, preview, preview_list
from ..errors import DataError, TuneforgeError, show
from ..evaluation.metrics import (CLASSIFICATION_DIRECTIONS, classification_metrics, classification_summary,
                                  classification_tally)
from ..methods.base import suggest
from ..models.anatomy import pooled_hidden, set_dropout
from ..training.device import autocast
from .base import EarlierRun
from .heads import grow_head, heads_for
from .labels import label_names, label_set
from .text import TextTask

if TYPE_CHECKING:
    from ..config import Config


@dataclass
class Example:
    ids: list[int]
    label: Any  # int, or a 0/1 list for multi-label
    where: str
    text: str = ""  # the (redacted) input, for the report's misclassified examples


class ClassificationTask(TextTask):
    name = "classification"
    headline = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
    primary_metric = "accuracy"
    curve_metric = "f1_macro"
    metrics = CLASSIFICATION_DIRECTIONS  # `n` (a count) is computed too, but is no metric
    shards_evaluation = True
    showcase = {"errors": "Misclassified examples, most confident first"}
    output_fields = ("predicted",)
    correct_column = "correct"
    calibratable = True
    supports_dp = True  # its loss is the mean of per-example cross-entropies (privacy.dp)

    def __init__(self, tokenizer: Any, labels: list[str], text_col: str, label_col: str,
                 max_length: int, multi_label: bool = False, label_smoothing: float = 0.0, samples: int = 5,
                 temperature: float = 1.0):
        super().__init__(tokenizer, text_col, max_length, torch.float if multi_label else torch.long,
                         "multi_label_classification" if multi_label else "single_label_classification")
        self.labels, self.multi_label, self.label_col = labels, multi_label, label_col
        self.label_smoothing = label_smoothing
        self.samples = samples  # misclassified examples kept in eval.json (eval.samples)
        self.temperature = temperature  # predict's logits / temperature (eval.calibrate)
        self.index = {name: i for i, name in enumerate(labels)}

    # ------------------------------------------------------------------ the config's questions
    @classmethod
    def stratify_column(cls, cfg: "Config") -> str | None:
        return cfg.data.label

    @classmethod
    def config_problems(cls, cfg: "Config") -> list[str]:
        problems = []
        if cfg.data.text == cfg.data.label:
            problems.append(f"`data.text` and `data.label` both name the column {show(cfg.data.text)}: the model would "
                            "read its answer; point data.text at the input text column")
        for key, value in (("replay", cfg.forgetting.replay), ("ewc", cfg.forgetting.ewc)):
            if value and not cfg.init_from:
                problems.append(f"`forgetting.{key}` = {value} needs an earlier task to protect: set init_from: "
                                "runs/<earlier run>")
        return problems

    @classmethod
    def overfit_advice(cls, cfg: "Config | None") -> list[str]:
        now = cfg.train.label_smoothing if cfg is not None else 0.0
        if not now:
            return ["try train.label_smoothing: 0.1"]
        return [suggest("train.label_smoothing", now, round(min(0.3, now + 0.1), 2))] if now < 0.3 else []

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg: "Config", tokenizer: Any, train_records: list[Record]) -> "ClassificationTask":
        """Labels from the training data; continuing an earlier run (init_from), a new head beside its heads."""
        labels, multi = label_set(train_records, cfg.data.label)
        task = cls(tokenizer, labels, cfg.data.text, cfg.data.label, cfg.data.max_length,
                   multi_label=multi, label_smoothing=cfg.train.label_smoothing, samples=cfg.eval.samples)
        if not cfg.init_from:
            return task
        if task.multi_label:
            raise TuneforgeError("`init_from` with a multi-label task is not supported yet")
        heads = heads_for(cfg, list(task.labels))
        return HeadTask.wrap(task, heads[-1]["offset"], heads)

    @classmethod
    def from_saved(cls, cfg: "Config", tokenizer: Any, meta: dict[str, Any]) -> "ClassificationTask":
        task = cls(tokenizer, meta["labels"], cfg.data.text, cfg.data.label, cfg.data.max_length,
                   multi_label=meta.get("multi_label", False), samples=cfg.eval.samples,
                   temperature=float(meta.get("temperature", 1.0)))
        if meta.get("heads"):  # a continued run: one shared head, this task's slice of it
            return HeadTask.wrap(task, meta["offset"], meta["heads"])
        return task

    def metadata(self) -> dict[str, Any]:
        """What model/tuneforge.json must hold to rebuild this task at predict time."""
        meta: dict[str, Any] = {"labels": self.labels, "multi_label": self.multi_label}
        if self.temperature != 1.0:  # eval.calibrate: predict (and any server) divides the logits by it
            meta["temperature"] = self.temperature
        return meta

    def set_temperature(self, temperature: float) -> None:
        self.temperature = temperature

    @property
    def model_labels(self) -> list[str]:
        return list(self.labels)

    def continue_model(self, model: nn.Module, cfg: "Config") -> nn.Module:
        """The earlier run's model with this task's rows appended to the shared head."""
        model = grow_head(model, self)
        if cfg.train.model_dropout is not None:
            set_dropout(model, cfg.train.model_dropout)
        model.train()
        return model

    # ------------------------------------------------------------------ data
    def encode(self, records: list[Record], split: str = "train") -> list[Example]:
        ids = self.token_ids(records)
        labels = [self._label(r, split) for r in records]
        return [Example(i, y, r.where, r.fields[self.text_col]) for i, y, r in zip(ids, labels, records)]

    def encode_unlabelled(self, records: list[Record]) -> list[Example]:
        """For prediction: text only; the label slot holds a placeholder that is never read."""
        blank: Any = [0] * len(self.labels) if self.multi_label else 0
        return [Example(i, blank, r.where) for i, r in zip(self.token_ids(records), records)]

    def _label(self, r: Record, split: str) -> Any:
        kind, names = label_names(r, self.label_col)
        if kind.startswith("list") and not self.multi_label:
            raise DataError(r.file, r.line, f"label {preview(r.fields[self.label_col])} is a list, but the "
                            "training labels are single values",
                            "give one label per record, or lists in train too (multi-label)")
        unknown = [n for n in names if n not in self.index]
        if unknown:
            raise DataError(r.file, r.line, f"label {preview(unknown[0])} in {split} never occurs in train "
                            f"(train labels: {preview_list(self.labels)})", "fix the label or add train examples")
        if self.multi_label:
            hot = [0] * len(self.labels)
            for n in names:
                hot[self.index[n]] = 1
            return hot
        return self.index[names[0]]

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.logits(model, batch).float()
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, batch["labels"])
        return F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)

    def evaluate(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        """Loss and every metric on `examples` (model left in train mode afterwards if it was)."""
        return self.merge_shards([self.evaluate_shard(model, examples, batch_size, device, dtype)], examples)

    def evaluate_shard(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                       dtype: torch.dtype | None) -> dict[str, Any]:
        """Summed loss and logits of `examples` (one process's part of a split)."""
        total, logits = self._forward(model, examples, batch_size, device, dtype)
        return {"loss_sum": total, "logits": logits.numpy()}

    def _forward(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None) -> tuple[float, torch.Tensor]:
        """(summed loss, logits (n, classes) in example order); the model left in train mode if it was."""
        total, logits, _ = self._forward_pooled(model, examples, batch_size, device, dtype, pool=False)
        return total, logits

    @torch.no_grad()
    def _forward_pooled(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                        dtype: torch.dtype | None, pool: bool) -> tuple[float, torch.Tensor, np.ndarray | None]:
        """_forward, and with `pool` also `embed`'s features of the same pass: the same batches, and the
        logits do not change with output_hidden_states, so both are bit-identical to their own passes."""
        was_training = model.training
        model.eval()
        total, logits, pooled = 0.0, torch.zeros((len(examples), len(self.labels))), None
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                out, feats = self._logits_and_features(model, batch, pool)
            total += self._loss_sum(out, batch["labels"])
            logits[idx] = out.cpu()
            if feats is not None:
                pooled = np.zeros((len(examples), feats.shape[1]), dtype=np.float32) if pooled is None else pooled
                pooled[idx] = feats.cpu().numpy()
        model.train(was_training)
        return total, logits, pooled

    def _logits_and_features(self, model: nn.Module, batch: dict[str, torch.Tensor],
                             pool: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(float logits, mean-pooled last hidden layer or None) of one batch, from one forward."""
        if not pool:
            return self.logits(model, batch).float(), None
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        return self.head_logits(out.logits).float(), pooled_hidden(out, batch["attention_mask"])

    def head_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """This task's columns of the model's logits (all of them; HeadTask: its slice of the shared head)."""
        return logits

    def merge_shards(self, shards: list[dict[str, Any]], examples: list[Example]) -> dict[str, Any]:
        """The metrics of the whole split from its parts (contiguous shares, in the examples' order)."""
        logits = torch.from_numpy(np.concatenate([s["logits"] for s in shards]))
        y_true = np.array([e.label for e in examples], dtype=int)
        metrics = classification_metrics(y_true, self._decide(logits).numpy(), self.labels)
        metrics["loss"] = sum(s["loss_sum"] for s in shards) / max(len(examples), 1)
        return metrics

    def evaluate_rows(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                      dtype: torch.dtype | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The metrics, the most confident mistakes ("errors"), and a row per example: where, length, text,
        label, predicted, confidence, probs and logits."""
        total, logits = self._forward(model, examples, batch_size, device, dtype)
        return self._metrics_and_rows(examples, total, logits)

    def evaluate_rows_embedded(self, model: nn.Module, examples: list[Example], batch_size: int,
                               device: torch.device, dtype: torch.dtype | None
                               ) -> tuple[dict[str, Any], list[dict[str, Any]], np.ndarray | None]:
        """evaluate_rows and `embed`'s features from one forward. Measured on the sentiment example (MiniLM,
        bf16, 120 validation + 300 test, one core, min of 3): the base evaluation and the baselines took
        14.9 s with the probe's own pass over those sets, 11.0 s with this one."""
        total, logits, feats = self._forward_pooled(model, examples, batch_size, device, dtype, pool=True)
        metrics, rows = self._metrics_and_rows(examples, total, logits)
        return metrics, rows, feats  # None (no examples): the probe embeds the set itself

    def _metrics_and_rows(self, examples: list[Example], total: float, logits: torch.Tensor
                          ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        metrics = self.merge_shards([{"loss_sum": total, "logits": logits.numpy()}], examples)  # one shard: all
        rows = self.prediction_rows(examples, self._probs(logits).numpy(), logits.numpy())
        for row, loss in zip(rows, self._losses(logits, examples)):
            row["loss"] = round(float(loss), 6)  # the memorization audit's score of a held-out example
        wrong = sorted((r for r in rows if r["label"] != r["predicted"]), key=lambda r: -r["confidence"])
        metrics["errors"] = [{k: r[k] for k in ("where", "text", "label", "predicted", "confidence")}
                             for r in wrong[:self.samples]]
        return metrics, rows

    def example_nll(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                    dtype: torch.dtype | None) -> tuple[np.ndarray, np.ndarray]:
        """Each example's cross-entropy (multi-label: mean binary cross-entropy over the labels), one unit each."""
        _, logits = self._forward(model, examples, batch_size, device, dtype)
        return self._losses(logits, examples), np.ones(len(examples))

    def evaluate_and_score(self, model: nn.Module, examples: list[Example], scored: int, batch_size: int,
                           device: torch.device, dtype: torch.dtype | None
                           ) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
        """One pass in two shares: examples[:scored] batched alone, exactly as example_nll batches them (a
        logit depends on its batch's padding: 28 of 256 differed, up to 4e-4 in bf16), so the audit's losses
        stay bit-identical; the metrics merge both shares. Measured on the sentiment example (MiniLM, train
        probe 512 led by the audit's 256 members, bf16, one core, min of 3): two passes 6.7 s, this 4.5 s."""
        head, rest = (self.evaluate_shard(model, part, batch_size, device, dtype)
                      for part in (examples[:scored], examples[scored:]))
        nll = self._losses(torch.from_numpy(head["logits"]), examples[:scored]), np.ones(scored)
        return self.merge_shards([head, rest], examples), nll

    def _losses(self, logits: torch.Tensor, examples: list[Example]) -> np.ndarray:
        """Each example's cross-entropy (multi-label: mean binary cross-entropy over the labels)."""
        labels = torch.tensor(np.array([e.label for e in examples]), dtype=torch.float if self.multi_label else torch.long)
        per = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1) if self.multi_label \
            else F.cross_entropy(logits, labels, reduction="none")
        return per.numpy()

    def prediction_rows(self, examples: list[Example], probs: np.ndarray,
                        logits: np.ndarray | None = None) -> list[dict[str, Any]]:
        """One row per example for predictions/<split>.jsonl (and the baselines, scored the same way)."""
        rows = []
        for j, e in enumerate(examples):
            p = probs[j]
            row: dict[str, Any] = {"where": e.where, "length": len(e.ids), "text": e.text,
                                   "label": self._names(e.label), "predicted": self._names(self._pick(p)),
                                   "confidence": round(float(p.max()), 4),
                                   "probs": {n: round(float(v), 4) for n, v in zip(self.labels, p)}}
            if logits is not None:
                row["logits"] = [round(float(v), 4) for v in logits[j]]
            rows.append(row)
        return rows

    def _names(self, label: Any) -> Any:
        return [self.labels[k] for k, v in enumerate(label) if v] if self.multi_label else self.labels[int(label)]

    def _pick(self, p: np.ndarray) -> Any:
        return (p > 0.5).astype(int).tolist() if self.multi_label else int(np.argmax(p))

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        z = logits / self.temperature
        return torch.sigmoid(z) if self.multi_label else z.softmax(-1)

    # ------------------------------------------------------------------ per-example results (evaluation/)
    @classmethod
    def tally(cls, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        return classification_tally(rows, list(rows[0]["probs"])) if rows else None

    @classmethod
    def summarize(cls, sums: dict[str, Any]) -> dict[str, Any]:
        return classification_summary(sums)

    @classmethod
    def auto_slices(cls, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
        return {"true label": [", ".join(r["label"]) if isinstance(r["label"], list) else str(r["label"])
                               for r in rows]}

    @classmethod
    def slice_metrics(cls, slicing: str, metrics: list[str]) -> list[str]:
        """Within one true class, macro precision/recall/F1 average over classes that are not there (a
        slice of 100 negatives read "precision_macro 0.333"): only accuracy, which is that class's recall."""
        return [m for m in metrics if m == "accuracy"] if slicing == "true label" else metrics

    @classmethod
    def scores(cls, rows: list[dict[str, Any]]) -> Any | None:
        from ..evaluation.calibration import Scores

        if not rows or "logits" not in rows[0]:
            return None
        names = list(rows[0]["probs"])
        truth = np.array([[float(n in (r["label"] if isinstance(r["label"], list) else [r["label"]]))
                           for n in names] for r in rows])
        return Scores(names, truth, np.array([r["logits"] for r in rows], dtype=float),
                      isinstance(rows[0]["label"], list))

    def probe_labels(self, examples: list[Example]) -> np.ndarray | None:
        return None if self.multi_label else np.array([e.label for e in examples], dtype=int)

    def baselines(self, model: nn.Module, train: list[Example], eval_sets: dict[str, list[Example]],
                  batch_size: int, device: torch.device, dtype: torch.dtype | None,
                  features: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """The majority class, and a linear probe on the frozen model's embeddings (evaluation/baselines.py).
        `features`: eval sets' embeddings of `model` already taken (evaluate_rows_embedded), not embedded again."""
        from ..evaluation.baselines import linear_probe, majority_probs, probe_sample

        if self.multi_label or not train:
            return {}
        y = np.array([e.label for e in train], dtype=int)
        prior = majority_probs(y, len(self.labels))
        majority = np.zeros(len(self.labels))
        majority[int(np.argmax(prior))] = 1.0
        out = {"majority class": {s: self.prediction_rows(ex, np.tile(majority, (len(ex), 1)))
                                  for s, ex in eval_sets.items()}}
        sample = [train[i] for i in probe_sample(len(train), seed=0)]
        if model is not None and len({e.label for e in sample}) > 1:  # None (scratch): no pretrained features
            given = features or {}
            feats = {s: given[s] if s in given else self.embed(model, ex, batch_size, device, dtype)
                     for s, ex in eval_sets.items()}
            x_train = self.embed(model, sample, batch_size, device, dtype)
            probs = linear_probe(x_train, np.array([e.label for e in sample]), feats, len(self.labels))
            out[f"linear probe ({len(sample):,} train)"] = {s: self.prediction_rows(ex, probs[s])
                                                            for s, ex in eval_sets.items()}
        return out

    def _loss_sum(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        if self.multi_label:
            return float(F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1).sum())
        return float(F.cross_entropy(logits, labels, reduction="sum"))

    def _decide(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits > 0).long() if self.multi_label else logits.argmax(-1)

    @torch.no_grad()
    def predict(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                dtype: torch.dtype | None) -> list[dict[str, Any]]:
        """Per example, in input order: the predicted label(s) and the class probabilities (calibrated by
        the run's temperature when eval.calibrate fitted one)."""
        model.eval()
        out: list[dict[str, Any]] = [{} for _ in examples]
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                logits = self.logits(model, batch).float()
            probs = self._probs(logits)
            for j, i in enumerate(idx):
                p = probs[j].tolist()
                out[i] = {"label": self._names(self._pick(np.array(p))),
                          "probs": dict(zip(self.labels, (round(v, 4) for v in p)))}
        return out


class HeadTask(ClassificationTask):
    """A classification task that reads its logits from columns [offset, offset + len(labels)) of a shared head."""

    def __init__(self, *args: Any, offset: int = 0, heads: list[dict[str, Any]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.offset, self.heads = offset, heads or []

    @classmethod
    def wrap(cls, task: ClassificationTask, offset: int, heads: list[dict[str, Any]]) -> "HeadTask":
        return cls(task.tokenizer, task.labels, task.text_col, task.label_col, task.max_length,
                   multi_label=task.multi_label, label_smoothing=task.label_smoothing, samples=task.samples,
                   temperature=task.temperature, offset=offset, heads=heads)

    @property
    def model_labels(self) -> list[str]:
        """Every output of the shared head, named task:label (what the HF config's id2label holds)."""
        if not self.heads:
            return list(self.labels)
        return [f"{h['name']}:{label}" for h in self.heads for label in h["labels"]]

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head_logits(super().logits(model, batch))

    def head_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, self.offset:self.offset + len(self.labels)]  # (B, all heads' labels) → this task's

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "heads": self.heads, "offset": self.offset}

    def earlier_runs(self) -> list[EarlierRun]:
        """Every head before this task's, each read through its own slice of this model's shared head."""
        return [EarlierRun(h["name"], h["run"], lambda task, offset=h["offset"]: HeadTask.wrap(task, offset, []))
                for h in self.heads[:-1]]
