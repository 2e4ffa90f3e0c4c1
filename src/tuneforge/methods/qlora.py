"""QLoRA: the frozen base held in 4-bit NF4 (double quantization on), LoRA adapters trained on top.

One library on every device: bitsandbytes. On CUDA it is the reference QLoRA implementation; on CPU
bitsandbytes >= 0.49 has a real 4-bit backend (the weights stay packed two per byte and are
de-quantized block by block inside each matmul). PEFT recognises its `Linear4bit` and wraps it with
its own 4-bit LoRA layer. CPU caveat (DESIGN.md, measured): on CPUs with AVX512-BF16 a no-grad eval
forward repacks the weights into an inference layout, after which gradients through the frozen base
are silently dropped; we turn that repacking off on every layer.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import TuneforgeError
from ..models.anatomy import HEAD_NAMES, output_head_name
from .base import freeze_all, quant_state_bytes, weight_bytes
from .lora import LoraMethod, modules_to_save

if TYPE_CHECKING:
    from ..config import MethodConfig

QUANT_FILE = "quantization.json"
QUANT = {"library": "bitsandbytes", "quant_type": "nf4", "double_quant": True, "blocksize": 64,
         "compute_dtype": "float32 (bf16 under autocast)"}


def _bnb() -> Any:
    # The CPU backend logs a warning at import when the optional hub kernel package (`kernels`) is
    # absent; it could not be fetched offline anyway, and the built-in CPU kernel is used instead.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise TuneforgeError("method qlora needs bitsandbytes (pip install 'bitsandbytes==0.50.2')") from None
    return bnb


def skip_names(model: nn.Module, head: list[str] | None) -> set[str]:
    """Linear layers that stay in full precision: the task head and the output (LM) head."""
    skip = set(head or []) | set(HEAD_NAMES)
    out = output_head_name(model)
    return skip | {out} if out else skip


def quantize_linears(model: nn.Module, skip: set[str], device: torch.device | None = None) -> int:
    """Replace every nn.Linear (except `skip` names) by a frozen 4-bit NF4 bitsandbytes Linear4bit.

    Returns how many weights were quantized. Quantization happens when the Params4bit moves to
    `device` (bitsandbytes' convention), so on CUDA it runs on the GPU.
    """
    bnb = _bnb()
    device = device or (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    count = 0
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            parts = f"{parent_name}.{child_name}".split(".")
            if type(child) is not nn.Linear or skip.intersection(parts):  # a head, or a part of one
                continue
            q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                  compute_dtype=torch.float32, compress_statistics=True, quant_type="nf4",
                                  device="meta")
            q.weight = bnb.nn.Params4bit(child.weight.data.float().cpu(), requires_grad=False,
                                         compress_statistics=True, quant_type="nf4", blocksize=QUANT["blocksize"],
                                         module=q)
            if child.bias is not None:
                q.bias = nn.Parameter(child.bias.data.float().cpu(), requires_grad=False)
            q = q.to(device)  # quantizes here
            q.support_avx512bf16_for_cpu = False  # see the module docstring
            setattr(parent, child_name, q)
            count += child.weight.numel()
    model.is_loaded_in_4bit = True  # tells PEFT to use its 4-bit LoRA layer (and transformers to count 4-bit)
    return count


def memory_report(model: nn.Module) -> dict[str, float]:
    """The 4-bit base weights against the same weights in bf16 and fp32 (MiB), and the whole model."""
    bnb = _bnb()
    params = packed = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            w = module.weight
            params += module.in_features * module.out_features
            packed += w.numel() * w.element_size() + quant_state_bytes(w)
    mib = 2 ** 20
    return {"quantized_params": params, "nf4_mb": round(packed / mib, 2), "bf16_mb": round(2 * params / mib, 2),
            "fp32_mb": round(4 * params / mib, 2), "bits_per_weight": round(8 * packed / max(params, 1), 3),
            "model_weights_mb": round(weight_bytes(model) / mib, 2)}


def is_4bit(module: nn.Module) -> bool:
    return type(module).__name__ == "Linear4bit" and hasattr(getattr(module, "weight", None), "quant_state")


def dequantized_linear(layer: nn.Module) -> nn.Linear:
    """A plain fp32 nn.Linear holding exactly the weights a 4-bit layer computes with."""
    bnb = _bnb()
    w = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    out = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device=w.device)
    out.weight.data.copy_(w)
    if layer.bias is not None:
        out.bias.data.copy_(layer.bias.data.float())
    return out


class QLoraMethod(LoraMethod):
    """LoRA on a 4-bit NF4 base (double quantization); the head stays full precision and trains."""

    name = "qlora"
    saves_base_edits = False  # an edited layer would be quantized with the rest; LoRA on the full base carries it
    dp_problem = "not supported yet with per-example gradients (bitsandbytes 4-bit layers); use method.name: lora"

    def apply(self, model: nn.Module, cfg: "MethodConfig", task: Any) -> nn.Module:
        freeze_all(model)
        quantize_linears(model, skip_names(model, modules_to_save(model, cfg.modules_to_save, task)))
        return super().apply(model, cfg, task)

    @classmethod
    def distributed_problem(cls, strategy: str) -> str | None:
        if strategy == "fsdp":
            return ("FSDP2 cannot shard bitsandbytes' packed 4-bit weights (they are uint8 buffers with their "
                    "quantization state beside them); use train.distributed: ddp, where each device holds the "
                    "4-bit base")
        return None

    @classmethod
    def compare_note(cls) -> str:
        return ("qlora on CPU: bitsandbytes de-quantizes each 4-bit weight block inside every matmul, which "
                "costs time on CPU; the fp32 weights exist briefly while loading, before quantization, so "
                "the peak includes them. Its saving shows in weights MB (and on GPU).")

    def describe(self, model: nn.Module) -> str:
        r = memory_report(model)
        return (f"qlora: {r['quantized_params']:,} base weights in 4-bit NF4 hold {r['nf4_mb']} MiB "
                f"({r['bits_per_weight']} bits/weight with double-quantized scales) vs {r['bf16_mb']} MiB bf16 "
                f"/ {r['fp32_mb']} MiB fp32 (bitsandbytes)")

    def save(self, model: nn.Module, out_dir: Path) -> None:
        super().save(model, out_dir)
        (Path(out_dir) / QUANT_FILE).write_text(json.dumps({**QUANT, **memory_report(model)}, indent=2),
                                                encoding="utf-8")

    def load(self, base: nn.Module, out_dir: Path) -> nn.Module:
        from peft import PeftModel

        freeze_all(base)
        saved = json.loads((Path(out_dir) / "adapter_config.json").read_text(encoding="utf-8"))
        quantize_linears(base, skip_names(base, saved.get("modules_to_save")))
        return PeftModel.from_pretrained(base, str(out_dir))

    def merge(self, model: nn.Module) -> nn.Module:
        """A plain fp32 model: de-quantized base weights + the LoRA update, which is exactly what the
        4-bit model computes (re-quantizing the merged weights, as PEFT's 4-bit merge does, would not be)."""
        from peft.tuners.lora import LoraLayer

        for name, module in list(model.named_modules()):
            if isinstance(module, LoraLayer) and is_4bit(module.get_base_layer()):
                _replace(model, name, _merged_linear(module))
        model = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        for name, module in list(model.named_modules()):  # quantized layers that had no LoRA
            if is_4bit(module):
                _replace(model, name, dequantized_linear(module))
        if hasattr(model, "is_loaded_in_4bit"):
            del model.is_loaded_in_4bit
        return model


def _merged_linear(module: Any) -> nn.Linear:
    new = dequantized_linear(module.get_base_layer())
    w = new.weight.data
    with torch.no_grad():
        for a in module.active_adapters:
            if a not in module.lora_A:
                continue
            w = module.lora_variant[a].merge_safe(module, a, w) if a in module.lora_variant \
                else w + module.get_delta_weight(a).to(w.dtype)
            if module.lora_bias.get(a) and new.bias is not None:
                new.bias.data += module.lora_B[a].bias.data
        new.weight.data.copy_(w)
    return new


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
