"""Where the reference model's log-probabilities come from: the model training started from.

- Methods with adapters on a frozen base (LoRA, DoRA, QLoRA, bottleneck adapters): the same model with its
  adapters switched off (Method.adapters_off) — no second copy in memory; each step runs one extra forward
  pass without gradients (TRL does the same).
- Full-weight methods (full, freeze): a frozen copy of the starting weights, made before the first step. Its
  memory cost is one more copy of the weights (SmolLM2-135M: 513 MiB in fp32), with no gradients and no
  optimizer state: +25% on the weight-sized state (weights, gradients, two AdamW moments). Chosen over
  precomputed log-probabilities because `tuneforge eval RUN --data NEW` and the per-token KL to the reference
  need the reference's whole next-token distribution on data it has not seen, which stored numbers cannot
  give; a finished full run reloads its starting model for `eval` only.
"""
from __future__ import annotations

from typing import Any, Callable, ContextManager

import torch
from torch import nn

from ...errors import TuneforgeError


class Reference:
    """Runs a function of a model as the reference model (no gradients)."""

    def __init__(self, switch: Callable[[nn.Module], ContextManager[Any]] | None = None,
                 frozen: nn.Module | None = None):
        self.switch, self.frozen = switch, frozen

    def run(self, model: nn.Module, fn: Callable[[nn.Module], Any]) -> Any:
        with torch.no_grad():
            if self.frozen is not None:
                return fn(self.frozen)
            if self.switch is None:
                raise TuneforgeError("the preference task has no reference model (Task.use_reference was not called)")
            with self.switch(model):
                return fn(model)

    def describe(self) -> str:
        if self.frozen is None:
            return "reference model: the same model with its adapters switched off (no second copy in memory)"
        size = sum(t.numel() * t.element_size() for t in list(self.frozen.parameters()) + list(self.frozen.buffers()))
        return f"reference model: a frozen copy of the starting weights ({size / 2 ** 20:,.0f} MiB more memory)"


def frozen(model: nn.Module) -> nn.Module:
    """A model as the reference: evaluation mode, no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
