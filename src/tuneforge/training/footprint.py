"""What training a model under a method will cost, measured on this machine before any run (`tuneforge advise`).

Memory = weights as stored (their dtype, 4-bit included) + gradients + optimizer state + activations, each
measured on the model the method made, not looked up in a table:
- weights: `methods.base.weight_bytes` of the model after `method.apply` (what train holds);
- gradients: the trainable parameters' bytes (autograd keeps one gradient per trainable parameter);
- optimizer state: the bytes of the AdamW state tensors after one real step (train's own make_optimizer);
- activations: one forward + loss on the config's largest batch under `torch.autograd.graph.saved_tensors_hooks`,
  which sees every tensor autograd keeps for the backward pass; each storage is counted once, parameters and
  buffers not at all. The GPU figure is the same count under bf16 autocast on 2 examples of that length,
  scaled to the batch (activations are per example), with frozen weights in bf16 where the method keeps its
  base frozen (what training on CUDA stores, training/speed.py).
On CPU the peak is max(loading, training): loading holds the checkpoint as read (fp32; a 4-bit method
quantizes it only afterwards), training holds the four parts together.
Time: a few real optimizer steps (train's forward/backward) on shuffled batches after a warm-up step give
seconds per real token, and one evaluation pass over a few validation batches gives the validation cost.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..methods.base import count_parameters, weight_bytes
from .device import autocast
from .loop import accumulate, make_optimizer
from .memory import RUN_LIBRARIES_MB

MIB = 2 ** 20
GPU_CONTEXT_MB = 500   # CUDA context and kernels: not in torch.cuda.max_memory_allocated, but it takes GPU memory


@dataclass
class Footprint:
    """One method's measured parts (MB) and speed on this machine."""

    trainable_params: int
    total_params: int
    weights_mb: float
    load_mb: float
    gradients_mb: float
    optimizer_mb: float
    activations_mb: float
    gpu_weights_mb: float
    gpu_activations_mb: float
    train_s_per_token: float
    eval_s_per_example: float
    batch_shape: str
    rss_growth_mb: float | None = None  # what the calibration's resident memory grew by (measured, `calibrated`)

    @property
    def cpu_peak_mb(self) -> float:
        """The calibration's measured growth (`calibrated`; the sum of the tensors as a floor), plus the libraries
        a run imports later.

        The tensors alone fall 15-40% short of a real run's peak RSS (MiniLM at 32x99, sum vs compare's fresh-
        process peak: full 0.85, LoRA 0.75, QLoRA 0.60, adapter 0.77): glibc keeps freed activation memory
        mapped, so RSS grows over the first steps beyond the live tensors (+30% of the first forward's growth
        by the third step, measured), and QLoRA dequantizes weights inside every matmul. The calibration's own
        RSS growth, measured after a heap trim, holds all of it: with the libraries a run imports later
        (RUN_LIBRARIES_MB), 1.01 / 1.06 / 0.92 / 1.02 (bench/advise_check.py, 2026-12-01 evening)."""
        training = self.weights_mb + self.gradients_mb + self.optimizer_mb + self.activations_mb
        return max(self.load_mb, training, self.rss_growth_mb or 0.0) + RUN_LIBRARIES_MB

    @property
    def gpu_peak_mb(self) -> float:
        """torch.cuda.max_memory_allocated's figure (compare's measure on CUDA); add GPU_CONTEXT_MB for the card."""
        return self.gpu_weights_mb + self.gradients_mb + self.optimizer_mb + self.gpu_activations_mb

    def as_dict(self) -> dict[str, Any]:
        out = {k: (round(v, 1) if isinstance(v, float) and k.endswith("_mb") else v) for k, v in asdict(self).items()}
        return out | {"cpu_peak_mb": round(self.cpu_peak_mb, 1), "gpu_peak_mb": round(self.gpu_peak_mb, 1)}


def calibrated(build: Callable[[], "Footprint"]) -> "Footprint":
    """`build()` (loading the model, applying the method, `measure`), with the resident memory it grew by.

    In process, but after a heap trim: what an earlier calibration freed goes back to the kernel instead of
    being reused unseen (MiniLM, 4 methods one after the other: growth + RUN_LIBRARIES_MB within 8% of a fresh
    run's peak; a long-lived process with a fragmented heap reads more, see tests/test_advise.py)."""
    from .memory import current_rss, load_run_libraries, peak_rss, reset_peak_rss, trim_heap

    load_run_libraries()
    trim_heap()
    reset_peak_rss()
    before = current_rss()
    fp = build()
    fp.rss_growth_mb = (peak_rss() - before) / MIB
    return fp


def storages(tensors: Iterator[torch.Tensor]) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in tensors}


def saved_bytes(model: nn.Module, run: Callable[[], Any]) -> tuple[Any, int]:
    """(run(), bytes of the tensors autograd saves for backward while it runs), each storage once, the model's
    parameters and buffers excluded (they are counted as weights)."""
    own = storages(t for t in list(model.parameters()) + list(model.buffers()))
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in own and t.device.type != "meta":
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    return out, sum(seen.values())


