"""`freeze`: full fine-tuning of only the top N transformer layers and what sits above them (head).

The lower layers hold general features that small data sets cannot improve, and freezing them cuts
gradient memory and optimizer state. Embeddings stay frozen (so a tied LM head stays frozen too);
modules outside the layer stack and outside the embeddings (BERT's pooler, Llama's final norm, the
classification head) train. The artifact is a full model directory, like `full`.
"""
from __future__ import annotations

from torch import nn

from ..config import MethodConfig
from ..errors import TuneforgeError
from ..methods.base import FullMethod, freeze_all


def layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer's block list (BERT encoder.layer, Llama model.layers): the largest ModuleList."""
    stacks = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not stacks:
        raise TuneforgeError(f"method freeze: found no layer stack (nn.ModuleList) in {type(model).__name__}")
    return max(stacks, key=lambda nm: sum(p.numel() for p in nm[1].parameters()))


def is_embedding(model: nn.Module, name: str) -> bool:
    owner = name.rsplit(".", 1)[0]
    module = model.get_submodule(owner) if owner else model
    return isinstance(module, nn.Embedding) or "embed" in name.lower()


class FreezeMethod(FullMethod):
    """Only the top `method.layers` layers + head train; a full model is saved."""

    name = "freeze"
    scratch = False

    def apply(self, model: nn.Module, cfg: MethodConfig, task: str) -> nn.Module:
        stack_name, stack = layer_stack(model)
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
