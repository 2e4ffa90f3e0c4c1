"""Make a model train fast on its device, without changing what it learns.

Measured levers (bench/README.md has the numbers):
- lean LoRA inputs: PEFT casts each LoRA layer's input to the adapter weights' dtype (fp32) before autocast
  casts it back to bf16. Besides the copies, the fp32 round trip left q/k/v in fp32 and sent attention
  down sdpa's slow fp32 CPU path: turning the cast off took a MiniLM LoRA step from 1,930 to 3,230 tokens/s
  and a SmolLM2 one from 318 to 356 (2 AMX cores). Under autocast the arithmetic is the same.
- lean frozen weights: with bf16 autocast, a frozen base's Linear weights (LoRA, DoRA, adapters) are stored
  in bf16. Autocast would otherwise re-cast every fp32 weight on every forward pass; the frozen weights
  never receive an update, so their fp32 copy buys nothing but memory and bandwidth.
- cheap dropout masks on CPU (training/dropout.py, applied by the loop around each training forward): the
  masks' random draws were a third of a MiniLM step, and `nn.Dropout` kept an fp32 noise tensor for the
  backward pass (4 bytes per element of every LoRA layer's input); the cheap mask is drawn 4 lanes per
  int64 and kept as 1-byte bools. Measured in bench/README.md.
- regional compilation: torch.compile on each transformer block (they share one code object, so the block
  compiles once and is reused), which fuses the element-wise work between the matmuls. It pays on CUDA; on
  a 2-core CPU compiling took longer (174 s) than a whole MiniLM LoRA run, so `auto` leaves CPUs alone.
  `graphs` adds CUDA graphs per block (mode reduce-overhead: no kernel-launch gaps inside a block):
  71.3k → 75.5k and 68.5k → 75.6k tokens/s on the H200 bench (two runs); each new batch width records
  another graph, so it suits fixed-width batches. Compiling the whole body as one graph was slower (62.5k).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models.anatomy import transformer_blocks

def lean_frozen_weights(model: nn.Module, dtype: torch.dtype | None, everything: bool = False) -> int:
    """Cast frozen weights to the autocast dtype; returns the bytes saved.

    By default only the frozen, floating, plain weights of Linear layers, whose matmuls autocast runs in that
    dtype anyway: the arithmetic is unchanged. `everything` also casts frozen embeddings and norms, as
    loading the base in bf16 does (the usual LoRA/QLoRA setup): the residual stream then runs in bf16 too,
    which halves the element-wise traffic but rounds it. Trainable parameters keep their fp32 master copy.
    Measured slower on the H200 bench (62.7k vs 73.9k tokens/s), so only the bench's tfbf16 variant uses it.
    """
    if dtype is None:
        return 0
    saved = 0
    for module in model.modules():
        if not (everything or isinstance(module, nn.Linear)):
            continue
        for p in module.parameters(recurse=False):
            if p.requires_grad or not p.is_floating_point() or p.dtype == dtype or type(p) is not nn.Parameter:
                continue
            saved += p.numel() * (p.element_size() - torch.finfo(dtype).bits // 8)
            p.data = p.data.to(dtype)
    return saved


def lean_lora_inputs(model: nn.Module) -> int:
    """Turn off PEFT's per-layer input cast (what peft.helpers.disable_input_dtype_casting does, for good);
    returns the number of layers changed. Only safe under autocast, which picks the matmul dtype itself."""
    layers = [m for m in model.modules() if getattr(m, "cast_input_dtype_enabled", False)]
    for m in layers:
        m.cast_input_dtype_enabled = False
    return len(layers)


def compile_blocks(model: nn.Module, mode: str | None = None) -> int:
    """torch.compile each transformer block in place (`mode` as torch.compile's); returns how many."""
    blocks = transformer_blocks(model)
    if blocks is None:
        return 0
    import torch._dynamo

    # Every block is its own module instance: allow one compiled entry each (the default limit is 8).
    for key in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), 2 * len(blocks) + 8))
    for block in blocks:
        block.compile(mode=mode)
    return len(blocks)


def should_compile(setting: str, device: torch.device) -> bool:
    return setting in ("blocks", "graphs") or (setting == "auto" and device.type == "cuda")


def optimize_for_training(model: nn.Module, method: Any, device: torch.device, dtype: torch.dtype | None,
                          compile_setting: str = "auto", lean: bool = True) -> list[str]:
    """Apply the levers that fit this method and device; returns one note per lever applied. `lean=False`
    keeps frozen weights in their dtype (FSDP2 all-gathers each block's parameters in one dtype, and casts
    them itself under a MixedPrecisionPolicy)."""
    notes = []
    if dtype is not None and lean_lora_inputs(model):
        notes.append("speed: LoRA inputs stay in the autocast dtype (no fp32 round trip per layer)")
    if method.frozen_base and device.type == "cuda" and lean:
        saved = lean_frozen_weights(model, dtype)
        if saved:
            notes.append(f"speed: frozen base weights stored in {str(dtype).split('.')[-1]} "
                         f"({saved / 2 ** 20:,.0f} MiB saved)")
    if should_compile(compile_setting, device):
        graphs = compile_setting == "graphs" and device.type == "cuda"  # CUDA graphs need CUDA
        n = compile_blocks(model, "reduce-overhead" if graphs else None)
        if n:
            notes.append(f"speed: torch.compile on {n} transformer blocks" + (", with CUDA graphs" if graphs else ""))
    return notes
