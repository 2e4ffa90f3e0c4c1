"""Regularization knobs are real: dropout (model and LoRA), weight decay, label smoothing, early stopping
(patience, min_delta, metric, mode) and restoring the best weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from helpers_tiny import make_tiny_bert, minilm_tokenizer
from torch import nn

from tuneforge.models import loading as models
from tuneforge.config import EarlyStoppingConfig, TrainConfig, load_config
from tuneforge.training.loop import fit, make_optimizer
from tuneforge.methods import get_method
from tuneforge.training.runlog import RunLog


def _cfg(*overrides: str) -> Any:
    return load_config(None, ["name=x", "data.train=x.jsonl", *overrides])


def test_model_dropout_reaches_the_model(tmp_path: Path) -> None:
    from tuneforge.tasks.classification import ClassificationTask

    src = models.ModelSource("tiny", make_tiny_bert(tmp_path / "bert"))
    task = ClassificationTask(minilm_tokenizer(), ["a", "b"], "text", "label", 32)
    kept = task.load_model(_cfg(), src, get_method("full"))
    assert kept.config.hidden_dropout_prob == 0.1  # null: the model's own value
    model = task.load_model(_cfg("train.model_dropout=0.35"), src, get_method("full"))
    assert model.config.hidden_dropout_prob == 0.35 and model.config.attention_probs_dropout_prob == 0.35
    body = [m.p for m in model.bert.modules() if isinstance(m, nn.Dropout)]
    assert body and all(p == 0.35 for p in body)


def test_continued_runs_get_model_dropout_too() -> None:
    from tuneforge.models.anatomy import set_dropout

    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1), nn.Dropout(0.2))
    set_dropout(model, 0.4)
    assert [m.p for m in model if isinstance(m, nn.Dropout)] == [0.4, 0.4]


def test_lora_dropout_reaches_peft(tmp_path: Path) -> None:
    src = models.ModelSource("tiny", make_tiny_bert(tmp_path / "bert"))
    base = models.load_classifier(src, ["a", "b"])
    cfg = _cfg("method.name=lora", "method.dropout=0.27")
    model = get_method("lora").apply(base, cfg.method, "classification")
    assert model.peft_config["default"].lora_dropout == 0.27


def test_label_smoothing_is_wired(tmp_path: Path) -> None:
    from tuneforge.data.records import Record
    from tuneforge.recipes.train import build_task

    records = [Record({"text": "t", "label": y}, "f", i) for i, y in enumerate("abab")]
    plain = build_task(_cfg(), minilm_tokenizer(), records)
    smooth = build_task(_cfg("train.label_smoothing=0.2"), minilm_tokenizer(), records)
    assert smooth.label_smoothing == 0.2

    class Fixed(nn.Module):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
            return type("Out", (), {"logits": torch.tensor([[8.0, -8.0]])})()

    batch = {"input_ids": torch.zeros(1, 1, dtype=torch.long), "attention_mask": torch.ones(1, 1),
             "labels": torch.tensor([0])}
    # A confident correct prediction costs ~0 without smoothing, clearly more with it.
    assert float(plain.loss(Fixed(), batch)) < 1e-4 < 0.1 < float(smooth.loss(Fixed(), batch))


def test_weight_decay_groups() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    named = list(model.named_parameters())
    opt = make_optimizer(named, TrainConfig(weight_decay=0.3))
    decays = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays[id(model[0].weight)] == 0.3
    assert decays[id(model[0].bias)] == 0.0 and decays[id(model[1].weight)] == 0.0


class ScriptedTask:
    """A toy task whose validation metric follows a script, and which records the weights at each eval."""

    def __init__(self, val: list[float], key: str = "loss"):
        self.val, self.key, self.calls, self.snapshots = val, key, 0, []

    def batches(self, examples: list[Any], batch_size: int, shuffle: bool = False, seed: int = 0) -> list[list[int]]:
        return [list(range(i, min(i + batch_size, len(examples)))) for i in range(0, len(examples), batch_size)]

    def collate(self, examples: list[Any], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.stack([examples[i][0] for i in idx]), "y": torch.stack([examples[i][1] for i in idx])}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(model(batch["x"]), batch["y"])

    def tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor(len(batch["y"]))

    def evaluate(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        self.snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
        value = self.val[min(self.calls, len(self.val) - 1)]
        self.calls += 1
        return {"loss": value} if self.key == "loss" else {"loss": 1.0, self.key: value}


def _fit(task: ScriptedTask, es: EarlyStoppingConfig, steps: int = 8) -> tuple[nn.Module, Any]:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    g = torch.Generator().manual_seed(0)
    data = list(zip(torch.randn(8, 3, generator=g), torch.randint(0, 2, (8,), generator=g)))
    cfg = TrainConfig(epochs=steps, batch_size=8, lr=0.05, eval_every=1, precision="fp32", early_stopping=es,
                      warmup=0.0)
    return model, fit(model, task, data, data, cfg, RunLog(None, quiet=True), torch.device("cpu"), None)


def test_early_stopping_patience_and_restore_best() -> None:
    task = ScriptedTask([0.9, 0.5, 0.6, 0.7, 0.8, 0.9])
    model, out = _fit(task, EarlyStoppingConfig(patience=2, metric="val_loss"))
    assert out.state.step == 4 and "early stop at step 4" in out.state.stop_reason
    assert out.state.best_step == 2 and out.best_weights_restored
    for n, p in model.named_parameters():
        assert torch.equal(p, task.snapshots[1][n])  # the weights evaluated at step 2


def test_no_restore_keeps_the_last_weights() -> None:
    task = ScriptedTask([0.9, 0.5, 0.6, 0.7])
    model, out = _fit(task, EarlyStoppingConfig(patience=2, metric="val_loss", restore_best=False))
    assert not out.best_weights_restored
    assert all(torch.equal(p, task.snapshots[-1][n]) for n, p in model.named_parameters())


def test_min_delta_and_patience_off() -> None:
    # Improvements of 0.001 are below min_delta 0.01: they count as no improvement.
    task = ScriptedTask([0.5, 0.499, 0.498, 0.497])
    _, out = _fit(task, EarlyStoppingConfig(patience=2, min_delta=0.01))
    assert out.state.step == 3 and out.state.best_step == 1
    task = ScriptedTask([0.5, 0.6, 0.7, 0.8])
    _, out = _fit(task, EarlyStoppingConfig(patience=None), steps=4)
    assert out.state.step == 4 and not out.state.stop_reason  # patience null: never stops early


def test_metric_and_mode() -> None:
    task = ScriptedTask([0.6, 0.8, 0.7, 0.75], key="accuracy")
    _, out = _fit(task, EarlyStoppingConfig(patience=2, metric="val_accuracy"))  # auto: max for accuracy
    assert out.state.best_step == 2 and out.state.step == 4
    task = ScriptedTask([0.6, 0.8, 0.7, 0.75], key="accuracy")
    _, out = _fit(task, EarlyStoppingConfig(patience=2, metric="val_accuracy", mode="min"))
    assert out.state.best_step == 1 and out.state.step == 3


def test_unknown_metric_is_a_clear_error() -> None:
    from tuneforge.errors import TuneforgeError

    with pytest.raises(TuneforgeError, match="val_f1_macro"):
        _fit(ScriptedTask([0.5]), EarlyStoppingConfig(metric="val_f1_macro"))


def test_adapter_dropout_reaches_the_adapters(tmp_path: Path) -> None:
    from tuneforge.methods.adapters import BottleneckAdapter

    src = models.ModelSource("tiny", make_tiny_bert(tmp_path / "bert"))
    base = models.load_classifier(src, ["a", "b"])
    cfg = _cfg("method.name=adapter", "method.dropout=0.27")
    model = get_method("adapter").apply(base, cfg.method, "classification")
    adapters = [m for m in model.modules() if isinstance(m, BottleneckAdapter)]
    assert adapters and all(a.dropout.p == 0.27 for a in adapters)
