"""train.head_epochs (training/headfirst.py): the head trains alone first, then everything the method trains —
with and without DP-SGD, where only what trains is clipped and noised — and what it cannot run with is one
error line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_tiny import assert_refused_in_one_line, make_tiny_bert, sentiment_rows, tiny_train_config, write_jsonl

from tuneforge.config import load_config
from tuneforge.training import dp, loop


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _spy_steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Every optimizer step's trainable weights before and after it."""
    seen: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
    real = loop.step

    def spy(params: list[tuple[str, torch.nn.Parameter]], *args: Any, **kwargs: Any) -> Any:
        before = {n: p.detach().clone() for n, p in params}
        out = real(params, *args, **kwargs)
        seen.append((before, {n: p.detach().clone() for n, p in params}))
        return out

    monkeypatch.setattr(loop, "step", spy)
    return seen


@pytest.mark.parametrize("private", [False, True])
def test_the_head_trains_alone_then_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               private: bool) -> None:
    """LoRA on a tiny BERT, 2 epochs of which 1 is the head's: during the first epoch's steps the LoRA weights
    stay exactly as they were (under DP too: no noise lands on what does not train) while the head moves;
    afterwards both move, and the log says where the phase changed."""
    from tuneforge.recipes.train import train

    if private:
        monkeypatch.setattr(dp, "noise_multiplier", lambda *a: 0.8)  # some σ, not the accountant's search
    seen = _spy_steps(monkeypatch)
    bert = make_tiny_bert(tmp_path / "bert")
    raw = tiny_train_config(bert, write_jsonl(tmp_path / "train.jsonl", sentiment_rows(40)), tmp_path / "runs",
                            name="hf", epochs=2, lr=5e-3, head_epochs=1, batch_size=8)
    raw["method"] = {"name": "lora", "r": 4}
    raw["eval"] = {"base": False, "batch_size": 32, "baselines": False, "bootstrap": 0, "audit": False}
    if private:
        raw["privacy"] = {"pii": "off", "dp": {"epsilon": 8, "accountant": "rdp"}}
    out = train(load_config(None, base=raw), quiet=True)

    head_steps = 4  # 32 training examples, batch 8 (DP: expected batch 8 of 32, 4 Poisson batches an epoch)
    assert len(seen) == 2 * head_steps

    def moved(i: int, part: str) -> bool:
        before, after = seen[i]
        names = [n for n in before if ("classifier" in n) == (part == "head")]
        assert names
        return any(not torch.equal(before[n], after[n]) for n in names)

    assert all(moved(i, "head") and not moved(i, "body") for i in range(head_steps))
    assert all(moved(i, "body") for i in range(head_steps, len(seen)))
    notes = json.loads((out.run_dir / "eval.json").read_text())["notes"]
    assert any(f"steps 1-{head_steps} train the head alone" in n for n in notes), notes
    assert any(f"from step {head_steps + 1} everything" in n for n in notes), notes


@pytest.mark.parametrize("change, key", [
    ({"task": "instruction", "train": {"head_epochs": 1, "epochs": 2}}, "`train.head_epochs`"),
    ({"train": {"head_epochs": 2, "epochs": 2}}, "`train.head_epochs`"),
])
def test_what_head_epochs_cannot_run_with_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            change: dict[str, Any], key: str) -> None:
    assert_refused_in_one_line(tmp_path, change, key, capsys)


class _Heads:
    @staticmethod
    def head_modules(model: torch.nn.Module) -> list[str]:
        return ["classifier"]


@pytest.mark.parametrize("frozen, message", [
    ("classifier", "no parameter of the head trains"),
    ("encoder", "only the head trains anyway"),
])
def test_what_leaves_no_phase_is_refused_before_training(frozen: str, message: str) -> None:
    """Checked in recipes/train.py's start, before the run directory exists: a method whose head does not train,
    one that trains only the head, and a distributed launch."""
    from tuneforge.errors import TuneforgeError
    from tuneforge.training import headfirst

    model = torch.nn.ModuleDict({"encoder": torch.nn.Linear(4, 4), "classifier": torch.nn.Linear(4, 2)})
    headfirst.check(model, _Heads(), 1.0, processes=1)  # both train: fine
    headfirst.check(model, _Heads(), 0.0, processes=4)  # off: nothing to refuse
    with pytest.raises(TuneforgeError, match="torchrun"):
        headfirst.check(model, _Heads(), 1.0, processes=2)
    model[frozen].requires_grad_(False)
    with pytest.raises(TuneforgeError, match=message):
        headfirst.check(model, _Heads(), 1.0, processes=1)
