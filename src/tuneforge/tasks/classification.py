"""Text classification: records → token ids → length-bucketed batches → loss, predictions, metrics.

Binary, multi-class, and multi-label (a list of labels per record) with any Hugging Face encoder or
decoder that has a sequence-classification head.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.records import Record, is_blank, preview, preview_list, require_text
from ..training.device import autocast
from ..errors import DataError
from ..evaluation.metrics import classification_metrics


@dataclass
class Example:
    ids: list[int]
    label: Any  # int, or a 0/1 list for multi-label
    where: str


LABEL_TYPES = "labels are text or integers, or a list of them per record (multi-label)"


def label_set(records: list[Record], column: str) -> tuple[list[str], bool]:
    """The sorted label names of the training data, and whether it is multi-label."""
    kinds: dict[str, Record] = {}  # each kind of label seen -> the first record with it
    names: set[str] = set()
    for r in records:
        kind, record_names = label_names(r, column)
        kinds.setdefault(kind, r)
        names.update(record_names)
    if any(k.startswith("list of") for k in kinds):
        kinds.pop("list", None)  # an empty list fits lists of any kind
    if len(kinds) > 1:
        (k1, r1), (k2, r2) = list(kinds.items())[:2]
        raise DataError(r2.file, r2.line, f"label column mixes types: {k1} at line {r1.line}, {k2} here",
                        "use one type for every label (e.g. all text)")
    if len(names) < 2:
        raise DataError(records[0].file, None, f"only one label ({preview_list(names) or 'none'}) in the training "
                        "data", "classification needs at least two classes")
    return sorted(names, key=_natural), any(k.startswith("list") for k in kinds)


def label_names(r: Record, column: str) -> tuple[str, list[str]]:
    """(kind, names) of a record's label: ("text", ["pos"]), or ("list of text", [...]) for multi-label.

    Names are the label's text: 3 is "3"; 3.0 is "3" as well (pandas writes integer classes with a gap as
    floats), a fraction is a score, not a class; true/false are "true"/"false", as JSON and a CSV cell of
    the same data spell them, and a kind of their own, so true and 1 are never one class by accident."""
    if column not in r.fields:
        raise DataError(r.file, r.line, f"missing label column {preview(column)} (columns: "
                        f"{preview_list(sorted(r.fields)) or 'none'})",
                        f"set data.label to the label column or add {preview(column)}")
    value = r.fields[column]
    if not isinstance(value, list):
        kind, name = _single_label(r, column, value)
        return kind, [name]
    found = [_single_label(r, column, v, inside=True) for v in value]
    kinds = sorted({k for k, _ in found})
    if len(kinds) > 1:
        raise DataError(r.file, r.line, f"label list mixes {kinds[0]} and {kinds[1]}", "use one type for every label")
    return f"list of {kinds[0]}" if kinds else "list", [n for _, n in found]


def _single_label(r: Record, column: str, value: Any, inside: bool = False) -> tuple[str, str]:
    """(kind, name) of one label value, or a DataError saying why the task cannot learn it."""
    where = " inside the label list" if inside else f" in column {preview(column)}"
    if value is None:
        raise DataError(r.file, r.line, f"null label{where}", "give every record a label, or remove the record")
    if isinstance(value, bool):
        return "boolean", "true" if value else "false"
    if isinstance(value, int):
        return "integer", str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return "integer", str(int(value))
        raise DataError(r.file, r.line, f"label {preview(value)}{where} is not a whole number",
                        f"{LABEL_TYPES}; a score is not a class")
    if isinstance(value, str):
        if is_blank(value):
            raise DataError(r.file, r.line, f"empty label{where}", "fill it in, or remove the record")
        return "text", value
    raise DataError(r.file, r.line, f"label {preview(value)}{where} is a {type(value).__name__}", LABEL_TYPES)


def _natural(name: str) -> tuple[int, Any]:
    return (0, int(name)) if name.lstrip("-").isdigit() else (1, name)


class ClassificationTask:
    name = "classification"
    # What `evaluate` computes on validation data (early stopping picks one as val_<name>); `n` is a count.
    validation_metrics = ("loss", "accuracy") + tuple(f"{m}_{avg}" for avg in ("macro", "micro", "weighted")
                                                      for m in ("precision", "recall", "f1"))

    def __init__(self, tokenizer: Any, labels: list[str], text_col: str, label_col: str,
                 max_length: int, multi_label: bool = False, label_smoothing: float = 0.0):
        self.tokenizer, self.labels, self.multi_label = tokenizer, labels, multi_label
        self.text_col, self.label_col, self.max_length = text_col, label_col, max_length
        self.label_smoothing = label_smoothing
        self.index = {name: i for i, name in enumerate(labels)}

    # ------------------------------------------------------------------ data
    def encode(self, records: list[Record], split: str = "train") -> list[Example]:
        require_text(records, self.text_col)
        labels = [self._label(r, split) for r in records]
        texts = [r.fields[self.text_col] for r in records]
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return [Example(i, y, r.where) for i, y, r in zip(ids, labels, records)]

    def encode_unlabelled(self, records: list[Record]) -> list[Example]:
        """For prediction: text only; the label slot holds a placeholder that is never read."""
        require_text(records, self.text_col)
        ids = self.tokenizer([r.fields[self.text_col] for r in records], truncation=True,
                             max_length=self.max_length)["input_ids"]
        blank: Any = [0] * len(self.labels) if self.multi_label else 0
        return [Example(i, blank, r.where) for i, r in zip(ids, records)]

    def metadata(self) -> dict[str, Any]:
        """What model/tuneforge.json must hold to rebuild this task at predict time."""
        return {"labels": self.labels, "multi_label": self.multi_label}

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

    def batches(self, examples: list[Example], batch_size: int, shuffle: bool = False,
                seed: int = 0) -> list[list[int]]:
        """Index lists per batch. Length-bucketed: similar lengths share a batch so little goes to padding."""
        order = list(range(len(examples)))
        rng = random.Random(seed)
        if shuffle:
            rng.shuffle(order)
        chunk = batch_size * 32  # sort within chunks: keeps randomness across chunks
        batches = []
        for start in range(0, len(order), chunk):
            part = sorted(order[start:start + chunk], key=lambda i: len(examples[i].ids))
            batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        if shuffle:
            rng.shuffle(batches)
        return batches

    def collate(self, examples: list[Example], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        rows = [examples[i].ids for i in idx]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, row in enumerate(rows):
            ids[j, :len(row)] = torch.tensor(row)
            mask[j, :len(row)] = 1
        dtype = torch.float if self.multi_label else torch.long
        labels = torch.tensor([examples[i].label for i in idx], dtype=dtype)
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device),
                "n_real": mask.sum()}  # n_real stays on the CPU: counting tokens must not wait for the device

    @staticmethod
    def tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["n_real"]

    # ------------------------------------------------------------------ model
    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.logits(model, batch).float()
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, batch["labels"])
        return F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        """Loss and every metric on `examples` (model left in train mode afterwards if it was)."""
        was_training = model.training
        model.eval()
        total, preds, truth = 0.0, [], []
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                logits = self.logits(model, batch).float()
            total += self._loss_sum(logits, batch["labels"])
            preds.append(self._decide(logits).cpu())
            truth.append(batch["labels"].cpu())
        model.train(was_training)
        y_true = torch.cat(truth).long().numpy()
        y_pred = torch.cat(preds).numpy()
        metrics = classification_metrics(y_true, y_pred, self.labels)
        metrics["loss"] = total / max(len(examples), 1)
        return metrics

    def _loss_sum(self, logits: torch.Tensor, labels: torch.Tensor) -> float:
        if self.multi_label:
            return float(F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1).sum())
        return float(F.cross_entropy(logits, labels, reduction="sum"))

    def _decide(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits > 0).long() if self.multi_label else logits.argmax(-1)

    @torch.no_grad()
    def predict(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                dtype: torch.dtype | None) -> list[dict[str, Any]]:
        """Per example, in input order: the predicted label(s) and the class probabilities."""
        model.eval()
        out: list[dict[str, Any]] = [{} for _ in examples]
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                logits = self.logits(model, batch).float()
            probs = torch.sigmoid(logits) if self.multi_label else logits.softmax(-1)
            for j, i in enumerate(idx):
                p = probs[j].tolist()
                if self.multi_label:
                    label: Any = [self.labels[k] for k, v in enumerate(p) if v > 0.5]
                else:
                    label = self.labels[int(np.argmax(p))]
                out[i] = {"label": label, "probs": dict(zip(self.labels, (round(v, 4) for v in p)))}
        return out
