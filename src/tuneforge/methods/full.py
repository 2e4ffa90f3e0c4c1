"""`full` and `scratch`: every weight trains and the result is a plain Hugging Face model directory.

`scratch` is the same architecture with fresh random weights, trained like full fine-tuning: the baseline
that says what the pretrained weights are worth.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from ..errors import TuneforgeError
from .base import Method

if TYPE_CHECKING:
    from ..config import MethodConfig


class FullMethod(Method):
    """Every weight trains; the result is a plain Hugging Face model directory."""

    name = "full"
    default_lr = 1e-4  # LoRA's 1e-3 wrecks full fine-tuning

    def apply(self, model: nn.Module, cfg: "MethodConfig", task: Any) -> nn.Module:
        model.requires_grad_(True)
        return model

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

    @classmethod
    def overfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        return ["train fewer parameters: method.name: lora (or adapter)"]


class ScratchMethod(FullMethod):
    """The same architecture with fresh weights, trained like full fine-tuning: the baseline."""

    name = "scratch"
    scratch = True
    default_lr = 5e-4

    @classmethod
    def overfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        return ["start from the pretrained weights (method.name: full or lora): scratch is the from-zero baseline"]

    @classmethod
    def underfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        return cls.overfit_advice(cfg)

    @classmethod
    def forgetting_advice(cls, cfg: "MethodConfig | None" = None) -> str:
        return ""  # random weights hold no earlier knowledge to keep
