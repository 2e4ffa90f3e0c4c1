"""Penalties that hold weights near an anchor: EWC (Kirkpatrick et al., 2017) and a plain L2 pull.

EWC: after task A, the diagonal empirical Fisher F_i = mean over A's examples of (∂loss/∂θ_i)² says how
much each weight mattered to A; training B then adds λ·Σ_i F_i (θ_i − θ*_i)², so weights A relied on
move little and the rest are free. `l2_to_anchor` is the same with F = 1 (every weight equally held).
Both return a zero-argument callable, the shape `loop.fit(regularizer=...)` takes.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

Named = list[tuple[str, nn.Parameter]]


def fisher_diagonal(model: nn.Module, params: Named, example_losses: Iterable[Callable[[], torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean over examples of the squared per-example gradient, for each parameter in `params`.

    Each item of `example_losses` computes the loss of ONE example: per-example gradients are what the
    Fisher averages — squaring a batch-mean gradient would cancel disagreeing examples and underestimate F.
    The model runs in eval mode (no dropout: the Fisher of the deterministic network) and is restored after.
    """
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params}
    was_training, count = model.training, 0
    model.eval()
    try:
        for compute in example_losses:
            model.zero_grad(set_to_none=True)
            loss = compute()
            assert loss.ndim == 0, f"fisher_diagonal needs a scalar per-example loss, got shape {tuple(loss.shape)}"
            loss.backward()
            for n, p in params:
                if p.grad is not None:
                    fisher[n] += p.grad.detach().float() ** 2
            count += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    assert count > 0, "fisher_diagonal got no examples"
    return {n: f / count for n, f in fisher.items()}


def snapshot(params: Named) -> dict[str, torch.Tensor]:
    """θ*: a detached fp32 copy of the parameters (the anchor the penalty pulls toward)."""
    return {n: p.detach().float().clone() for n, p in params}


def ewc_penalty(params: Named, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor],
                lam: float) -> Callable[[], torch.Tensor]:
    """λ·Σ F (θ − θ*)². Weights with zero Fisher everywhere (e.g. a new task's head) are skipped."""
    held = [(p, fisher[n], anchor[n]) for n, p in params if n in fisher and bool(fisher[n].any())]

    def penalty() -> torch.Tensor:
        total = torch.zeros((), device=held[0][0].device if held else "cpu")
        for p, f, a in held:
            total = total + (f * (p.float() - a) ** 2).sum()
        return lam * total

    return penalty


def l2_to_anchor(params: Named, anchor: dict[str, torch.Tensor], lam: float) -> Callable[[], torch.Tensor]:
    """λ·Σ (θ − θ*)²: an L2 pull toward the starting (base) weights, no task data needed."""
    held = [(p, anchor[n]) for n, p in params if n in anchor]

    def penalty() -> torch.Tensor:
        total = torch.zeros((), device=held[0][0].device if held else "cpu")
        for p, a in held:
            total = total + ((p.float() - a) ** 2).sum()
        return lam * total

    return penalty


def combine(penalties: list[Callable[[], torch.Tensor]]) -> Callable[[], torch.Tensor] | None:
    """One regularizer from several (None when there are none, so plain training stays untouched)."""
    if not penalties:
        return None
    if len(penalties) == 1:
        return penalties[0]
    return lambda: sum((f() for f in penalties[1:]), penalties[0]())
