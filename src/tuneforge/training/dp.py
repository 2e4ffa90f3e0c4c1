"""Differentially private training (privacy.dp): DP-SGD through Opacus, asked by the loop, not a loop of its own.

What makes a step private, and who does it:
- per-example gradients: Opacus's GradSampleModule hooks (functorch for layers it has no rule for, e.g.
  RMSNorm); a parameter whose layer sees no batch dimension (BERT's position embeddings, shared by all rows)
  has no per-example gradient and stays frozen, named in the log;
- clipping each example's gradient to max_grad_norm, summing, adding Gaussian noise σ·C and dividing by the
  expected batch: Opacus's DPOptimizer (the micro-batches of one logical batch are clipped as they come and
  noised once, Opacus's own virtual-step mechanism);
- Poisson sampling: every step each training example joins the batch independently with probability
  q = batch_size × grad_accum / n (what the accountant assumes), seeded by (seed, epoch), so a resumed run
  draws the same batches; written here because the loop takes index lists, not a DataLoader (the same
  draw as Opacus's UniformWithReplacementSampler);
- σ from the target ε, δ, q and the planned steps before training (Opacus's get_noise_multiplier) and the
  ε spent after each epoch (its PRV or RDP accountant).
The accountant's history and the noise generator's state go into every checkpoint: a resumed run adds the
same noise and states the same ε as an uninterrupted one. What is not private: the logged training loss
(the per-epoch validation numbers are, as held-out data). Secure-mode noise (against floating-point attacks)
is off.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import TuneforgeError
from .device import autocast
from .dropout import cpu_dropout
from .loop import Plan, make_plan

AUTO_DELTA = 10  # δ auto = 1 / (AUTO_DELTA × n): well below 1/n, the usual rule


@dataclass
class Budget:
    """The guarantee asked for and the noise that buys it, settled before training."""

    epsilon: float
    delta: float
    delta_auto: bool
    max_grad_norm: float
    accountant: str
    n: int
    expected_batch: int
    sample_rate: float
    plan: Plan
    noise: float


def budget(cfg: Any, n: int) -> Budget | None:
    """privacy.dp for `n` training examples (None: off); a target that cannot be met is a TuneforgeError."""
    dp = cfg.privacy.dp
    if dp.epsilon is None:
        return None
    expected = cfg.train.batch_size * cfg.train.grad_accum
    if expected >= n:
        raise TuneforgeError(f"privacy.dp: train.batch_size × train.grad_accum = {expected} is not below the "
                             f"{n} training examples; lower train.batch_size (sampling needs a rate below 1)")
    q = expected / n
    plan = make_plan(math.ceil(n / expected), dataclasses.replace(cfg.train, grad_accum=1))
    delta = 1 / (AUTO_DELTA * n) if dp.delta == "auto" else float(dp.delta)
    try:
        noise = noise_multiplier(dp.epsilon, delta, q, plan.total_steps, dp.accountant)
    except ValueError as e:
        raise TuneforgeError(f"privacy.dp.epsilon = {dp.epsilon:g} cannot be reached in {plan.total_steps} steps "
                             f"at sampling rate {q:.4f} ({e}); raise privacy.dp.epsilon, or train fewer epochs") \
            from None
    return Budget(dp.epsilon, delta, dp.delta == "auto", dp.max_grad_norm, dp.accountant, n, expected, q, plan,
                  noise)


@functools.lru_cache(maxsize=64)
def noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """Opacus's binary search for σ (seconds on a CPU: PRV 8-12 s, RDP 3-5 s measured on 2 busy cores), once
    per (ε, δ, q, steps) in a process: cross-validation folds and compare's runs ask the same."""
    from opacus.accountants.utils import get_noise_multiplier

    with quiet_accountant():
        return get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                    steps=steps, accountant=accountant)


