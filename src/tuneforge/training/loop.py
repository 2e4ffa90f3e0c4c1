"""The training loop: one function, read top to bottom: step, maybe evaluate, maybe checkpoint.

AdamW with decoupled weight decay (not on biases and norms), warmup then linear/cosine decay, gradient
accumulation and clipping, a NaN/inf guard, an out-of-memory fallback that halves the micro-batch, and
logging to metrics.jsonl + TensorBoard with a progress bar. Evaluation, early stopping and the best
weights live in training/validation.py; checkpoints in training/checkpoint.py.
Everything that makes a step reproducible (batch order, RNG) derives from (seed, epoch, position),
so a checkpoint holding the LoopState resumes exactly. On several processes (training/distributed.py) the
batch order is that of the global batch and each rank trains on its share of every batch. Under privacy.dp
the loop asks training/dp.py for the batches (Poisson-sampled), the gradients (per example) and their
privatization (clipped, noised) instead.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..errors import TuneforgeError
from .device import autocast, seed_everything
from .distributed import SINGLE, Engine
from .dropout import cpu_dropout
from .headfirst import head_first
from .runlog import RunLog
from .validation import Validation


class Trainable(Protocol):
    """What the loop needs of a task (a Task, or the forgetting guard's replay wrapper around one)."""

    def batches(self, examples: list[Any], batch_size: int, shuffle: bool = ..., seed: int = ...) -> list[list[int]]: ...
    def collate(self, examples: list[Any], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]: ...
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def loss_units(self, batch: dict[str, torch.Tensor]) -> int | None: ...
    def evaluate(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]: ...


@dataclass
class LoopState:
    """Everything about progress that a checkpoint must carry to resume exactly."""

    step: int = 0              # optimizer steps done
    epoch: int = 0             # current epoch (0-based)
    micro: int = 0             # micro-batches of the current epoch already consumed
    tokens: int = 0            # real (non-padding) training tokens seen
    best_metric: float | None = None
    best_step: int = 0
    bad_evals: int = 0         # evaluations since the last improvement
    skipped: int = 0           # batches skipped for NaN/inf loss
    stop_reason: str = ""
    loss_sum: float = 0.0      # training loss summed since the last logged step (so a resume logs the same)
    loss_n: int = 0
    micro_split: int = 1       # each micro-batch is cut into this many pieces after an out-of-memory
    history: list[dict[str, Any]] = field(default_factory=list)  # eval records, for the diagnosis


@dataclass
class Plan:
    """How many steps the run takes, computed once from the data and the config."""

    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def make_plan(n_batches: int, cfg: TrainConfig) -> Plan:
    steps_per_epoch = max(1, math.ceil(n_batches / cfg.grad_accum))
    total = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    if cfg.max_steps:
        total = min(total, cfg.max_steps) if cfg.epochs else cfg.max_steps
    warmup = int(cfg.warmup * total) if cfg.warmup < 1 else int(cfg.warmup)
    return Plan(n_batches, steps_per_epoch, total, min(warmup, total))


def make_optimizer(params: list[tuple[str, nn.Parameter]], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; biases and normalization weights get no weight decay (they set scale, not capacity)."""
    decay = [p for n, p in params if p.ndim >= 2 and "norm" not in n.lower()]
    no_decay = [p for n, p in params if not (p.ndim >= 2 and "norm" not in n.lower())]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # Not on CPU, although torch >= 2.4 has the fused kernel there and it is 4.9-7.7x faster per optimizer step
    # (bench/README.md "Fused AdamW on CPU"): with it a DDP or FSDP run no longer matches one process at twice
    # the batch to 1e-5 (4.3e-5 after 6 steps, tests/test_distributed_e2e.py; foreach: within 1e-5). Cause open.
    fused = all(p.is_cuda for _, p in params)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, fused=fused or None)


def make_scheduler(optimizer: torch.optim.Optimizer, plan: Plan, cfg: TrainConfig) -> Any:
    from transformers import get_scheduler

    name = "constant_with_warmup" if cfg.scheduler == "constant" else cfg.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=plan.warmup_steps, num_training_steps=plan.total_steps)


def accumulate(model: nn.Module, task: Trainable, train: list[Any], group: list[list[int]], device: torch.device,
               dtype: torch.dtype | None, regularizer: Callable[[], torch.Tensor] | None,
               split: int = 1, engine: Engine = SINGLE) -> tuple[torch.Tensor, int]:
    """Forward and backward over one optimizer step's micro-batches; returns (mean loss, real tokens).

    The loss stays a tensor on the device (reading it would stall the queue of launched kernels; the loop
    reads it once per step, together with the gradient norm). After an out-of-memory each micro-batch is
    cut into `split` pieces, each weighted by its share of the examples: the gradient stays that of the
    whole micro-batch (exactly so for per-example mean losses). On several processes each global batch is
    cut the same way into the ranks' shares (`engine.shard`), and the loss is this rank's weighted part.
    """
    step_loss, step_tokens = torch.zeros((), device=device), 0
    for k, idx in enumerate(group):
        mine, weight = engine.shard(idx)  # all of idx at weight 1.0 on one process
        size = -(-len(mine) // split)
        for start in range(0, len(mine), size):
            piece = mine[start:start + size]
            batch = task.collate(train, piece, device)
            # 1.0 unless split or sharded: then exactly as before; sharded, by units when the loss has its own
            share = len(piece) / len(mine) * weight if engine.size == 1 else \
                engine.share(task.loss_units(batch), weight)
            with engine.accumulating(last=k == len(group) - 1 and start + size >= len(mine)):
                with autocast(device, dtype), cpu_dropout(device):
                    loss = engine.loss(task, model, batch)
                if regularizer is not None:
                    loss = loss + regularizer()
                scaled = loss / len(group)
                (scaled if share == 1.0 else scaled * share).backward()
            step_loss += loss.detach().float() / len(group) * share
            step_tokens += int(task.tokens(batch)) if weight else 0
    return step_loss, step_tokens


def is_oom(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's RuntimeError."""
    text = str(error)
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))


