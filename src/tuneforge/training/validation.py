"""Validation during training: when to evaluate, early stopping on one metric, and the best weights.

`Validation.due` says whether this step evaluates (every train.eval_every steps, else at each epoch's end,
and always at the last step); `run` evaluates, records the result in the loop state's history and the run
log, and updates the early-stopping counters; `restore_best` puts the best weights back at the end.
The metric's direction (early_stopping.mode: auto) comes from the task's declared metrics when given.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import TuneforgeError
from .distributed import SINGLE, Engine
from .runlog import RunLog

COUNTS = ("val_n", "val_tokens")  # sizes of the validation set, not metrics to stop on


def metric_mode(metric: str, mode: str, directions: dict[str, str] | None = None) -> str:
    """min or max for `metric` (val_<name>): the configured mode, the task's declared direction, or by name
    (losses and perplexities go down, everything else up)."""
    if mode != "auto":
        return mode
    name = metric.removeprefix("val_")
    if directions and name in directions:
        return directions[name]
    return "min" if "loss" in metric or "perplexity" in metric else "max"


def improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class Validation:
    """Evaluates `task` on `val` when due, tracks the early-stopping metric and keeps the best weights."""

    def __init__(self, task: Any, val: list[Any], cfg: TrainConfig, log: RunLog, device: torch.device,
                 dtype: torch.dtype | None, batch_size: int, params: list[tuple[str, nn.Parameter]],
                 directions: dict[str, str] | None = None, engine: Engine = SINGLE):
        self.task, self.val, self.cfg, self.log, self.engine = task, val, cfg, log, engine
        self.device, self.dtype, self.batch_size, self.params = device, dtype, batch_size, params
        self.es = cfg.early_stopping
        self.mode = metric_mode(self.es.metric, self.es.mode, directions)
        self.best_weights: dict[str, torch.Tensor] | None = None

    def due(self, step: int, stepped: bool, end_of_epoch: bool, total: int) -> bool:
        """Every eval_every steps, else at each epoch's end; always after the last step. A skipped batch
        (no optimizer step) still ends its epoch, but never repeats the evaluation of the step before it."""
        if not self.val:
            return False
        if not self.cfg.eval_every and end_of_epoch:
            return True
        return stepped and (bool(self.cfg.eval_every and step % self.cfg.eval_every == 0) or step == total)

    def run(self, model: nn.Module, state: Any, epoch: float, train_loss: float | None) -> None:
        """Evaluate, log, record in state.history, and update the best metric / early-stopping counters."""
        metrics = self.engine.evaluate(self.task, model, self.val, self.batch_size, self.device, self.dtype)
        record = {"step": state.step, "epoch": epoch, "train_loss": train_loss,
                  **{f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}}
        state.history.append(record)
        self.log.scalars(state.step, epoch, "val",
                         {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"})
        value = record.get(self.es.metric)
        if value is None:  # the train recipe checks this before a run starts; fit's other callers get it here
            choices = [k for k in record if k.startswith("val_") and k not in COUNTS]
            raise TuneforgeError(f"`train.early_stopping.metric` = {self.es.metric!r} is not computed; "
                                 f"choose one of {', '.join(choices)}")
        if improved(value, state.best_metric, self.mode, self.es.min_delta):
            state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
            self.best_weights = {n: p.detach().clone() for n, p in self.params}
            return
        state.bad_evals += 1
        if self.es.patience and state.bad_evals >= self.es.patience:
            state.stop_reason = (f"early stop at step {state.step}: {self.es.metric} did not improve "
                                 f"for {state.bad_evals} evaluations (best {state.best_metric:.4f} "
                                 f"at step {state.best_step})")

    def restore_best(self, state: Any) -> bool:
        """Put the best weights back (early_stopping.restore_best) unless the last step was the best."""
        if not (self.es.restore_best and self.best_weights is not None and state.best_step != state.step):
            return False
        with torch.no_grad():
            for n, p in self.params:
                p.copy_(self.best_weights[n])
        self.log.note(f"restored the best weights (step {state.best_step}, {self.es.metric} {state.best_metric:.4f})")
        return True
