"""Training methods behind one small interface.

A method decides which parameters train and how the result is saved and reloaded:
`apply(model, cfg, task) -> model`, `trainable_parameters(model)`, `save(model, dir)`,
`load(base, dir) -> model`, `merge(model) -> model`. Full fine-tuning is the trivial method;
LoRA wraps layers through PEFT so that saved adapters load unchanged in PEFT, transformers and vLLM.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import MethodConfig
from ..errors import TuneforgeError

HEAD_NAMES = ("classifier", "score")  # sequence-classification heads in HF models


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared (tied) tensors counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel() * (2 if getattr(p, "quant_type", None) else 1)  # 4-bit params pack two per byte
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def quant_state_bytes(tensor: Any) -> int:
    """Bytes of a 4-bit (bitsandbytes Params4bit) tensor's quantization constants; 0 for plain tensors."""
    state = getattr(tensor, "quant_state", None)
    if state is None:
        return 0
    return sum(v.numel() * v.element_size() for v in state.as_dict(packed=True).values() if torch.is_tensor(v))


def weight_bytes(model: nn.Module) -> int:
    """Bytes the model's weights occupy as stored: parameters, buffers and 4-bit quantization constants."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size() + quant_state_bytes(t)
    return total


class FullMethod:
    """Every weight trains; the result is a plain Hugging Face model directory."""

    name = "full"
    scratch = False

    def apply(self, model: nn.Module, cfg: MethodConfig, task: str) -> nn.Module:
        model.requires_grad_(True)
        return model

    def trainable_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return trainable_parameters(model)

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(str(out_dir), safe_serialization=True)

    def load(self, base: nn.Module, out_dir: Path) -> nn.Module:
        from safetensors.torch import load_model

        files = sorted(Path(out_dir).glob("*.safetensors"))
        if not files:
            raise TuneforgeError(f"{out_dir} holds no .safetensors weights")
        if len(files) == 1:
            load_model(base, str(files[0]), strict=False)
        else:  # sharded save
            from transformers.modeling_utils import load_sharded_checkpoint
            load_sharded_checkpoint(base, str(out_dir), strict=False)
        return base

    def merge(self, model: nn.Module) -> nn.Module:
        return model


class ScratchMethod(FullMethod):
    """The same architecture with fresh weights, trained like full fine-tuning: the baseline."""

    name = "scratch"
    scratch = True


class LoraMethod:
    """LoRA (and DoRA) through PEFT: low-rank updates on chosen linear layers, the base frozen."""

    name = "lora"
    scratch = False
    frozen_base = True  # the base never updates: speed.lean_frozen_weights may store it in bf16
    use_dora = False

    def apply(self, model: nn.Module, cfg: MethodConfig, task: str) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        peft_cfg = LoraConfig(
            task_type="SEQ_CLS" if task == "classification" else "CAUSAL_LM",
            r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
            target_modules=lora_targets(model, cfg.targets),
            modules_to_save=modules_to_save(model, cfg.modules_to_save, task),
            use_rslora=cfg.rslora, use_dora=self.use_dora)
        return get_peft_model(model, peft_cfg)

    def trainable_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return trainable_parameters(model)

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(str(out_dir), safe_serialization=True)

    def load(self, base: nn.Module, out_dir: Path) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(out_dir))

    def merge(self, model: nn.Module) -> nn.Module:
        return model.merge_and_unload()


class DoraMethod(LoraMethod):
    """Weight-decomposed LoRA (peft's use_dora)."""

    name = "dora"
    use_dora = True


def lora_targets(model: nn.Module, targets: str | list[str]) -> str | list[str]:
    """`auto` means every linear layer of the transformer body (not the task head)."""
    if isinstance(targets, list):
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        missing = [t for t in targets if t not in names]
        if missing:
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise TuneforgeError(f"`method.targets`: no module named {missing} in this model; "
                                 f"linear layers are {linear}")
        return targets
    if targets in ("auto", "all-linear"):
        return "all-linear"
    return [targets]


def modules_to_save(model: nn.Module, value: str | list[str], task: str) -> list[str] | None:
    if isinstance(value, list):
        return value
    if value == "auto":
        if task != "classification":
            return None
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        return [h for h in HEAD_NAMES if h in names] or None
    return [value] if value and value != "none" else None


def _lazy(module: str, cls: str) -> Callable[[], Any]:
    """A factory importing its module on first use (they import this module, and qlora pulls in bitsandbytes)."""
    def make() -> Any:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), cls)()
    return make


METHODS: dict[str, Callable[[], Any]] = {
    "full": FullMethod,
    "scratch": ScratchMethod,
    "lora": LoraMethod,
    "dora": DoraMethod,
    "qlora": _lazy("qlora", "QLoraMethod"),
    "adapter": _lazy("adapters", "AdapterMethod"),
    "freeze": _lazy("freeze", "FreezeMethod"),
}


def get_method(name: str) -> Any:
    if name not in METHODS:
        raise TuneforgeError(f"`method.name` = {name!r} is not available yet; choose one of {', '.join(METHODS)}")
    return METHODS[name]()


def freeze_all(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


@torch.no_grad()
def parameter_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}
