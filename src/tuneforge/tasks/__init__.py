"""Tasks: what the model learns, behind one interface (tasks/base.py). A task turns vetted Records into
examples, batches and a loss, loads the model with the right head, evaluates and predicts, and answers every
question the other stages ask about it: which columns are scanned for PII, compared for leakage and used to
stratify, which metrics it reports and in which direction they improve, its forgetting probe and replay source,
its PEFT task type. Code outside tasks/ asks the task and never branches on its name.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import TuneforgeError

if TYPE_CHECKING:
    from .base import Task

# name -> "module:Class", imported on first use. A new task is one module and one line here.
REGISTRY = {
    "classification": "tuneforge.tasks.classification:ClassificationTask",
    "instruction": "tuneforge.tasks.instruction.task:InstructionTask",
    "regression": "tuneforge.tasks.regression:RegressionTask",
    "token_classification": "tuneforge.tasks.token_classification:TokenClassificationTask",
    "preference": "tuneforge.tasks.preference.task:PreferenceTask",
}
NAMES = tuple(REGISTRY)
DEFAULT = NAMES[0]  # the config's default, and the task of runs saved before tuneforge.json named one


def task_class(name: str) -> "type[Task]":
    """The Task class registered under `name`."""
    if name not in REGISTRY:
        raise TuneforgeError(f"unknown task {name!r}; the tasks are {', '.join(NAMES)}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def objective_problems(task: str, objective: str | None) -> list[str]:
    """`train.objective` must name a loss of the task's own (Task.objectives); most tasks have just one loss."""
    if objective is None or task not in REGISTRY or objective in task_class(task).objectives:
        return []
    takers = [name for name in REGISTRY if objective in task_class(name).objectives]
    return [f"`train.objective` = {objective} is not a loss of task {task}; remove it, or set task: "
            f"{' or '.join(takers) or '(none takes it)'}"]
