"""Dropout whose random draws are cheap on CPU.

On CPU, dropout's mask comes from `bernoulli_`, which draws one Mersenne-Twister number per element: on a
MiniLM training step (batch 32, 62 tokens) its 20 calls took 126 of ~400 ms, against 0.3 ms for the
multiply that applies the mask (profile in bench/README.md). `torch.randint` over the full int64 range
costs about as much per draw, and one draw holds four independent 16-bit lanes: an element is dropped when
its lane falls below round(p * 65536) of the 65,536 values, so the drop rate is p to within 1/131,072
(p = 0.1 drops 0.100006). Same distribution, same generator (seeded and checkpointed like any other draw),
a different stream: a run is as reproducible as before, but its masks are not bernoulli_'s.

`cpu_dropout()` applies it inside a training forward pass: a TorchFunctionMode that answers
`F.dropout` (nn.Dropout, PEFT's lora_dropout, eager attention) and `F.scaled_dot_product_attention` with a
dropout probability (BERT-style encoders' attention dropout, which CPU sdpa runs as math + bernoulli
anyway). Everything else passes through untouched; CUDA keeps its own fused Philox kernels.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

LANES = 65536


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | None = None) -> torch.Tensor:
    """A bool tensor of `shape`, each element False (dropped) with probability round(p·65536)/65536."""
    n = math.prod(shape)
    words = torch.randint(-2 ** 63, 2 ** 63 - 1, (-(-n // 4),), dtype=torch.int64, device=device)
    lanes = words.view(torch.int16)[:n].view(shape)
    return lanes >= round(p * LANES) - LANES // 2


class _Dropout(torch.autograd.Function):
    """x · mask / (1 - p), keeping only the 1-byte mask for the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        keep = keep_mask(x.shape, p, x.device)
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout with the cheap mask (0 < p < 1)."""
    return _Dropout.apply(x, p)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
              enable_gqa: bool = False) -> torch.Tensor:
    """F.scaled_dot_product_attention's math, with the cheap dropout on the probabilities. Low precision
    inputs are computed in fp32, as CPU sdpa's math path does."""
    out_dtype = q.dtype
    if q.dtype in (torch.bfloat16, torch.float16):
        q, k, v = q.float(), k.float(), v.float()
    if enable_gqa and k.size(-3) != q.size(-3):
        k = k.repeat_interleave(q.size(-3) // k.size(-3), -3)
        v = v.repeat_interleave(q.size(-3) // v.size(-3), -3)
    scores = q @ k.transpose(-2, -1) * (scale if scale is not None else q.size(-1) ** -0.5)
    if is_causal:
        causal = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else scores + attn_mask
    probs = dropout(scores.softmax(-1), dropout_p)
    return (probs @ v).to(out_dtype)


class _CpuDropout(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.dropout:
            return self._dropout(*args, **kwargs)
        if func is F.scaled_dot_product_attention:
            p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
            if p > 0.0 and args[0].device.type == "cpu":
                return attention(*args, **kwargs)
        return func(*args, **kwargs)

    @staticmethod
    def _dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
        if not training or inplace or not 0.0 < p < 1.0 or x.device.type != "cpu":
            return F.dropout(x, p, training, inplace)
        return dropout(x, p)


@contextlib.contextmanager
def cpu_dropout(device: torch.device) -> Iterator[None]:
    """Inside: training dropout on CPU tensors draws cheap masks (see the module docstring)."""
    if device.type != "cpu":
        yield
        return
    with _CpuDropout():
        yield
