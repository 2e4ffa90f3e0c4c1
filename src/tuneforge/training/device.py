"""Device, precision and threads: one place decides, the loop just uses the answers."""
from __future__ import annotations

import contextlib
import functools
import os
import random
from typing import Any, ContextManager

import numpy as np
import torch

EAGER_MAX_ROW = 512  # on CPU, rows up to this long train faster with eager attention than sdpa


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 matmul instructions (what bf16 autocast pays off with; read once)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return fast_bf16(f.read())
    except OSError:
        return False


def fast_bf16(cpuinfo: str) -> bool:
    """bf16 autocast is faster than fp32 with AMX-BF16 (Intel Sapphire Rapids and later: ~6x on matmuls) or
    AVX512-BF16 (AMD Zen 4, Intel Cooper Lake). Measured on 2 Zen 4 cores (AVX512-BF16, no AMX), bf16 vs fp32,
    one after the other: sentiment LoRA training 106.9 vs 147.1 s at the same test accuracy (0.963), the whole
    command 143 vs 206 s; one MiniLM full step 450 vs 770 ms, one SmolLM2 LoRA step 2,223 vs 4,023 ms. Without
    either, bf16 is emulated and slower than fp32."""
    flags = set(cpuinfo.split())
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.precision`, or None for plain fp32."""
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def set_threads(threads: int | None, share: int = 1) -> None:
    """`threads`, or this process's share of the cores (`share` processes of a distributed run per machine)."""
    n = threads or max(1, len(os.sched_getaffinity(0)) // share)
    torch.set_num_threads(n)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def prefer_eager_attention(body: torch.nn.Module, max_length: int) -> None:
    """On CPU, for rows up to EAGER_MAX_ROW tokens, switch sdpa to eager attention.

    Measured with SmolLM2 + LoRA under bf16 autocast (torch 2.13, transformers 5.24, 2 AMX cores), packed
    rows of 256: 356 tokens/s with eager vs 250 with sdpa, which gets a block-diagonal mask from packing.
    Length-bucketed padded batches (data.packing: auto on CPU) were measured with eager only (bench run 3).
    Longer rows keep sdpa: eager materializes heads × L × L probabilities for the backward pass.
    """
    config = getattr(body, "config", None)
    device = next(body.parameters()).device
    if device.type == "cpu" and max_length <= EAGER_MAX_ROW and getattr(config, "_attn_implementation", "") == "sdpa":
        config._attn_implementation = "eager"
