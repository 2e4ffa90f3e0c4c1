"""train.head_epochs: the task head trains alone first, then everything the method trains.

Linear probing, then fine-tuning (LP-FT, Kumar et al. 2022): a fresh head's gradients reach the body as noise
through random weights, so the body's first updates serve a head that does not yet know the task. Training the
head first on the frozen body's features starts the fine-tuning from a head that does.

Freezing is `requires_grad`, switched at the step the phase changes (a resumed run switches at the same step):
- while only the head trains there is no backward through the body, so such a step costs about a forward;
- under privacy.dp Opacus clips and noises only the parameters that train, so the head phase's noise has the
  head's dimension (1,155 parameters on MiniLM's 3-class head, against 74,883 with LoRA on query/value), and
  its steps are counted by the accountant like every other (the budget covers both phases).
"""
from __future__ import annotations

import math
from typing import Any

from torch import nn

from ..errors import TuneforgeError


def split(params: list[tuple[str, nn.Parameter]], heads: list[str]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(head, body): the parameters with a head module in their dotted name (PEFT's
    `classifier.modules_to_save.default.weight` too), and the rest."""
    head: list[nn.Parameter] = []
    body: list[nn.Parameter] = []
    for name, p in params:
        (head if set(name.split(".")) & set(heads) else body).append(p)
    return head, body


class HeadFirst:
    """Which parameters train at a step: the head's alone before `steps`, then all of `params`."""

    def __init__(self, params: list[tuple[str, nn.Parameter]], heads: list[str], steps: int):
        head, self.body = split(params, heads)
        self.head_count = sum(p.numel() for p in head)
        self.steps = steps
        self.head_only: bool | None = None

    def at(self, step: int) -> str | None:
        """Set what trains for optimizer step `step` (0-based); a line for the log when that changed."""
        head_only = step < self.steps
        if head_only == self.head_only:
            return None
        self.head_only = head_only
        for p in self.body:
            p.requires_grad_(not head_only)
        if head_only:
            return (f"train.head_epochs: steps 1-{self.steps} train the head alone ({self.head_count:,} "
                    "parameters), then all")
        return f"train.head_epochs: from step {step + 1} everything the method trains trains"

    def end(self) -> None:
        """After training (also one stopped early in the head phase) all of `params` is trainable again, as the
        method left it: what is counted, saved and merged afterwards does not depend on when training stopped."""
        for p in self.body:
            p.requires_grad_(True)


def head_first(model: nn.Module, task: Any, params: list[tuple[str, nn.Parameter]], head_epochs: float,
               steps_per_epoch: int, total_steps: int) -> HeadFirst | None:
    """The head phase of `train.head_epochs` over the trainable `params` (None when it is 0)."""
    if not head_epochs:
        return None
    steps = min(total_steps - 1, math.ceil(head_epochs * steps_per_epoch))
    return HeadFirst(params, task.head_modules(model) or [], steps)


def check(model: nn.Module, task: Any, head_epochs: float, processes: int) -> None:
    """Refuse `train.head_epochs` before anything is written when the method trains nothing of the head, or
    only the head, or the run is distributed (DDP's reducer expects the same parameters to have gradients at
    every step)."""
    if not head_epochs:
        return
    if processes > 1:
        raise TuneforgeError("train.head_epochs is not supported under torchrun (DDP/FSDP) yet; set it to 0")
    heads = task.head_modules(model) or []
    head, body = split([(n, p) for n, p in model.named_parameters() if p.requires_grad], heads)
    if not head or not body:
        what = "no parameter of the head trains" if not head else "only the head trains anyway"
        raise TuneforgeError(f"train.head_epochs: {what} with this method (head: {', '.join(heads) or 'none'}); "
                             "set method.modules_to_save: auto, or train.head_epochs: 0")
