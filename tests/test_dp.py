"""Differentially private training (privacy.dp, training/dp.py): Opacus's per-example gradients are each
example's own, the ε stated is the accountant's, a resumed DP run equals an uninterrupted one, and what DP
cannot run with is refused in one line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_tiny import (assert_refused_in_one_line, make_tiny_bert, make_tiny_llama, sentiment_rows, tiny_train_config,
                          write_jsonl)
from safetensors.torch import load_file

from tuneforge.config import load_config
from tuneforge.errors import TuneforgeError
from tuneforge.training import dp


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _lm_config(tmp: Path, **privacy: Any) -> dict[str, Any]:
    llama = make_tiny_llama(tmp / "llama")
    rows = [{"instruction": f"Question {i}: " + "how do I reach support? " * (i % 4), "output": f"Write to us, {i}."}
            for i in range(24)]
    raw = tiny_train_config(llama, write_jsonl(tmp / "train.jsonl", rows), tmp / "runs", name="lm", epochs=1)
    raw.update(task="instruction", method={"name": "full"}, eval={"base": False, "batch_size": 8, "audit": False})
    raw["data"] = {"train": str(tmp / "train.jsonl"), "validation": 0.2, "max_length": 48}
    raw["privacy"] = {"pii": "off", "dp": {"epsilon": 8, **privacy}}
    return raw


@pytest.fixture
def any_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests about gradients and resuming need some σ, not the accountant's search for it (seconds each)."""
    monkeypatch.setattr(dp, "noise_multiplier", lambda *a: 0.8)


def test_per_example_gradients_equal_a_loop_over_single_examples(tmp_path: Path, any_noise: None) -> None:
    """Full fine-tuning of a tiny Llama (RMSNorm through functorch, tied embeddings, padded rows of different
    lengths): the per-example gradients Opacus computes in one batch are the gradients of each example alone."""
    from tuneforge.methods import get_method
    from tuneforge.recipes.train import prepare

    cfg = load_config(None, base=_lm_config(tmp_path))
    prep = prepare(cfg)
    task, train = prep.task, prep.encoded["train"]
    model = task.load_model(cfg, prep.source, get_method("full"))
    private = dp.start(cfg, len(train), distributed=False)
    assert private is not None
    private.attach(model, task, train, torch.device("cpu"), None)
    idx = [0, 1, 2, 3]
    assert len({len(train[i].ids) for i in idx}) > 1  # padding really happens
    task.private_loss(model, task.collate(train, idx, torch.device("cpu"))).backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    batched = {n: p.grad_sample.clone() for n, p in params}
    for j, i in enumerate(idx):
        for _, p in params:
            p.grad, p.grad_sample = None, None
        task.private_loss(model, task.collate(train, [i], torch.device("cpu"))).backward()
        for n, p in params:
            assert torch.allclose(batched[n][j], p.grad, atol=1e-5, rtol=1e-4), f"example {j}: {n} differs"
    private.detach()