def batch_size_of(batch: dict[str, Any]) -> int:
    return max(t.numel() for t in batch.values() if torch.is_tensor(t))


def largest_batch(task: Any, examples: list[Any], batch_size: int, device: torch.device) -> list[int]:
    """The indices of the batch (as the task batches the data) with the most tensor elements: the peak."""
    batches = task.batches(examples, batch_size)
    return max(batches, key=lambda idx: batch_size_of(task.collate(examples, idx, device)))


def activation_mb(model: nn.Module, task: Any, examples: list[Any], idx: list[int], device: torch.device,
                  dtype: torch.dtype | None) -> float:
    """MB autograd keeps for the backward pass of one forward + loss on examples[idx] (then backpropagated:
    the gradients are left for the caller)."""
    batch = task.collate(examples, idx, device)

    def forward() -> torch.Tensor:
        with autocast(device, dtype):
            return task.loss(model, batch)

    loss, saved = saved_bytes(model, forward)
    loss.backward()
    return saved / MIB


def gpu_weight_mb(model: nn.Module, frozen_in_half: bool) -> float:
    """The weights as training on CUDA holds them: frozen floating-point weights in bf16 if `frozen_in_half`."""
    if not frozen_in_half:
        return weight_bytes(model) / MIB
    total = weight_bytes(model)
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) not in seen and not p.requires_grad and p.dtype == torch.float32:
            seen.add(id(p))
            total -= p.numel() * 2
    return total / MIB


def measure(model: nn.Module, task: Any, train: list[Any], val: list[Any], cfg: Any, device: torch.device,
            dtype: torch.dtype | None, load_mb: float, frozen_base: bool, steps: int = 2) -> Footprint:
    """The Footprint of training `model` (the method already applied) on `train` under `cfg` (a TrainConfig).

    Runs one optimizer step on the largest batch (the activation count, the warm-up and the AdamW state's
    allocation: untimed), `steps` timed optimizer steps and one validation batch; the model is changed (advise
    builds a throwaway copy per method)."""
    model.train()
    trainable, total = count_parameters(model)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = sum(p.numel() * p.element_size() for _, p in params) / MIB
    worst = largest_batch(task, train, cfg.batch_size, device)
    few = sorted(worst, key=lambda i: -len(getattr(train[i], "ids", ())))[:2]
    acts_half = activation_mb(model, task, train, few, device, torch.bfloat16) * len(worst) / len(few)
    model.zero_grad(set_to_none=True)
    acts = activation_mb(model, task, train, worst, device, dtype)
    optimizer = make_optimizer(params, cfg)
    optimizer.step()  # the first step allocates the optimizer state: left out of the timing
    optimizer.zero_grad(set_to_none=True)
    per_token = _timed_steps(model, task, train, cfg, device, dtype, optimizer, params, steps)
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if torch.is_tensor(t) and t.numel() > 1) / MIB
    widest = task.collate(train, worst, device)
    shape = "x".join(map(str, widest["input_ids"].shape)) if "input_ids" in widest else f"{len(worst)} examples"
    return Footprint(trainable, total, weight_bytes(model) / MIB, load_mb, grads, state, acts,
                     gpu_weight_mb(model, frozen_base), acts_half, per_token,
                     _eval_seconds(model, task, val or train, device, dtype, cfg.batch_size), shape)


def _timed_steps(model: nn.Module, task: Any, train: list[Any], cfg: Any, device: torch.device,
                 dtype: torch.dtype | None, optimizer: torch.optim.Optimizer, params: list[Any], steps: int) -> float:
    """Seconds per real token of train's forward/backward/clip/step on shuffled batches, after the untimed
    step on the largest batch (`measure`: it allocates the optimizer state; timed, it made the estimate 1.3-2x
    the run's own time on a 6-step run of a random BERT)."""
    order = task.batches(train, cfg.batch_size, shuffle=True, seed=cfg.seed)
    groups = [order[i:i + cfg.grad_accum] for i in range(0, len(order), cfg.grad_accum)]
    seconds, tokens = 0.0, 0
    for group in (groups * steps)[:steps]:
        t0 = time.perf_counter()
        loss, n = accumulate(model, task, train, group, device, dtype, None)
        torch.nn.utils.clip_grad_norm_([p for _, p in params], cfg.max_grad_norm or math.inf)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss)
        seconds, tokens = seconds + time.perf_counter() - t0, tokens + n
    return seconds / max(tokens, 1)


def _eval_seconds(model: nn.Module, task: Any, val: list[Any], device: torch.device, dtype: torch.dtype | None,
                  batch_size: int) -> float:
    """Seconds per example of the task's validation pass (its evaluate) on one batch."""
    sample = val[:batch_size]
    t0 = time.perf_counter()
    task.evaluate(model, sample, batch_size, device, dtype)
    model.train()
    return (time.perf_counter() - t0) / max(len(sample), 1)


def planned_seconds(fp: Footprint, tokens_per_epoch: int, epochs: float, validations: int, n_val: int) -> float:
    """Training time of a run (what eval.json's train_seconds counts: the steps and the validations)."""
    return fp.train_s_per_token * tokens_per_epoch * epochs + fp.eval_s_per_example * n_val * validations
