"""Bottleneck adapters (Houlsby 2019, Pfeiffer 2020), PEFT style: the original layer stays as `base_layer`.

An adapter is a small residual MLP placed on the output of a sub-layer:

    h = base_layer(x)                     # (B, T, d)
    h + up(act(down(dropout(h))))         # down: d -> d/reduction, up: d/reduction -> d

Houlsby puts one after the attention output projection and one after the feed-forward block;
Pfeiffer only after the feed-forward block. `up` starts at zero, so the adapted model starts exactly
equal to the base. The nonlinearity between `down` and `up` is what makes adapters expressive, and
also why they cannot be folded into the base weights (see `AdapterMethod.merge`).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Iterator

import torch
from torch import nn

from ..errors import TuneforgeError
from .base import PARAMETER_EFFICIENT, Method, freeze_all, suggest
from .lora import modules_to_save

if TYPE_CHECKING:
    from ..config import MethodConfig

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
FORMAT = "tuneforge-bottleneck-adapter"

# Output projections by role, as module-name suffixes. Order matters: the attention suffixes are tried
# first because BERT's attention projection ("attention.output.dense") also ends in "output.dense".
ATTENTION_OUT = ("attention.output.dense", "self_attn.o_proj", "attention.out_lin")  # BERT/RoBERTa, Llama-like, DistilBERT
FFN_OUT = ("output.dense", "mlp.down_proj", "ffn.lin2")


class BottleneckAdapter(nn.Module):
    """down → GELU → up, added to its input; `up` is zero so the block starts as the identity."""

    def __init__(self, hidden: int, bottleneck: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.down = nn.Linear(hidden, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, hidden)
        # Near-identity init (Houlsby): small `down` so gradients reach `up`, zero `up` so output == input.
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(self.dropout(h))))


class AdapterLayer(nn.Module):
    """Wraps a sub-layer's output projection: `adapter(base_layer(x))`, the base untouched."""

    def __init__(self, base_layer: nn.Module, bottleneck: int, dropout: float = 0.0):
        super().__init__()
        self.enabled = True  # off: the base layer alone (AdapterMethod.adapters_off)
        self.base_layer = base_layer
        hidden = _out_features(base_layer)
        self.adapter = BottleneckAdapter(hidden, bottleneck, dropout)
        ref = next(base_layer.parameters())
        self.adapter.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else torch.float32)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        h = self.base_layer(x, *args, **kwargs)
        return self.adapter(h) if self.enabled else h


def _out_features(layer: nn.Module) -> int:
    out = getattr(layer, "out_features", None)
    if out is None:
        raise TuneforgeError(f"adapters wrap linear output projections; {type(layer).__name__} has no out_features")
    return int(out)


def adapter_role(name: str) -> str | None:
    """'attention', 'ffn' or None for a module name (matched on whole dotted components)."""
    for role, suffixes in (("attention", ATTENTION_OUT), ("ffn", FFN_OUT)):
        if any(name == s or name.endswith("." + s) for s in suffixes):
            return role
    return None


def find_targets(model: nn.Module, style: str, targets: str | list[str]) -> list[str]:
    """Names of the modules to wrap: by style (auto), or every module ending in one of `targets`."""
    names = [n for n, m in model.named_modules() if n and not isinstance(m, AdapterLayer)
             and not n.endswith(".base_layer") and ".base_layer." not in n]
    if isinstance(targets, list):
        chosen = [n for n in names if any(n == t or n.endswith("." + t) for t in targets)]
    else:
        roles = {"houlsby": ("attention", "ffn"), "pfeiffer": ("ffn",)}[style]
        chosen = [n for n in names if adapter_role(n) in roles]
    chosen = [n for n in chosen if hasattr(model.get_submodule(n), "out_features")]
    if not chosen:
        raise TuneforgeError(
            f"adapters found no output projection to wrap in {type(model).__name__} (looked for "
            f"{', '.join(ATTENTION_OUT + FFN_OUT)}); set method.targets to a list of module names")
    return chosen


def add_adapters(model: nn.Module, names: dict[str, int], dropout: float) -> nn.Module:
    """Replace each named module by an AdapterLayer around it (`names`: module name → bottleneck size)."""
    for name, bottleneck in names.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, AdapterLayer(getattr(parent, child), bottleneck, dropout))
    return model


def adapter_state(model: nn.Module, head: list[str]) -> dict[str, torch.Tensor]:
    """The tensors an adapter run adds or changes: adapter weights and the trained head."""
    keep = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if ".adapter." in f".{key}" or any(h in parts[:-1] for h in head):
            keep[key] = value.detach().contiguous().cpu()
    return keep


