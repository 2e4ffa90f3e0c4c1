"""Forgetting: measured before/after every run, and mitigated by replay, EWC and an L2 pull to the base.

What the model must not lose, by case:
- a continued run (`init_from`): the accuracy of every earlier task, through its own head (the train recipe
  prepares those tasks and hands them in: the guard never reads or vets data itself);
- otherwise whatever the task's own probe measures on the reference text (Task.forgetting_probe): for an
  instruction model perplexity on general text and on the base model's answers to general prompts, for a
  classifier the geometry of its sentence embeddings on general text.

`ForgettingGuard.start` runs before training (measures "before", builds the replay mix and penalties);
`finish` runs after and returns eval.json["forgetting"] = {metric, before, after, relative_change, flagged}.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..data.reference import Reference, load_reference
from ..errors import TuneforgeError
from ..training.device import autocast
from . import ewc
from .probes import PreviousTask, PreviousTasksProbe
from .replay import ReplayItem, ReplayTask


def lower_is_better(metric: str) -> bool:
    return "perplexity" in metric or "loss" in metric


@dataclass
class ForgettingGuard:
    """Set up before training (probe "before", replay mix, penalties); `finish` measures "after"."""

    task: Any                                  # the task loop.fit trains (the replay wrapper or the plain task)
    train: list[Any]                           # the training examples loop.fit sees (+ the replay pool)
    regularizer: Callable[[], torch.Tensor] | None
    probe: Any | None = None
    before: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.1
    mitigation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, cfg: Any, task: Any, train: list[Any], model: nn.Module, device: torch.device,
              dtype: torch.dtype | None, log: Any | None = None,
              previous: list[PreviousTask] | None = None) -> "ForgettingGuard":
        """Measure "before", build the replay mix and the penalties. `previous`: the earlier tasks of a
        continued run, prepared by the caller (their accuracy is what must be kept); else the reference text."""
        fc, previous = cfg.forgetting, previous or []
        ref = load_reference(fc.reference, cfg.privacy.pii) if (fc.reference and not previous) else None
        if previous:
            probe: Any = PreviousTasksProbe(previous, cfg.eval.batch_size, device, dtype)
        else:
            probe = task.forgetting_probe(ref, cfg, device, dtype) if ref is not None else None
        before = probe.measure(model, first=True) if probe else {}
        train, loop_task = list(train), task
        mitigation = {"replay": fc.replay, "ewc": fc.ewc, "l2_to_base": fc.l2_to_base}
        if fc.replay > 0:
            pool = [ReplayItem(t, ex) for t, examples in kept_data("replay", task, cfg, previous, ref)
                    for ex in examples]
            loop_task = ReplayTask(task, len(train), pool, fc.replay)
            train = train + pool
            mitigation["replay_pool"] = len(pool)
        regularizer = penalties(model, cfg, task, previous, ref, device, dtype, mitigation)
        if log is not None and probe is not None:
            log.note(f"forgetting probe ({probe.metric}) before training: {_fmt(before.get(probe.metric))}")
        return cls(loop_task, train, regularizer, probe, before, fc.threshold, mitigation)

    def finish(self, model: nn.Module, log: Any | None = None) -> dict[str, Any] | None:
        if self.probe is None:
            return None
        after = self.probe.measure(model, first=False)
        metric = self.probe.metric
        out = {"metric": metric, **change(self.before[metric], after[metric], metric, self.threshold),
               "threshold": self.threshold, "mitigation": self.mitigation, **self.probe.details()}
        for key in after:
            if key not in (metric, "tasks") and key in self.before:
                out[key] = change(self.before[key], after[key], key, self.threshold)
        if "tasks" in after:
            out["tasks"] = {name: change(self.before["tasks"][name], value, metric, self.threshold)
                            for name, value in after["tasks"].items()}
        if log is not None:
            log.note(f"forgetting ({metric}): {_fmt(out['before'])} → {_fmt(out['after'])} "
                     f"({100 * out['relative_change']:+.1f}%)" + ("  FLAGGED" if out["flagged"] else ""))
        return out


def penalties(model: nn.Module, cfg: Any, task: Any, previous: list[PreviousTask], ref: Reference | None,
              device: torch.device, dtype: torch.dtype | None,
              mitigation: dict[str, Any]) -> Callable[[], torch.Tensor] | None:
    """EWC and/or the L2 pull, anchored at the weights training starts from (None: plain training, untouched)."""
    fc = cfg.forgetting
    if not (fc.ewc > 0 or fc.l2_to_base > 0):
        return None
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    anchor = ewc.snapshot(params)
    found = []
    if fc.ewc > 0:
        items = kept_data("ewc", task, cfg, previous, ref)
        fisher = fisher_for(model, params, items, cfg.forgetting.fisher_samples, cfg.train.seed, device, dtype)
        found.append(ewc.ewc_penalty(params, fisher, anchor, fc.ewc))
        total = sum(f.numel() for f in fisher.values())
        mitigation["fisher_mean"] = float(sum(f.sum() for f in fisher.values()) / max(total, 1))
    if fc.l2_to_base > 0:
        found.append(ewc.l2_to_anchor(params, anchor, fc.l2_to_base))
    return ewc.combine(found)


def kept_data(key: str, task: Any, cfg: Any, previous: list[PreviousTask],
              ref: Reference | None) -> list[tuple[Any, list[Any]]]:
    """(task, examples) of what must be kept, for replay and the EWC Fisher: the earlier tasks' training data
    (continued runs), else the task's own replay source from the reference text."""
    if previous:
        return [(p.task, p.train) for p in previous]
    source = task.replay_source(ref, cfg)
    if source is None:
        raise TuneforgeError(f"`forgetting.{key}` needs earlier data: set init_from (a previous run) or, for "
                             "instruction runs, forgetting.reference")
    return [source]


def change(before: float, after: float, metric: str, threshold: float) -> dict[str, Any]:
    """before/after, relative change, and whether it got worse by more than `threshold` (relative)."""
    rel = (after - before) / before if before else 0.0
    worse = rel if lower_is_better(metric) else -rel
    return {"before": before, "after": after, "relative_change": rel, "flagged": bool(worse > threshold)}


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else str(x)


def fisher_for(model: nn.Module, params: list[tuple[str, nn.Parameter]], items: list[tuple[Any, list[Any]]],
               n: int, seed: int, device: torch.device, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """The EWC Fisher on what must be kept: up to `n` examples drawn (seeded) evenly from each item's data."""
    rng = random.Random(seed)
    per_task = max(1, n // len(items))

    def losses() -> Any:
        for task, examples in items:
            for i in rng.sample(range(len(examples)), min(per_task, len(examples))):
                def one(task: Any = task, examples: list[Any] = examples, i: int = i) -> torch.Tensor:
                    batch = task.collate(examples, [i], device)
                    with autocast(device, dtype):
                        return task.loss(model, batch).float()
                yield one

    return ewc.fisher_diagonal(model, params, losses())
