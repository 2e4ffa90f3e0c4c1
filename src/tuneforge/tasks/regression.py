"""Regression: predict one number per text — a review's star rating, a ticket's hours to resolve.

A one-output head over the sequence (transformers' problem_type "regression", tasks/text.py) trained with
MSE. Targets are standardised on the training split, z = (y - mean) / std, and the head learns z;
predictions and every metric are turned back into the target's own units. Why, measured on
examples/ratings (README, "Regression"): the same run converges to a clearly better test MAE with
standardised targets, and the loss means the same whatever the target's scale — 1.0 is what predicting the
training mean scores, for stars (1-5) and for hours (0-500) alike — so the curve diagnosis's thresholds,
written for cross-entropy-sized losses, read it sensibly. The loss in metrics.jsonl and eval.json is that
standardised MSE; MAE, RMSE, R² (scikit-learn) and Spearman's rank correlation (scipy) are in the
target's units. The training mean and standard deviation are saved in model/tuneforge.json and in the
model's config.json (`tuneforge_target`), so a plain transformers user of an exported model can undo the
standardisation: value = output * std + mean.

Splits are not stratified (stratify_column is None): the splitter stratifies on a column's exact values,
and a continuous target has a distinct value per record, which would keep every record in train.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.records import Record, is_blank, missing_column, preview
from ..errors import DataError, show
from ..training.device import autocast
from .text import TextTask

if TYPE_CHECKING:
    from ..config import Config
    from ..models.loading import ModelSource

DIRECTIONS = {"loss": "min", "mae": "min", "rmse": "min", "r2": "max", "spearman": "max"}


@dataclass
class Example:
    ids: list[int]
    label: float  # the standardised target the head learns (0.0 for a record to predict)
    value: float  # the target in its own units
    where: str


def target_value(r: Record, column: str) -> float:
    """The record's target as a finite float, or a DataError naming the line and the fix.

    Numbers, and text that reads as one (a CSV cell: "4.5"); true/false are refused: a yes/no target is a
    category (task: classification), and silently reading True as 1.0 would hide a wrong column."""
    if column not in r.fields:
        raise missing_column(r, column, "label column", f"set data.label to the target column or add {preview(column)}")
    value = r.fields[column]
    where = f" in column {preview(column)}"
    if value is None:
        raise DataError(r.file, r.line, f"null label{where}", "give every record a number, or remove the record")
    if isinstance(value, bool):
        raise DataError(r.file, r.line, f"label {preview(value)}{where} is a boolean, not a number",
                        "regression predicts a number; for yes/no use task: classification")
    if isinstance(value, str):
        if is_blank(value):
            raise DataError(r.file, r.line, f"empty label{where}", "fill in a number, or remove the record")
        try:
            number = float(value.strip())
        except ValueError:
            raise DataError(r.file, r.line, f"label {preview(value)}{where} is not a number",
                            "regression targets are numbers (e.g. 4 or 4.5); for categories use "
                            "task: classification") from None
    elif isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer past float's range
            number = math.inf
    else:
        raise DataError(r.file, r.line, f"label {preview(value)}{where} is a {type(value).__name__}, expected one "
                        "number", "give one number per record")
    if not math.isfinite(number):
        raise DataError(r.file, r.line, f"label {preview(value)}{where} is not a finite number",
                        "replace NaN/infinity with a number, or remove the record")
    return number


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """MAE, RMSE and R² (scikit-learn), Spearman's rank correlation (scipy), and the count `n`.

    Where a number is undefined it is 0.0, scikit-learn's convention for R² (force_finite): R² of fewer
    than two examples, and Spearman when the truth or the predictions are constant (nothing to rank)."""
    from scipy.stats import spearmanr  # imported here: ~1 s, and only evaluation needs them
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    ranked = len(y_true) >= 2 and np.ptp(y_true) > 0 and np.ptp(y_pred) > 0
    return {"mae": float(mean_absolute_error(y_true, y_pred)),
            "rmse": float(root_mean_squared_error(y_true, y_pred)),
            "r2": float(r2_score(y_true, y_pred)) if len(y_true) >= 2 else 0.0,
            "spearman": float(spearmanr(y_true, y_pred)[0]) if ranked else 0.0,
            "n": int(len(y_true))}


class RegressionTask(TextTask):
    name = "regression"
    headline = ("mae", "rmse", "r2", "spearman")
    primary_metric = "r2"  # compare's metric: scale-free, higher is better, 0 = no better than the mean
    curve_metric = "mae"   # beside the (standardised) loss: the error in the target's own units
    metrics = DIRECTIONS   # `n` (a count) is computed too, but is no metric

    def __init__(self, tokenizer: Any, text_col: str, label_col: str, max_length: int, mean: float, std: float):
        super().__init__(tokenizer, text_col, max_length, torch.float, "regression")
        self.label_col, self.mean, self.std = label_col, mean, std

    @property
    def model_labels(self) -> list[str]:
        return ["value"]

    # ------------------------------------------------------------------ the config's questions
    @classmethod
    def config_problems(cls, cfg: "Config") -> list[str]:
        problems = []
        if cfg.data.text == cfg.data.label:
            problems.append(f"`data.text` and `data.label` both name the column {show(cfg.data.text)}: the model "
                            "would read the number it predicts; point data.label at the target column")
        if cfg.init_from:
            problems.append("`init_from` continues classification runs (a new head beside the earlier ones); "
                            "a regression run starts from `model:`, remove init_from")
        for key, value in (("replay", cfg.forgetting.replay), ("ewc", cfg.forgetting.ewc)):
            if value:
                problems.append(f"`forgetting.{key}` = {value} protects an earlier task, and a regression run "
                                "has none; use forgetting.l2_to_base to stay close to the base model")
        if cfg.train.label_smoothing:
            problems.append(f"`train.label_smoothing` = {cfg.train.label_smoothing:g} smooths classes, and a "
                            "regression target has none; remove it")
        return problems

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg: "Config", tokenizer: Any, train_records: list[Record]) -> "RegressionTask":
        """The standardisation from the training targets (which must vary: a constant teaches nothing)."""
        values = np.array([target_value(r, cfg.data.label) for r in train_records], dtype=np.float64)
        std = float(values.std())
        if not std > 0:
            raise DataError(train_records[0].file, None, f"every training target in column "
                            f"{preview(cfg.data.label)} is {values[0]:g}: nothing to learn",
                            "regression needs targets that vary; check data.label")
        task = cls(tokenizer, cfg.data.text, cfg.data.label, cfg.data.max_length, float(values.mean()), std)
        task.notes.append(f"regression target {preview(cfg.data.label)}: train mean {task.mean:.4g}, std {std:.4g}, "
                          f"range {values.min():g} to {values.max():g}; the head learns (target - mean) / std")
        return task

    @classmethod
    def from_saved(cls, cfg: "Config", tokenizer: Any, meta: dict[str, Any]) -> "RegressionTask":
        return cls(tokenizer, cfg.data.text, cfg.data.label, cfg.data.max_length,
                   float(meta["target_mean"]), float(meta["target_std"]))

    def metadata(self) -> dict[str, Any]:
        return {"target_mean": self.mean, "target_std": self.std}

    def load_model(self, cfg: "Config", source: "ModelSource", method: Any) -> nn.Module:
        model = super().load_model(cfg, source, method)
        # In config.json too: an exported model is read without tuneforge (value = output * std + mean).
        model.config.tuneforge_target = {"column": self.label_col, "mean": self.mean, "std": self.std}
        return model

    # ------------------------------------------------------------------ data and the loss
    def encode(self, records: list[Record], split: str = "train") -> list[Example]:
        ids = self.token_ids(records)
        values = [target_value(r, self.label_col) for r in records]
        return [Example(i, (v - self.mean) / self.std, v, r.where) for i, v, r in zip(ids, values, records)]

    def encode_unlabelled(self, records: list[Record]) -> list[Example]:
        return [Example(i, 0.0, 0.0, r.where) for i, r in zip(self.token_ids(records), records)]

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.mse_loss(self.logits(model, batch).float().squeeze(-1), batch["labels"])

    # ------------------------------------------------------------------ results
    @torch.no_grad()
    def outputs(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                dtype: torch.dtype | None) -> np.ndarray:
        """The head's standardised output for every example, in input order (train mode restored after)."""
        was_training = model.training
        model.eval()
        out = np.zeros(len(examples), dtype=np.float64)
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                out[idx] = self.logits(model, batch).float().squeeze(-1).cpu().numpy()
        model.train(was_training)
        return out

    def evaluate(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        """The standardised MSE as `loss`, every other metric in the target's units."""
        z = self.outputs(model, examples, batch_size, device, dtype)
        truth = np.array([e.value for e in examples], dtype=np.float64)
        metrics = regression_metrics(truth, z * self.std + self.mean)
        labels = np.array([e.label for e in examples], dtype=np.float64)
        metrics["loss"] = float(np.mean((z - labels) ** 2)) if len(examples) else 0.0
        return metrics

    def predict(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                dtype: torch.dtype | None) -> list[dict[str, Any]]:
        """Per example, in input order: the predicted number in the target's units."""
        z = self.outputs(model, examples, batch_size, device, dtype)
        return [{"value": round(float(v), 4)} for v in z * self.std + self.mean]
