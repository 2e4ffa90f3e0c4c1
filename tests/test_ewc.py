"""EWC and the L2 pull: the Fisher is the mean squared per-example gradient, the penalty is zero at θ*,
and λ = 0 trains bit-identically to plain training."""
from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.guards import ewc
from tuneforge.config import TrainConfig
from tuneforge.training.loop import fit
from tuneforge.training.runlog import RunLog


def toy_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def toy_data(n: int = 24, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_fisher_is_mean_squared_per_example_gradient() -> None:
    model = toy_model()
    x, y = toy_data()
    params = list(model.named_parameters())
    fisher = ewc.fisher_diagonal(model, params, [
        (lambda i=i: F.cross_entropy(model(x[i:i + 1]), y[i:i + 1])) for i in range(len(x))])
    # Reference: per-example gradients with torch.func, squared, averaged.
    from torch.func import functional_call, grad, vmap

    weights = {n: p.detach() for n, p in params}

    def loss_one(w: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, w, (xi[None],)), yi[None])

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))(weights, x, y)
    for name, _ in params:
        expected = (per_example[name] ** 2).mean(0)
        torch.testing.assert_close(fisher[name], expected, rtol=1e-5, atol=1e-8)
    # ... and not the square of the mean gradient, which underestimates it.
    assert all(fisher[n].sum() > (per_example[n].mean(0) ** 2).sum() for n, _ in params)


def test_fisher_leaves_model_state_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    model.train()
    x, y = toy_data(4)
    ewc.fisher_diagonal(model, list(model.named_parameters()),
                        [(lambda i=i: F.cross_entropy(model(x[i:i + 1]), y[i:i + 1])) for i in range(4)])
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_penalty_zero_at_anchor_and_quadratic_away_from_it() -> None:
    model = toy_model()
    params = list(model.named_parameters())
    anchor = ewc.snapshot(params)
    fisher = {n: torch.rand_like(p) for n, p in params}
    penalty = ewc.ewc_penalty(params, fisher, anchor, lam=3.0)
    assert float(penalty().detach()) == 0.0
    with torch.no_grad():
        for _, p in params:
            p.add_(0.1)
    expected = 3.0 * sum(float((f * 0.01).sum()) for f in fisher.values())
    assert float(penalty().detach()) == pytest.approx(expected, rel=1e-4)
    # The gradient is 2λF(θ − θ*): weights with a large Fisher are pulled back hardest.
    penalty().backward()
    for n, p in params:
        torch.testing.assert_close(p.grad, 2 * 3.0 * fisher[n] * (p.detach() - anchor[n]), rtol=1e-4, atol=1e-6)


def test_zero_fisher_weights_are_free() -> None:
    model = toy_model()
    params = list(model.named_parameters())
    anchor = ewc.snapshot(params)
    fisher = {n: torch.zeros_like(p) for n, p in params}
    with torch.no_grad():
        params[0][1].add_(1.0)
    assert float(ewc.ewc_penalty(params, fisher, anchor, 10.0)().detach()) == 0.0


def test_l2_to_anchor() -> None:
    model = toy_model()
    params = list(model.named_parameters())
    pull = ewc.l2_to_anchor(params, ewc.snapshot(params), lam=0.5)
    assert float(pull().detach()) == 0.0
    with torch.no_grad():
        params[0][1].add_(0.2)
    assert float(pull().detach()) == pytest.approx(0.5 * 0.04 * params[0][1].numel(), rel=1e-4)


def test_combine() -> None:
    assert ewc.combine([]) is None
    one = ewc.combine([lambda: torch.tensor(2.0), lambda: torch.tensor(3.0)])
    assert one is not None and float(one()) == 5.0


class ToyTask:
    """The smallest loop.fit task: rows of (x, y) tensors."""

    def batches(self, examples: list[Any], batch_size: int, shuffle: bool = False, seed: int = 0) -> list[list[int]]:
        order = list(range(len(examples)))
        if shuffle:
            import random

            random.Random(seed).shuffle(order)
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    def collate(self, examples: list[Any], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.stack([examples[i][0] for i in idx]), "y": torch.stack([examples[i][1] for i in idx])}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(model(batch["x"]), batch["y"])

    def tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor(len(batch["y"]))

    def evaluate(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        with torch.no_grad():
            batch = self.collate(examples, list(range(len(examples))), device)
            return {"loss": float(self.loss(model, batch))}


def train_toy(regularizer_lam: float | None) -> dict[str, torch.Tensor]:
    model = toy_model()
    x, y = toy_data(32)
    data = list(zip(x, y))
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, precision="fp32", log_every=1)
    reg = None
    if regularizer_lam is not None:
        params = [(n, p) for n, p in model.named_parameters()]
        fisher = {n: torch.rand_like(p) + 0.5 for n, p in params}
        reg = ewc.ewc_penalty(params, fisher, ewc.snapshot(params), regularizer_lam)
    fit(model, ToyTask(), data, data[:8], cfg, RunLog(None, quiet=True), torch.device("cpu"), None, regularizer=reg)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_lambda_zero_is_bit_identical_to_plain_training() -> None:
    plain = train_toy(None)
    zero = train_toy(0.0)
    for name in plain:
        assert torch.equal(plain[name], zero[name]), name
    held = train_toy(10.0)  # and a real λ does change the result
    assert any(not torch.equal(plain[n], held[n]) for n in plain)
