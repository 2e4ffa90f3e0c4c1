"""`freeze`: full fine-tuning of only the top N transformer layers and what sits above them (head).

The lower layers hold general features that small data sets cannot improve, and freezing them cuts
gradient memory and optimizer state. Embeddings stay frozen (so a tied LM head stays frozen too);
modules outside the layer stack and outside the embeddings (BERT's pooler, Llama's final norm, the
classification head) train. The artifact is a full model directory, like `full`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from ..errors import TuneforgeError
from ..models.anatomy import is_embedding, layer_stack
from .base import freeze_all, suggest
from .full import FullMethod

if TYPE_CHECKING:
    from ..config import MethodConfig


class FreezeMethod(FullMethod):
    """Only the top `method.layers` layers + head train; a full model is saved."""

    name = "freeze"
    default_lr = 2e-4
    config_keys = ("layers",)

    @classmethod
    def overfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        layers = suggest("method.layers", cfg.layers, cfg.layers // 2) if cfg and cfg.layers > 1 else ""
        return [f"train fewer layers: {layers}"] if layers else []

    @classmethod
    def underfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        layers = suggest("method.layers", cfg.layers, max(1, cfg.layers * 2)) + ", or " if cfg else ""
        return [f"train more of the model: {layers}method.name: lora or full"]

    @classmethod
    def forgetting_advice(cls, cfg: "MethodConfig | None" = None) -> str:
        layers = suggest("method.layers", cfg.layers, cfg.layers // 2) if cfg and cfg.layers > 1 else ""
        return f"{layers} or lower train.lr" if layers else "lower train.lr"

    def apply(self, model: nn.Module, cfg: "MethodConfig", task: Any) -> nn.Module:
        found = layer_stack(model)
        if found is None:
            raise TuneforgeError(f"method freeze: found no layer stack (nn.ModuleList) in {type(model).__name__}")
        stack_name, stack = found
        n = cfg.layers
        if n > len(stack):
            raise TuneforgeError(f"`method.layers` = {n} but {stack_name} has only {len(stack)} layers; "
                                 f"choose 0..{len(stack)} (0 trains only the head)")
        freeze_all(model)
        top = {f"{stack_name}.{i}." for i in range(len(stack) - n, len(stack))}
        for name, p in model.named_parameters():  # tied tensors appear once, under the embedding's name
            in_stack = name.startswith(stack_name + ".")
            if (in_stack and any(name.startswith(t) for t in top)) or (not in_stack and not is_embedding(model, name)):
                p.requires_grad_(True)
        return model