def halve_micro_batch(split: int, cfg: TrainConfig, step: int, log: RunLog, device: torch.device) -> int:
    """After an out-of-memory: half the micro-batch, twice the accumulation; the effective batch is unchanged."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    micro = -(-cfg.batch_size // split)
    if micro <= 1:
        raise TuneforgeError(f"out of memory at step {step} even with a micro-batch of 1; lower data.max_length, "
                             "use method.name: lora, or a smaller model")
    split *= 2
    log.note(f"out of memory at step {step} with micro-batch {micro}: continuing with micro-batch "
             f"{-(-cfg.batch_size // split)} and gradient accumulation {cfg.grad_accum * split} "
             f"(effective batch {cfg.batch_size * cfg.grad_accum}, unchanged)")
    return split


def numeric_fault(loss: float, grad_norm: float) -> str:
    """'' when the step is usable, else what went wrong (NaN/inf in the loss or the gradients)."""
    if not math.isfinite(loss):
        return f"loss became {loss}"
    if not math.isfinite(grad_norm):
        return f"gradient norm became {grad_norm} (loss {loss:.4f})"
    return ""


@dataclass
class FitResult:
    state: LoopState
    plan: Plan
    train_seconds: float
    best_weights_restored: bool


def fit(model: nn.Module, task: Trainable, train: list[Any], val: list[Any], cfg: TrainConfig, log: RunLog,
        device: torch.device, dtype: torch.dtype | None,
        regularizer: Callable[[], torch.Tensor] | None = None,
        checkpointer: Any | None = None, eval_batch_size: int = 64,
        directions: dict[str, str] | None = None, engine: Engine = SINGLE, private: Any | None = None) -> FitResult:
    """Train `model` on `train` (task examples), evaluating on `val`; returns the final loop state.

    `directions` (metric -> "min"/"max", the task's declared metrics) sets early stopping's mode: auto.
    `engine`: the process's part in a distributed run (`model` is then the model it wrapped).
    `private` (training/dp.py, privacy.dp): DP-SGD draws the batches, computes the gradients and privatizes them."""
    for line in private.attach(model, task, train, device, dtype) if private is not None else []:
        log.note(line)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise TuneforgeError("no trainable parameters: the method froze everything (check method.targets)")
    batch = engine.global_batch(cfg.batch_size)  # cfg.batch_size on one process
    plan = private.plan if private is not None else make_plan(len(task.batches(train, batch)), cfg)
    per_step = 1 if private is not None else cfg.grad_accum  # DP: one entry of the order is a logical batch
    optimizer = make_optimizer(params, cfg)
    if private is not None:
        private.wrap(optimizer)
    scheduler = make_scheduler(optimizer, plan, cfg)
    phase = head_first(model, task, params, cfg.head_epochs, plan.steps_per_epoch, plan.total_steps)
    state = LoopState()
    validation = Validation(task, val, cfg, log, device, dtype, eval_batch_size, params, directions, engine)
    seed_everything(cfg.seed + engine.world.rank)  # each rank its own dropout stream
    if checkpointer is not None:  # exact resume: weights, optimizer, scheduler, RNG, LoopState, best weights
        resumed = checkpointer.restore(model, optimizer, scheduler)
        if resumed is not None:
            state, validation.best_weights = resumed.state, resumed.best_weights
            log.restart_at(state.step)
    model.train()
    meter = Meter(plan.total_steps, state.step, log, show=engine.main)
    t0 = time.perf_counter()
    while state.step < plan.total_steps and not state.stop_reason:
        # The epoch's batch order depends only on (seed, epoch): a resumed run sees the same batches.
        order = private.order(state.epoch) if private is not None else \
            task.batches(train, batch, shuffle=True, seed=cfg.seed * 1000 + state.epoch)
        while state.micro < len(order) and state.step < plan.total_steps:
            group = order[state.micro:state.micro + per_step]
            switched = phase.at(state.step) if phase is not None else None
            if switched:
                log.note(switched)
            loss_t, step_tokens = private.accumulate(model, task, train, group[0], device, dtype) \
                if private is not None else forward_backward(model, task, train, group, device, dtype, regularizer,
                                                             state, cfg, log, optimizer, engine)
            state.micro += len(group)
            step_loss, grad_norm = step(params, optimizer, scheduler, loss_t, state, cfg, log, checkpointer, private)
            stepped = step_loss is not None
            end_of_epoch = state.micro >= len(order)
            epoch = state.epoch + state.micro / len(order)
            if stepped:
                state.tokens += step_tokens
                meter.step(state, epoch, step_loss, grad_norm, step_tokens, scheduler.get_last_lr()[0],
                           state.step % cfg.log_every == 0 or state.step == plan.total_steps)
            if private is not None and end_of_epoch:
                log.note(private.epoch_end(state.epoch + 1))
            if validation.due(state.step, stepped, end_of_epoch, plan.total_steps):
                validation.run(model, state, epoch, step_loss)
            if checkpointer is not None and (checkpointer.due(state.step, end_of_epoch, plan.total_steps) if stepped
                                             else end_of_epoch and bool(cfg.checkpoint_every)):
                checkpointer.save(model, optimizer, scheduler, state, is_best=state.best_step == state.step,
                                  best_weights=validation.best_weights)
            if state.stop_reason:
                break
        if state.micro >= len(order):
            state.epoch, state.micro = state.epoch + 1, 0
    meter.close()
    if phase is not None:
        phase.end()
    if private is not None:
        private.detach()
    restored = validation.restore_best(state)
    if state.stop_reason:
        log.note(state.stop_reason)
    return FitResult(state, plan, time.perf_counter() - t0, restored)


def forward_backward(model: nn.Module, task: Trainable, train: list[Any], group: list[list[int]],
                     device: torch.device, dtype: torch.dtype | None,
                     regularizer: Callable[[], torch.Tensor] | None, state: LoopState, cfg: TrainConfig,
                     log: RunLog, optimizer: torch.optim.Optimizer,
                     engine: Engine = SINGLE) -> tuple[torch.Tensor, int]:
    """`accumulate` over one optimizer step's micro-batches; after an out-of-memory, again with each
    micro-batch cut in two (the effective batch stays the same), until it fits or a micro-batch is 1.
    Returns the whole step's loss and tokens (summed over the ranks of a distributed run)."""
    while True:
        try:
            loss, tokens = accumulate(model, task, train, group, device, dtype, regularizer, state.micro_split,
                                      engine)
            return engine.step_totals(loss, tokens)
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError too
            if not is_oom(e):
                raise
            if engine.size > 1:  # every rank would have to cut its batches alike, mid-step: one retrying alone hangs
                raise TuneforgeError(f"out of memory at step {state.step + 1} on process rank {engine.world.rank} "
                                     f"with {cfg.batch_size} examples per device; lower train.batch_size (raise "
                                     "train.grad_accum to keep the effective batch) or use train.distributed: fsdp") \
                    from None
        optimizer.zero_grad(set_to_none=True)  # outside `except`: its frames hold the big tensors
        state.micro_split = halve_micro_batch(state.micro_split, cfg, state.step + 1, log, device)


def step(params: list[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer, scheduler: Any,
         loss_t: torch.Tensor, state: LoopState, cfg: TrainConfig, log: RunLog,
         checkpointer: Any | None, private: Any | None = None) -> tuple[float | None, float]:
    """Clip, check for NaN/inf and take the optimizer step; returns (loss, gradient norm), with loss None
    when the batch was skipped (train.nan_policy: skip). A fault beyond the skips allowed is an error.
    Under privacy.dp the gradient is DP-SGD's (clipped per example, noised) instead of clipped as a whole."""
    # The NaN/inf guard looks at the gradients too: a finite loss can still give inf gradients.
    # (max_norm=inf clips nothing: the clip factor clamps to exactly 1.0; a faulty step is zeroed below.)
    norm = private.privatize() if private is not None else \
        Engine.local(torch.nn.utils.clip_grad_norm_([p for _, p in params], cfg.max_grad_norm or math.inf))
    step_loss, grad_norm = torch.stack([loss_t, norm.to(loss_t)]).tolist()  # the step's one sync
    fault = numeric_fault(step_loss, grad_norm)
    if fault:
        optimizer.zero_grad(set_to_none=True)
        if cfg.nan_policy == "skip" and state.skipped < cfg.max_skips:
            state.skipped += 1
            log.note(f"step {state.step + 1}: {fault}; batch skipped ({state.skipped}/{cfg.max_skips})")
            return None, grad_norm
        last = checkpointer.latest() if checkpointer is not None else None
        raise TuneforgeError(
            f"{fault} at step {state.step + 1} (epoch {state.epoch + 1}); lower train.lr, keep "
            "train.max_grad_norm set, or set train.nan_policy: skip; "
            + (f"the last good checkpoint is {last} (continue from it with --resume)" if last
               else "no checkpoint was written (set train.checkpoint_every)"))
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1
    return step_loss, grad_norm


class Meter:
    """The progress bar and the logged training rows: mean loss since the last row, tokens/s, lr, grad norm."""

    def __init__(self, total: int, done: int, log: RunLog, show: bool = True):
        self.log = log
        self.bar = tqdm(total=total, initial=done, desc="train", unit="step", dynamic_ncols=True,
                        disable=None if show else True)
        self.tokens, self.t0 = 0, time.perf_counter()

    def step(self, state: LoopState, epoch: float, loss: float, grad_norm: float, tokens: int, lr: float,
             log_now: bool) -> None:
        self.tokens += tokens
        state.loss_sum, state.loss_n = state.loss_sum + loss, state.loss_n + 1
        self.bar.update(1)
        if not log_now:
            return
        now = time.perf_counter()
        tps = self.tokens / max(now - self.t0, 1e-9)
        row = {"loss": state.loss_sum / state.loss_n, "lr": lr, "tokens_per_s": tps, "grad_norm": grad_norm}
        self.log.scalars(state.step, epoch, "train", row)
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{tps:,.0f}")
        state.loss_sum, state.loss_n, self.tokens, self.t0 = 0.0, 0, 0, now

    def close(self) -> None:
        self.bar.close()
