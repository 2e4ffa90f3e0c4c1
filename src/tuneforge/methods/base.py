"""The Method interface, and the parameter counting every method shares.

A method decides which parameters train and how the result is saved, reloaded and merged:
`apply(model, cfg, task) -> model`, `save(model, dir)`, `load(base, dir) -> model`, `merge(model) -> model`.
Its class attributes answer what the rest of tuneforge asks about it, so that nothing outside methods/
names a method: `family`, `saves_full_model`, `frozen_base`, `scratch`, `default_lr`, and its advice when a
run over- or underfits or forgets (the diagnosis phrases it, the method knows its own knobs).

A new method: one module with a Method subclass, one line in methods/__init__.py's REGISTRY.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, ContextManager

import torch
from torch import nn

if TYPE_CHECKING:
    from ..config import MethodConfig

FULL_WEIGHT = "full-weight"
PARAMETER_EFFICIENT = "parameter-efficient"


class Method(ABC):
    """One way to train a model. Subclasses set the attributes and implement apply/load/merge."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = FULL_WEIGHT  # parameter-efficient methods train a small update on a frozen base
    saves_full_model: ClassVar[bool] = True  # model/ holds a whole HF model (else an adapter on the base)
    frozen_base: ClassVar[bool] = False  # the base weights never update (speed may store them in bf16)
    scratch: ClassVar[bool] = False  # fresh random weights instead of the pretrained ones
    default_lr: ClassVar[float] = 1e-4  # a conventional learning rate (compare uses it across families)
    config_keys: ClassVar[tuple[str, ...]] = ()  # the method.* settings it reads (its advice and the card name them)
    peft_format: ClassVar[bool] = False  # model/ is a PEFT adapter (PEFT's Auto classes, pipeline() and vLLM load it)
    # what the task's edit_start changed in the base (train.pooling's zeroed query) is saved with the run: in
    # the whole model, or (LoRA) whole in the adapter; an add-on saved without it would load onto the unchanged base
    saves_base_edits: ClassVar[bool] = True
    # before the first step its adapters add exactly zero, so `adapters_off` computes bitwise the same (faster)
    starts_as_base: ClassVar[bool] = False
    dp_problem: ClassVar[str | None] = None  # why privacy.dp (Opacus per-example gradients) cannot train it

    @abstractmethod
    def apply(self, model: nn.Module, cfg: "MethodConfig", task: Any) -> nn.Module:
        """Make `model` train the way this method does (`task`: a task, its class or its name)."""

    def save(self, model: nn.Module, out_dir: Path) -> None:
        model.save_pretrained(str(out_dir), safe_serialization=True)

    @abstractmethod
    def load(self, base: nn.Module, out_dir: Path) -> nn.Module:
        """The trained model from what `save` wrote, on top of a freshly loaded `base`."""

    @abstractmethod
    def merge(self, model: nn.Module) -> nn.Module:
        """A plain transformers model computing what the trained model computes."""

    def name_base(self, out_dir: Path, name: str, revision: str | None) -> None:
        """Record in what `save` wrote the stable name (and revision) of the base it sits on; a full model
        needs no base, so by default nothing is recorded."""

    def adapters_off(self, model: nn.Module) -> ContextManager[Any] | None:
        """A context in which `model` computes what it started from, its adapters switched off: the reference
        model of preference objectives, with no second copy in memory (a model without this method's
        adapters is its own start). None: this method changes the weights themselves (full fine-tuning)."""
        return None

    def merge_problem(self) -> str | None:
        """Why this method's result can never be merged, before anything is loaded (None: it can)."""
        return None

    def describe(self, model: nn.Module) -> str | None:
        """A line for the run log about what the method did to the model (None: nothing to add)."""
        return None

    @classmethod
    def distributed_problem(cls, strategy: str) -> str | None:
        """Why this method cannot train under a distribution strategy ("ddp", "fsdp"), or None: it can."""
        return None

    @classmethod
    def overfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        """What to change in this method's settings when the run overfits (never what the config already
        says: tests/test_diagnosis.py checks every advice against the config, for every method)."""
        return []

    @classmethod
    def underfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        """What to change in this method's settings when the run underfits."""
        return []

    @classmethod
    def forgetting_advice(cls, cfg: "MethodConfig | None" = None) -> str:
        """How to train less destructively with this method (the end of the forgetting advice; '' if none)."""
        return "train fewer weights (method.name: lora)"

    @classmethod
    def compare_note(cls) -> str | None:
        """A caveat for compare.md when this method is in the comparison (None: nothing to say)."""
        return None


def suggest(key: str, now: Any, to: Any) -> str:
    """'raise KEY (now A; try B)' or 'lower KEY (now A; try B)'; '' when B is A (nothing to change)."""
    if to == now:
        return ""
    return f"{'raise' if to > now else 'lower'} {key} (now {now:g}; try {to:g})"


def task_of(task: Any) -> Any:
    """A task object or class as given, or the registered task class of a task name."""
    if isinstance(task, str):
        from ..tasks import task_class

        return task_class(task)
    return task


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


def freeze_all(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


@torch.no_grad()
def parameter_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}
