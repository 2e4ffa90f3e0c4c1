"""Shared heads for continued classification runs: task A, then task B on the same body, without losing A.

Continuing is one config key, `init_from: runs/A`: the new run starts from run A's weights and keeps A's
classification head. Heads are slices of one output layer — A's labels first, B's appended — so the saved
model is a plain Hugging Face classifier (predict/export/serve unchanged), B's loss never touches A's rows,
and A's accuracy after B is measurable through A's own slice. `tuneforge.json` lists the heads (name,
labels, offset, run) so a chain A → B → C keeps every earlier task. The task that reads its slice of the
shared head is classification's HeadTask.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import TuneforgeError
from ..models.anatomy import head_linear
from ..runs import reading


def heads_for(cfg: Any, labels: list[str] | None = None) -> list[dict[str, Any]]:
    """The heads of a run continued from `cfg.init_from`: the earlier run's heads, then this run's."""
    prev_dir = Path(cfg.init_from)
    meta = reading.read_meta(prev_dir, missing=f"`init_from` = {str(prev_dir)!r} is not a finished run "
                                               "(no model/tuneforge.json)")
    if meta.get("task", "classification") != "classification":
        raise TuneforgeError(f"`init_from` = {cfg.init_from!r} is a {meta.get('task')} run; continuing with new "
                             "heads is for classification runs")
    prev = meta.get("heads") or [{"name": reading.read_config(prev_dir).name, "labels": meta["labels"], "offset": 0,
                                  "run": str(prev_dir)}]
    names = {h["name"] for h in prev}
    name = cfg.name if cfg.name not in names else f"{cfg.name}-{len(prev) + 1}"
    offset = sum(len(h["labels"]) for h in prev)
    return prev + [{"name": name, "labels": labels if labels is not None else [], "offset": offset,
                    "run": str(cfg.run_dir)}]


def grow_head(model: nn.Module, task: Any) -> nn.Module:
    """Append the rows of `task` (a HeadTask: offset, labels, model_labels) to the shared head; earlier rows
    are copied unchanged."""
    n_prev = task.offset
    parent, attr, old = head_linear(model, n_prev)
    new = nn.Linear(old.in_features, n_prev + len(task.labels), bias=old.bias is not None)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        new.weight.normal_(0.0, std)  # as Hugging Face initialises a fresh head
        new.weight[:n_prev] = old.weight
        if new.bias is not None:
            new.bias.zero_()
            new.bias[:n_prev] = old.bias
    setattr(parent, attr, new.to(old.weight.device, old.weight.dtype))
    labels = task.model_labels
    model.config.num_labels = len(labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    if hasattr(model, "num_labels"):
        model.num_labels = len(labels)
    return model
