"""`lora` and `dora` through PEFT: low-rank updates on chosen linear layers, the base frozen.

Adapters are saved in PEFT's own format, so they load unchanged in PEFT, transformers and vLLM.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager, Iterator

from torch import nn

from ..errors import TuneforgeError
from .base import PARAMETER_EFFICIENT, Method, suggest, task_of

if TYPE_CHECKING:
    from ..config import MethodConfig


class LoraMethod(Method):
    """LoRA (and DoRA) through PEFT: low-rank updates on chosen linear layers, the base frozen."""

    name = "lora"
    family = PARAMETER_EFFICIENT
    saves_full_model = False
    frozen_base = True  # the base never updates: speed.lean_frozen_weights may store it in bf16
    default_lr = 1e-3  # full fine-tuning's 1e-4 barely moves LoRA
    peft_format = True
    starts_as_base = True  # PEFT initialises B = 0: x @ A @ B adds exact zeros
    config_keys = ("r", "alpha", "dropout", "targets", "rslora", "modules_to_save")
    use_dora = False

    def apply(self, model: nn.Module, cfg: "MethodConfig", task: Any) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        task = task_of(task)
        edited = list(task.edited_modules)  # saved whole and frozen, never LoRA-wrapped
        peft_cfg = LoraConfig(
            task_type=task.peft_task_type,
            r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
            target_modules=lora_targets(model, cfg.targets), exclude_modules=edited or None,
            modules_to_save=(modules_to_save(model, cfg.modules_to_save, task) or []) + edited or None,
            use_rslora=cfg.rslora, use_dora=self.use_dora)
        peft_model = get_peft_model(model, peft_cfg)
        for name, param in peft_model.named_parameters():
            if any(f"{module}.modules_to_save." in name for module in edited):
                param.requires_grad_(False)  # part of the (frozen) base, carried in the adapter's files
        # PEFT appends its own head names (classifier, score) for SEQ_CLS: the saved list names each once
        saved = peft_model.peft_config["default"].modules_to_save
        if saved:
            peft_model.peft_config["default"].modules_to_save = list(dict.fromkeys(saved))
        return peft_model

    def name_base(self, out_dir: Path, name: str, revision: str | None) -> None:
        """adapter_config.json names the base as PEFT's Auto classes, pipeline() and vLLM resolve it."""
        path = out_dir / "adapter_config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        config.update(base_model_name_or_path=name, revision=revision)
        path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")

    def load(self, base: nn.Module, out_dir: Path) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(out_dir))

    def merge(self, model: nn.Module) -> nn.Module:
        return model.merge_and_unload()

    def adapters_off(self, model: nn.Module) -> ContextManager[Any]:
        """PEFT's own switch (LoRA, DoRA and modules_to_save all compute the base while it is on)."""
        return _keeping_trainable(model) if hasattr(model, "disable_adapter") else contextlib.nullcontext()

    @classmethod
    def overfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        if cfg is None:
            return ["lower method.r or raise method.dropout"]
        parts = [suggest("method.r", cfg.r, max(1, cfg.r // 2)),
                 suggest("method.dropout", cfg.dropout, round(min(0.5, max(0.1, cfg.dropout * 2)), 2))]
        return [" or ".join(p for p in parts if p)] if any(parts) else []

    @classmethod
    def underfit_advice(cls, cfg: "MethodConfig | None") -> list[str]:
        r = suggest("method.r", cfg.r, cfg.r * 2) if cfg else "raise method.r"
        return [f"{r}, or use full fine-tuning (method.name: full)"]

    @classmethod
    def forgetting_advice(cls, cfg: "MethodConfig | None" = None) -> str:
        r = suggest("method.r", cfg.r, max(1, cfg.r // 2)) if cfg else "lower method.r"
        return f"{r} or lower train.lr" if r else "lower train.lr"


class DoraMethod(LoraMethod):
    """Weight-decomposed LoRA (peft's use_dora)."""

    name = "dora"
    use_dora = True
    starts_as_base = False  # W·m/‖W‖ at init equals W only up to rounding
    # measured: Opacus's functorch fallback calls peft's DoraLinearLayer without the keyword arguments it needs
    dp_problem = "its magnitude layer has no per-example gradients in Opacus (peft 0.17+); use method.name: lora"


@contextlib.contextmanager
def _keeping_trainable(model: Any) -> Iterator[None]:
    """PEFT's disable_adapter, and afterwards every parameter trainable or frozen as before: switching back on,
    PEFT makes each modules_to_save copy trainable again, train.pooling's frozen query included (found when
    the base evaluation ran with the adapters off and that query then trained)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        with model.disable_adapter():
            yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


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


def modules_to_save(model: nn.Module, value: str | list[str], task: Any) -> list[str] | None:
    """The fully trained extra modules: a list as given, `auto` the task's head (if it has one), or none."""
    if isinstance(value, list):
        return value
    if value == "auto":
        return task_of(task).head_modules(model)
    return [value] if value and value != "none" else None
