"""Tasks that read one text column and predict through a classification head on the encoder's (or decoder's)
hidden states: one thing per text (transformers' AutoModelForSequenceClassification: classification, and any
task of the same shape, a score, a rating), or one label per token (AutoModelForTokenClassification:
token_classification, which overrides the batches). What they share lives here: the text column,
tokenization, padded batches, the model with its head, the head's module names, and the embedding-geometry
forgetting probe.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..data.records import Record, require_text
from ..models import anatomy
from ..models import loading
from ..training.device import autocast
from .base import Task, pad_id, pad_right

if TYPE_CHECKING:
    from ..config import Config
    from ..data.reference import Reference
    from ..models.loading import ModelSource


class TextTask(Task):
    """One text column in (data.text), a head over the sequence out. Subclasses define the labels."""

    peft_task_type = "SEQ_CLS"
    auto_class = "AutoModelForSequenceClassification"
    has_head = True
    pools = True  # one output per sequence, read off one token: train.pooling can make that token a mean

    def __init__(self, tokenizer: Any, text_col: str, max_length: int, label_dtype: torch.dtype = torch.long,
                 problem_type: str | None = None):
        self.tokenizer, self.text_col, self.max_length = tokenizer, text_col, max_length
        self.label_dtype = label_dtype  # of the collated labels tensor
        self.problem_type = problem_type  # transformers' config.problem_type (None: single-label classification)
        self.notes: list[str] = []

    @property
    @abstractmethod
    def model_labels(self) -> list[str]:
        """The head's output names, one per output unit (what the HF config's id2label holds)."""

    def base_config(self) -> dict[str, Any]:
        """The head's size and label names (and the padding id a decoder's head looks for): what
        AutoModelForSequenceClassification and pipeline() need to print real labels, not LABEL_0."""
        labels = self.model_labels
        return {"num_labels": len(labels), "id2label": {str(i): name for i, name in enumerate(labels)},
                "label2id": {name: i for i, name in enumerate(labels)}, "pad_token_id": pad_id(self.tokenizer),
                "problem_type": self.problem_type or "single_label_classification"}

    def intended_use(self, cfg: "Config") -> str:
        return (f"Labels one text (column `{self.text_col}`, at most {self.max_length} tokens) with one of: "
                + ", ".join(f"`{n}`" for n in self.model_labels) + ". It knows only these labels and the kind of "
                "text it was trained on; measure it on your own data before relying on it, and keep a person "
                "in the loop for decisions about people.")

    # ------------------------------------------------------------------ data
    def token_ids(self, records: list[Record]) -> list[list[int]]:
        """The text column of every record as truncated token ids (DataError for a missing or empty text)."""
        require_text(records, self.text_col)
        return self.tokenizer([r.fields[self.text_col] for r in records], truncation=True,
                              max_length=self.max_length)["input_ids"]

    def collate(self, examples: list[Any], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        ids, mask = pad_right([examples[i].ids for i in idx], pad_id(self.tokenizer))
        labels = torch.tensor([examples[i].label for i in idx], dtype=self.label_dtype)
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device),
                "n_real": mask.sum()}  # n_real stays on the CPU: counting tokens must not wait for the device

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    @torch.no_grad()
    def embed(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
              dtype: torch.dtype | None) -> Any:
        """(n, hidden) mean-pooled last-layer embeddings (numpy), in example order: the linear probe's input."""
        import numpy as np

        was_training = model.training
        model.eval()
        out = np.zeros((len(examples), 0), dtype=np.float32)
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                pooled = anatomy.mean_pooled(model, batch["input_ids"], batch["attention_mask"]).cpu().numpy()
            if out.shape[1] == 0:
                out = np.zeros((len(examples), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled
        model.train(was_training)
        return out

    # ------------------------------------------------------------------ the model
    def load_model(self, cfg: "Config", source: "ModelSource", method: Any) -> nn.Module:
        return loading.load_classifier(source, self.model_labels, scratch=method.scratch,
                                       dropout=cfg.train.model_dropout, problem_type=self.problem_type,
                                       auto_class=self.auto_class)

    def edit_start(self, model: nn.Module, cfg: "Config") -> nn.Module:
        if cfg.train.pooling == "mean":
            self.edited_modules = (anatomy.pool_by_mean(model),)
        return model

    @classmethod
    def head_modules(cls, model: nn.Module) -> list[str] | None:
        return anatomy.head_names(model) or None

    # ------------------------------------------------------------------ the forgetting guard
    def forgetting_probe(self, ref: "Reference", cfg: "Config", device: torch.device,
                         dtype: torch.dtype | None) -> Any | None:
        """The geometry of the body's sentence embeddings on the reference text (what an embedding model
        like MiniLM is used for); nothing to measure without reference texts."""
        from ..guards.probes import EmbeddingProbe

        if not ref.texts:
            return None
        return EmbeddingProbe(ref, self.tokenizer, cfg.data.max_length, cfg.forgetting.samples, device, dtype)