class AdapterMethod(Method):
    """Bottleneck adapters on a frozen base; the task head (modules_to_save) trains fully."""

    name = "adapter"
    family = PARAMETER_EFFICIENT
    saves_full_model = False
    frozen_base = True  # the base never updates: speed.lean_frozen_weights may store it in bf16
    saves_base_edits = False  # its files hold the adapters and the head only
    default_lr = 1e-3
    config_keys = ("reduction", "adapter_style", "dropout", "targets", "modules_to_save")

    def apply(self, model: nn.Module, cfg: "MethodConfig", task: Any) -> nn.Module:
        names = find_targets(model, cfg.adapter_style, cfg.targets)
        sizes = {n: max(1, _out_features(model.get_submodule(n)) // cfg.reduction) for n in names}
        head = modules_to_save(model, cfg.modules_to_save, task) or []
        freeze_all(model)
        add_adapters(model, sizes, cfg.dropout)
        _unfreeze(model, head)
        model.tuneforge_adapter = {"format": FORMAT, "style": cfg.adapter_style, "reduction": cfg.reduction,
                                   "dropout": cfg.dropout, "activation": "gelu", "modules": sizes,
                                   "modules_to_save": head}
        return model

    def save(self, model: nn.Module, out_dir: Path) -> None:
        from safetensors.torch import save_file

        meta = getattr(model, "tuneforge_adapter", None)
        if meta is None:
            raise TuneforgeError("this model has no adapters to save (apply the adapter method first)")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file(adapter_state(model, meta["modules_to_save"]), str(out_dir / WEIGHTS_FILE),
                  metadata={"format": "pt"})
        (out_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load(self, base: nn.Module, out_dir: Path) -> nn.Module:
        from safetensors.torch import load_file

        out_dir = Path(out_dir)
        meta = json.loads((out_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise TuneforgeError(f"{out_dir / CONFIG_FILE} is not a tuneforge adapter config "
                                 f"(format {meta.get('format')!r}); was this run trained with method adapter?")
        freeze_all(base)
        add_adapters(base, {n: int(b) for n, b in meta["modules"].items()}, meta.get("dropout", 0.0))
        state = load_file(str(out_dir / WEIGHTS_FILE))
        missing = set(state) - set(base.state_dict())
        if missing:
            raise TuneforgeError(f"{out_dir / WEIGHTS_FILE} holds tensors this model lacks: {sorted(missing)[:3]}")
        base.load_state_dict(state, strict=False)
        _unfreeze(base, meta["modules_to_save"])
        base.tuneforge_adapter = meta
        return base

    def merge(self, model: nn.Module) -> nn.Module:
        raise TuneforgeError(self.merge_problem())

    def adapters_off(self, model: nn.Module) -> ContextManager[Any] | None:
        """Every adapter layer passes its base layer's output through unchanged. None when modules train in
        place beside the adapters (modules_to_save): switching the adapters off would not undo those."""
        meta = getattr(model, "tuneforge_adapter", None) or {}
        return None if meta.get("modules_to_save") else _switched_off(model)

    def merge_problem(self) -> str:
        return ("bottleneck adapters cannot be merged: a GELU sits between their two projections, so "
                "h + up(gelu(down(h))) is not a linear map and cannot be folded into the base weights. "
                "Export without --merge (tuneforge loads it: tuneforge predict/eval RUN), or train with "
                "method.name=lora (or dora) for a model that merges into plain transformers weights")

    @classmethod
    def overfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        if cfg is None:
            return ["raise method.reduction (a smaller bottleneck)"]
        parts = [suggest("method.reduction", cfg.reduction, cfg.reduction * 2),
                 suggest("method.dropout", cfg.dropout, round(min(0.5, max(0.1, cfg.dropout * 2)), 2))]
        return [" or ".join(p for p in parts if p)]

    @classmethod
    def underfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        wider = suggest("method.reduction", cfg.reduction, max(1, cfg.reduction // 2)) + ", or " \
            if cfg and cfg.reduction > 1 else ""
        return [f"train more of the model: {wider}method.name: lora or full"]

    @classmethod
    def forgetting_advice(cls, cfg: "MethodConfig | None" = None) -> str:
        narrower = suggest("method.reduction", cfg.reduction, cfg.reduction * 2) if cfg else ""
        return f"{narrower} or lower train.lr" if narrower else "lower train.lr"


@contextlib.contextmanager
def _switched_off(model: nn.Module) -> Iterator[None]:
    layers = [m for m in model.modules() if isinstance(m, AdapterLayer)]
    for layer in layers:
        layer.enabled = False
    try:
        yield
    finally:
        for layer in layers:
            layer.enabled = True


def _unfreeze(model: nn.Module, head: list[str]) -> None:
    """Adapters and the head train; everything else stays frozen."""
    for name, p in model.named_parameters():
        parts = name.split(".")
        if "adapter" in parts or any(h in parts[:-1] for h in head):
            p.requires_grad_(True)
