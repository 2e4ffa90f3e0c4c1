"""Continuing a language-model run (`init_from`): instruction → instruction, instruction → preference.

The earlier run's model (its adapters merged by recipes/inference.start_model) is the starting point, trained on
by the new run's method; nothing is added to it. What an earlier run must be is asked of its task class, not
its name: one whose model is a causal LM, like this one's (a classifier's head cannot generate). The earlier
run's formatting is compared with this run's, and a difference (another system prompt or chat template) is
said in the run log: the continued model would be trained and asked in a layout it did not learn.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import TuneforgeError
from ..models.anatomy import set_dropout
from ..runs import reading


def earlier_formatting(cfg: Any, auto_class: str) -> dict[str, Any]:
    """The earlier run's saved formatting, after checking that it is a finished run of a causal-LM task."""
    from . import DEFAULT, REGISTRY, task_class

    earlier = Path(cfg.init_from)
    meta = reading.read_meta(earlier, missing=f"`init_from` = {str(earlier)!r} is not a finished run "
                                              "(no model/tuneforge.json)")
    name = str(meta.get("task", DEFAULT))
    if name not in REGISTRY or task_class(name).auto_class != auto_class:
        raise TuneforgeError(f"`init_from` = {cfg.init_from!r} is a {name} run, whose model cannot generate; a "
                             f"{cfg.task} run continues a run whose model is a language model (e.g. an instruction run)")
    return meta.get("formatting") or {}


def formatting_notes(theirs: dict[str, Any], ours: dict[str, Any], run: str) -> list[str]:
    """One note per formatting setting the continued run changes (system prompt, chat template)."""
    notes = []
    for key, what in (("system", "data.system"), ("chat_template", "chat template")):
        if key in theirs and theirs[key] != ours.get(key):
            was = repr(theirs[key][:60]) if theirs[key] else "none"
            notes.append(f"init_from: {run} was trained with another {what} ({was}); this run's differs, so the "
                         "model is tuned on in a layout it was not tuned in before")
    return notes


def continue_lm(model: nn.Module, cfg: Any) -> nn.Module:
    """The earlier run's merged model, as this run starts training it."""
    if cfg.train.model_dropout is not None:
        set_dropout(model, cfg.train.model_dropout)
    model.train()
    return model