def test_the_stated_epsilon_is_the_accountants(tmp_path: Path) -> None:
    """The noise chosen for the target ε reaches it (Opacus's PRV and RDP accountants, computed afresh for
    the same noise, rate and steps), and the ε a run spends step by step is what a fresh accountant says."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    raw = tiny_train_config(tmp_path, tmp_path / "train.jsonl", tmp_path / "runs", epochs=1)
    raw["privacy"] = {"dp": {"epsilon": 3, "delta": 1e-3}}
    b = dp.budget(load_config(None, base=raw), 400)
    assert b is not None and b.sample_rate == 4 / 400 and b.plan.total_steps == 100
    prv, rdp = PRVAccountant(), RDPAccountant()
    for acc in (prv, rdp):
        acc.history = [(b.noise, b.sample_rate, b.plan.total_steps)]
    assert 2.9 < prv.get_epsilon(delta=1e-3) <= 3.0 + 1e-6
    assert rdp.get_epsilon(delta=1e-3) >= prv.get_epsilon(delta=1e-3)  # RDP's bound is the looser one
    private = dp.Private(b, 0, 4)
    for _ in range(40):
        private.accountant.step(noise_multiplier=b.noise, sample_rate=b.sample_rate)
    fresh = PRVAccountant()
    fresh.history = [(b.noise, b.sample_rate, 40)]
    assert private.spent() == pytest.approx(fresh.get_epsilon(delta=1e-3), rel=1e-9)
    raw["privacy"]["dp"]["epsilon"] = 1e-4
    with pytest.raises(TuneforgeError, match="cannot be reached"):
        dp.budget(load_config(None, base=raw), 400)


def _interrupt_after(step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.training.checkpoint import Checkpointer

    original = Checkpointer.save

    def save(self: Any, model: Any, optimizer: Any, scheduler: Any, state: Any, **kw: Any) -> Path:
        path = original(self, model, optimizer, scheduler, state, **kw)
        if state.step == step:
            raise KeyboardInterrupt  # the process dies right after a checkpoint: what --resume continues from
        return path

    monkeypatch.setattr(Checkpointer, "save", save)


def test_the_accountants_search_warning_stays_out_of_the_output() -> None:
    """At the sentiment example's budget (ε 8, δ 9.3e-5, rate 0.237, 50 steps) Opacus warns that its RDP
    estimate's best order is the largest it tries; tuneforge's calls say nothing (the ε does not depend on it)."""
    import warnings

    from opacus.accountants.utils import get_noise_multiplier

    args = dict(target_epsilon=8.0, target_delta=9.3e-5, sample_rate=0.237, steps=50, accountant="prv")
    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        sigma = get_noise_multiplier(**args)
    assert any("largest alpha" in str(w.message) for w in raw)  # what would reach the user
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        assert dp.noise_multiplier.__wrapped__(8.0, 9.3e-5, 0.237, 50, "prv") == sigma
    assert not ours, [str(w.message) for w in ours]


def test_a_resumed_dp_run_equals_an_uninterrupted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      any_noise: None) -> None:
    """Same weights, same spent ε, same per-epoch ε: the Poisson batches, the accountant's history and the
    noise generator all continue from the checkpoint."""
    from tuneforge.recipes.train import train

    bert = make_tiny_bert(tmp_path / "bert")
    rows = write_jsonl(tmp_path / "train.jsonl", sentiment_rows(30))

    def config(name: str, resume: bool = False) -> Any:  # 24 train examples, 6 Poisson batches an epoch
        raw = tiny_train_config(bert, rows, tmp_path / "runs", name=name, epochs=2, lr=5e-3, checkpoint_every=2)
        raw["privacy"] = {"pii": "off", "dp": {"epsilon": 8, "accountant": "rdp"}}
        raw["eval"] = {"base": False, "batch_size": 32, "baselines": False, "bootstrap": 0, "audit": False}
        raw["resume"] = resume
        return load_config(None, base=raw)

    whole = train(config("whole"), quiet=True)
    with monkeypatch.context() as m:
        _interrupt_after(4, m)  # mid first epoch
        with pytest.raises(KeyboardInterrupt):
            train(config("cut"), quiet=True)
    cut = train(config("cut", resume=True), quiet=True)
    a, b = (load_file(str(run / "model" / "model.safetensors")) for run in (whole.run_dir, cut.run_dir))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert cut.eval["privacy"]["epsilon"] == whole.eval["privacy"]["epsilon"] > 0
    assert cut.eval["privacy"]["per_epoch"] == whole.eval["privacy"]["per_epoch"]
    assert len(whole.eval["privacy"]["per_epoch"]) == 2
    start = json.loads((tmp_path / "runs" / "cut" / "eval.json").read_text())["notes"]
    assert any("resumed from" in line for line in start)


@pytest.mark.parametrize("change, key", [
    ({"privacy": {"dp": {"epsilon": -1}}}, "`privacy.dp.epsilon`"),
    ({"privacy": {"dp": {"epsilon": 8, "delta": 2}}}, "`privacy.dp.delta`"),
    ({"privacy": {"dp": {"epsilon": 8, "max_grad_norm": 0}}}, "`privacy.dp.max_grad_norm`"),
    ({"privacy": {"dp": {"epsilon": 8}}, "method": {"name": "qlora"}}, "`method.name`"),
    ({"privacy": {"dp": {"epsilon": 8}}, "method": {"name": "dora"}}, "`method.name`"),
    ({"privacy": {"dp": {"epsilon": 8}}, "task": "instruction", "forgetting": {"replay": 0.2, "reference": "builtin"}},
     "`forgetting.replay`"),
    ({"privacy": {"dp": {"epsilon": 8}}, "task": "regression"}, "`task`"),
    ({"privacy": {"dp": {"epsilon": 8}}, "task": "instruction", "data": {"packing": True}}, "`data.packing`"),
    ({"privacy": {"canaries": 3}}, "`privacy.canaries`"),
])
def test_what_dp_cannot_run_with_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   change: dict[str, Any], key: str) -> None:
    assert_refused_in_one_line(tmp_path, change, key, capsys)
