"""Config checks of what reads the task's head: train.head_epochs (the head trained alone first) and
train.pooling (what the head reads), refused before any work."""
from __future__ import annotations

from typing import Any


def head_problems(cfg: Any) -> list[str]:
    return _head_epochs_checks(cfg) + _pooling_checks(cfg)


def _head_epochs_checks(cfg: Any) -> list[str]:
    """train.head_epochs needs a task with a head, and epochs after it in which the rest trains."""
    from .tasks import task_class

    head, epochs = cfg.train.head_epochs, cfg.train.epochs
    if head and not task_class(cfg.task).has_head:
        return [f"`train.head_epochs` = {head:g}: task {cfg.task} has no separate head (its output layer is the "
                "model's own); set it to 0"]
    if head and epochs and head >= epochs:
        return [f"`train.head_epochs` = {head:g} is not below `train.epochs` = {epochs:g}: only the head would ever "
                "train; lower it (e.g. 1) or raise train.epochs"]
    return []


def _pooling_checks(cfg: Any) -> list[str]:
    """train.pooling: mean needs a task whose head reads one token, and a method that saves the base change."""
    from .methods import method_class
    from .tasks import task_class

    if cfg.train.pooling == "model":
        return []
    if not task_class(cfg.task).pools:
        return [f"`train.pooling` = mean: task {cfg.task} reads no single token of the text; remove the key"]
    if cfg.init_from:
        return ["`train.pooling` = mean with `init_from`: the earlier run's model keeps the pooling it was trained "
                "with; remove the key"]
    method = method_class(cfg.method.name)
    if not method.saves_base_edits:
        return [f"`train.pooling` = mean: method {cfg.method.name} saves an add-on to the original base, without the "
                "zeroed query that makes the mean; use method.name: lora, dora or full"]
    return []