@contextlib.contextmanager
def quiet_accountant() -> Iterator[None]:
    """Without Opacus's "Optimal order is the largest alpha" UserWarning: the PRV accountant bounds its search
    domain with an RDP estimate and warns that this estimate could be tighter; the ε it states does not depend
    on it, and the warning (with its source line) was the one traceback-like text in a DP run's output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        yield


class Private:
    """DP-SGD for one run: `attach` before training, then per step `order`/`accumulate`/`privatize`."""

    def __init__(self, b: Budget, seed: int, batch_size: int):
        from opacus.accountants import create_accountant

        self.budget, self.seed, self.batch_size = b, seed, batch_size
        self.plan, self.steps_per_epoch = b.plan, b.plan.steps_per_epoch
        self.accountant = create_accountant(b.accountant)
        self.epochs: list[dict[str, float]] = []  # ε spent after each epoch
        self.frozen: list[str] = []
        self.gsm: Any = None
        self.optimizer: Any = None
        self.generator: torch.Generator | None = None

    def describe(self) -> str:
        b = self.budget
        delta = f"δ = {b.delta:.2g}" + (f" (auto: 1/({AUTO_DELTA}·{b.n}))" if b.delta_auto else "")
        return (f"privacy.dp: DP-SGD to ε = {b.epsilon:g}, {delta}: noise multiplier {b.noise:.3f} ({b.accountant} "
                f"accountant), each example's gradient clipped to {b.max_grad_norm:g}, Poisson sampling at rate "
                f"{b.sample_rate:.4f} (expected batch {b.expected_batch}), {b.plan.total_steps} steps")

    # ------------------------------------------------------------------ before training
    def attach(self, model: nn.Module, task: Any, train: list[Any], device: torch.device,
               dtype: torch.dtype | None) -> list[str]:
        """Hook per-example gradients into `model` and freeze what has none; returns lines for the log."""
        from opacus import GradSampleModule

        # the first hooked layer's input needs no gradient (token ids): torch says its hook fires anyway, as meant
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")
        self.gsm = GradSampleModule(model, batch_first=True, loss_reduction="mean", strict=False)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.seed)
        self.frozen = self._probe(model, task, train, device, dtype)
        lines = [self.describe()]
        if self.frozen:
            lines.append(f"privacy.dp: {len(self.frozen)} parameter(s) whose layer sees no batch dimension have no "
                         f"per-example gradient and stay frozen: {', '.join(self.frozen[:4])}")
        return lines

    def _probe(self, model: nn.Module, task: Any, train: list[Any], device: torch.device,
               dtype: torch.dtype | None) -> list[str]:
        """One backward on two examples: the trainable parameters whose per-example gradients do not come
        one per example (a layer fed a batch-less input) are frozen. Same answer on every run and resume."""
        idx = list(range(min(2, len(train))))
        model.train()  # Opacus captures activations in training mode only
        with autocast(device, dtype):
            loss = task.private_loss(model, task.collate(train, idx, device))
        loss.backward()
        frozen = []
        for name, p in model.named_parameters():
            if p.requires_grad:
                sample = getattr(p, "grad_sample", None)
                sample = torch.cat(sample) if isinstance(sample, list) else sample
                if sample is None or sample.shape[0] != len(idx):
                    p.requires_grad_(False)
                    frozen.append(name)
            p.grad, p.grad_sample = None, None
        return frozen

    def wrap(self, optimizer: torch.optim.Optimizer) -> None:
        """The loop's AdamW behind Opacus's DPOptimizer (clip, noise, scale); the loop keeps stepping AdamW."""
        from opacus.optimizers import DPOptimizer

        b = self.budget
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=b.noise, max_grad_norm=b.max_grad_norm,
                                     expected_batch_size=b.expected_batch, generator=self.generator)

    # ------------------------------------------------------------------ each step
    def order(self, epoch: int) -> list[list[int]]:
        """The epoch's logical batches: each example in each independently with probability q."""
        rng = np.random.default_rng([self.seed, epoch, 0xD9])
        return [np.flatnonzero(rng.random(self.budget.n) < self.budget.sample_rate).tolist()
                for _ in range(self.steps_per_epoch)]

    def accumulate(self, model: nn.Module, task: Any, train: list[Any], idx: list[int], device: torch.device,
                   dtype: torch.dtype | None) -> tuple[torch.Tensor, int]:
        """Forward and backward over one logical batch in micro-batches of train.batch_size, each clipped
        per example and summed as it comes; returns (mean loss, real tokens). An empty batch adds no gradient
        (the step is noise alone)."""
        pieces = [idx[s:s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        loss_sum, tokens = torch.zeros((), device=device), 0
        if not pieces:
            for p in self.optimizer.params:
                p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
        for k, piece in enumerate(pieces):
            batch = task.collate(train, piece, device)
            with autocast(device, dtype), cpu_dropout(device):
                loss = task.private_loss(model, batch)
            loss.backward()
            loss_sum += loss.detach().float() * len(piece)
            tokens += int(task.tokens(batch))
            if k < len(pieces) - 1:  # clip and sum now; the noise comes once, at the step
                self.optimizer.signal_skip_step(do_skip=True)
                self.optimizer.pre_step()
                self._clear(summed=False)
        return loss_sum / max(len(idx), 1), tokens

    def privatize(self) -> torch.Tensor:
        """Clip the last micro-batch, add the noise, scale: p.grad is now the private gradient (its norm is
        returned). The accountant counts the step whether or not the loop then takes it."""
        self.optimizer.pre_step()
        self._clear(summed=True)
        self.accountant.step(noise_multiplier=self.budget.noise, sample_rate=self.budget.sample_rate)
        grads = [p.grad.detach().float().norm() for p in self.optimizer.params if p.grad is not None]
        return torch.stack(grads).norm() if grads else torch.zeros(())

    def _clear(self, summed: bool) -> None:
        for p in self.optimizer.params:
            p.grad_sample = None
            if summed:
                p.summed_grad = None
            else:
                p.grad = None

    def spent(self) -> float:
        if not self.accountant.history:
            return 0.0
        with quiet_accountant():
            return float(self.accountant.get_epsilon(delta=self.budget.delta))

    def epoch_end(self, epoch: int) -> str:
        eps = self.spent()
        self.epochs.append({"epoch": epoch, "epsilon": round(eps, 4)})
        return f"privacy.dp: epoch {epoch}: ε spent {eps:.3f} of {self.budget.epsilon:g} (δ = {self.budget.delta:.2g})"

    def detach(self) -> None:
        """Remove the hooks: evaluation, saving and export see the plain model."""
        if self.gsm is not None:
            self.gsm._close()
            self.gsm = None

    # ------------------------------------------------------------------ checkpoints and results
    def state_dict(self) -> dict[str, Any]:
        return {"history": [tuple(h) for h in self.accountant.history], "generator": self.generator.get_state(),
                "epochs": list(self.epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.history = [tuple(h) for h in state["history"]]
        self.generator.set_state(state["generator"])
        self.epochs = list(state["epochs"])

    def summary(self, steps: int) -> dict[str, Any]:
        """eval.json["privacy"]: the guarantee as trained (ε spent over the steps taken, which early stopping
        may make fewer than planned)."""
        b, spent = self.budget, self.spent()
        return {"guarantee": f"({spent:.2f}, {b.delta:.2g})-differential privacy of each training example",
                "dp": True, "epsilon": round(spent, 4), "epsilon_target": b.epsilon, "delta": b.delta,
                "delta_auto": b.delta_auto, "noise_multiplier": round(b.noise, 5), "max_grad_norm": b.max_grad_norm,
                "sample_rate": round(b.sample_rate, 6), "expected_batch": b.expected_batch, "steps": steps,
                "planned_steps": b.plan.total_steps, "accountant": b.accountant, "per_epoch": self.epochs,
                "frozen_without_per_example_gradients": self.frozen}


NO_GUARANTEE = {"dp": False, "guarantee": None,
                "note": "no differential-privacy guarantee: the model may have memorised training records (PII "
                        "redaction removes only what the detectors recognise); set privacy.dp.epsilon for one"}


def start(cfg: Any, n: int, distributed: bool) -> Private | None:
    """The run's DP-SGD (None without privacy.dp), or a TuneforgeError for what it cannot run with."""
    b = budget(cfg, n)
    if b is None:
        return None
    if distributed:
        raise TuneforgeError("privacy.dp: a distributed launch is not supported (each process would sample and "
                             "noise on its own); train on one process")
    return Private(b, cfg.train.seed, cfg.train.batch_size)


def results(private: Private | None, steps: int) -> dict[str, Any]:
    return private.summary(steps) if private is not None else dict(NO_GUARANTEE)
