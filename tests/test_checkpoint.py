"""Checkpoints and the loop's guards, in-process on a toy model (fast): exact resume, atomicity, retention,
restore-best across a resume, NaN/inf stops, out-of-memory recovery, full disk, safe loading."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tuneforge.training import checkpoint as ckpt
from tuneforge.training.checkpoint import Checkpointer, truncate_metrics
from tuneforge.training.treecodec import decode, encode
from tuneforge.config import EarlyStoppingConfig, TrainConfig
from tuneforge.errors import TuneforgeError
from tuneforge.training.loop import fit, make_optimizer, make_plan, make_scheduler
from tuneforge.runs.reading import read_metrics
from tuneforge.training.runlog import RunLog


class Crash(Exception):
    """Stands in for SIGKILL in-process (the real signal is tested in test_resume.py)."""


class ToyTask:
    """Random 4-d points in 3 classes. The loss draws noise from python, numpy and torch RNGs, so an
    incomplete RNG restore shows up as different losses."""

    def __init__(self, crash_at: int | None = None, nan_at: set[int] | None = None,
                 inf_grad_at: set[int] | None = None, jitter: bool = True):
        self.calls, self.crash_at, self.jitter = 0, crash_at, jitter
        self.nan_at, self.inf_grad_at = nan_at or set(), inf_grad_at or set()

    def batches(self, examples: list[Any], batch_size: int, shuffle: bool = False, seed: int = 0) -> list[list[int]]:
        order = list(range(len(examples)))
        if shuffle:
            random.Random(seed).shuffle(order)
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    def collate(self, examples: list[Any], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.stack([examples[i][0] for i in idx]), "y": torch.tensor([examples[i][1] for i in idx])}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise Crash()
        jitter = 1.0 + 0.01 * random.random() + 0.01 * float(np.random.rand()) if self.jitter else 1.0
        out = model(batch["x"] * jitter)
        loss = nn.functional.cross_entropy(out, batch["y"])
        if self.calls in self.nan_at:
            loss = loss * float("nan")
        if self.calls in self.inf_grad_at:  # finite loss, infinite gradient
            loss = InfGrad.apply(loss)
        return loss

    @staticmethod
    def tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor(len(batch["y"]))

    def evaluate(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        was = model.training
        model.eval()
        with torch.no_grad():
            b = self.collate(examples, list(range(len(examples))), device)
            out = model(b["x"])
            loss = float(nn.functional.cross_entropy(out, b["y"]))
            acc = float((out.argmax(-1) == b["y"]).float().mean())
        model.train(was)
        return {"loss": loss, "accuracy": acc}


class InfGrad(torch.autograd.Function):
    """Identity forward, infinite backward: what an overflow inside a layer looks like."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


def toy_data(n: int, seed: int) -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return [(x[i], int(y[i])) for i in range(n)]


def toy_model() -> nn.Sequential:
    torch.manual_seed(123)
    return nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 3))


class Method:
    name = "full"


TRAIN, VAL = toy_data(40, 0), toy_data(12, 1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread is fastest and never waits on a busy machine's other cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cfg_for(**kw: Any) -> TrainConfig:
    base = dict(epochs=3, batch_size=4, lr=0.05, warmup=0.1, log_every=1, eval_every=4, checkpoint_every=3,
                keep_checkpoints=2, seed=0, precision="fp32",
                early_stopping=EarlyStoppingConfig(patience=None, restore_best=True))
    base.update(kw)
    return TrainConfig(**base)


def run(run_dir: Path, cfg: TrainConfig, task: ToyTask, resume: bool = False, checkpoints: bool = True):
    run_dir.mkdir(parents=True, exist_ok=True)
    model = toy_model()
    with RunLog(run_dir, tensorboard=False, quiet=True) as log:
        cp = Checkpointer(run_dir / "checkpoints", cfg, Method(), resume=resume, metrics=run_dir / "metrics.jsonl",
                          note=log.note) if checkpoints else None
        result = fit(model, task, TRAIN, VAL, cfg, log, torch.device("cpu"), None, checkpointer=cp, eval_batch_size=64)
    return model, result, log.notes


def train_losses(run_dir: Path) -> list[tuple[int, str, Any]]:
    return [(r["step"], r["split"], r.get("loss")) for r in read_metrics(run_dir)]


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------- exact resume

@pytest.mark.parametrize("crash_at", [5, 23])
def test_crash_and_resume_matches_uninterrupted_run(tmp_path: Path, crash_at: int) -> None:
    cfg = cfg_for()
    ref_model, ref, _ = run(tmp_path / "ref", cfg, ToyTask())
    with pytest.raises(Crash):
        run(tmp_path / "cut", cfg, ToyTask(crash_at=crash_at))
    model, res, notes = run(tmp_path / "cut", cfg, ToyTask(), resume=True)
    assert any("resumed from" in n for n in notes)
    assert_same(weights(ref_model), weights(model))
    assert train_losses(tmp_path / "ref") == train_losses(tmp_path / "cut")  # no duplicates, no gaps
    assert res.state.step == ref.state.step and res.state.history == ref.state.history
    assert res.best_weights_restored == ref.best_weights_restored


def test_restore_best_survives_resume(tmp_path: Path) -> None:
    """Early stopping with patience and restore-best; the best step lies before the checkpoint resumed from."""
    cfg = cfg_for(lr=0.5, eval_every=2, checkpoint_every=5, epochs=4,
                  early_stopping=EarlyStoppingConfig(patience=3, restore_best=True))
    ref_model, ref, _ = run(tmp_path / "ref", cfg, ToyTask())
    assert ref.state.best_step < ref.state.step
    with pytest.raises(Crash):  # one loss call per step: crash in the last step
        run(tmp_path / "cut", cfg, ToyTask(crash_at=ref.state.step))
    latest = Checkpointer(tmp_path / "cut" / "checkpoints", cfg, Method()).latest()
    assert latest is not None and int(latest.name.split("-")[1]) > ref.state.best_step
    assert (latest / "best.safetensors").exists()
    model, res, _ = run(tmp_path / "cut", cfg, ToyTask(), resume=True)
    assert res.best_weights_restored == ref.best_weights_restored
    assert res.state.stop_reason == ref.state.stop_reason
    assert_same(weights(ref_model), weights(model))


def test_resume_without_checkpoints_starts_fresh(tmp_path: Path) -> None:
    cfg = cfg_for(checkpoint_every=None)
    ref_model, _, _ = run(tmp_path / "ref", cfg, ToyTask(), checkpoints=False)
    with pytest.raises(Crash):
        run(tmp_path / "cut", cfg, ToyTask(crash_at=9))
    assert not (tmp_path / "cut" / "checkpoints").exists()
    model, _, notes = run(tmp_path / "cut", cfg, ToyTask(), resume=True)
    assert any("no complete checkpoint" in n and "checkpoint_every" in n for n in notes)
    assert_same(weights(ref_model), weights(model))
    assert train_losses(tmp_path / "ref") == train_losses(tmp_path / "cut")  # old lines were dropped


# ---------------------------------------------------------------- layout, atomicity, retention

def test_layout_retention_and_best_kept(tmp_path: Path) -> None:
    cfg = cfg_for(lr=0.5, eval_every=2, checkpoint_every=2, epochs=4, keep_checkpoints=2)
    _, res, _ = run(tmp_path / "r", cfg, ToyTask())
    cp = Checkpointer(tmp_path / "r" / "checkpoints", cfg, Method())
    steps = [s for s, _ in cp.complete()]
    newest = steps[-2:]
    assert newest[-1] == res.state.step
    assert set(steps) <= set(newest) | {res.state.best_step}
    latest = cp.latest()
    assert latest is not None
    names = {p.name for p in latest.iterdir()}
    assert {"trainable.safetensors", "state.safetensors", "state.json"} <= names
    assert not [p for p in latest.iterdir() if p.suffix in (".pt", ".bin", ".pkl")]  # no pickle anywhere
    meta = json.loads((latest / "state.json").read_text())
    assert meta["step"] == res.state.step and set(meta["files"]) == names - {"state.json"}
    assert meta["sha256"] == {n: hashlib.sha256((latest / n).read_bytes()).hexdigest() for n in meta["files"]}
    assert not list((tmp_path / "r" / "checkpoints").glob(".tmp-*"))


def test_incomplete_checkpoint_is_never_picked(tmp_path: Path) -> None:
    cfg = cfg_for(epochs=1)
    run(tmp_path / "r", cfg, ToyTask())
    root = tmp_path / "r" / "checkpoints"
    cp = Checkpointer(root, cfg, Method(), resume=True)
    good = cp.latest()
    assert good is not None
    good_step = int(good.name.split("-")[1])
    # a newer checkpoint whose weights file was truncated, one without state.json, and a temp leftover
    torn = root / f"step-{good_step + 1}"
    torn.mkdir()
    for f in good.iterdir():
        (torn / f.name).write_bytes(f.read_bytes())
    data = (torn / "trainable.safetensors").read_bytes()
    (torn / "trainable.safetensors").write_bytes(data[: len(data) // 2])
    headless = root / f"step-{good_step + 2}"
    headless.mkdir()
    (headless / "trainable.safetensors").write_bytes(data)
    (root / ".tmp-step-99-abc").mkdir()
    assert cp.latest() == good
    notes: list[str] = []
    cp.note = notes.append
    model = toy_model()
    params = [(n, p) for n, p in model.named_parameters()]
    opt = make_optimizer(params, cfg)
    resumed = cp.restore(model, opt, make_scheduler(opt, make_plan(10, cfg), cfg))
    assert resumed is not None and resumed.path == good
    assert not (root / ".tmp-step-99-abc").exists()
    # each skipped one is named, with why (it used to be skipped silently), and set aside
    damaged = [n for n in notes if "is damaged" in n]
    assert len(damaged) == 2
    assert str(headless) in damaged[0] and "state.json is missing" in damaged[0]
    assert str(torn) in damaged[1] and "trainable.safetensors has" in damaged[1] and "truncated" in damaged[1]
    assert f"falling back to {good.name}" in damaged[1]
    assert (root / f"{torn.name}.corrupt").is_dir() and not torn.exists() and not headless.exists()


def _flip_last_byte(path: Path) -> None:
    """Same size, different content: what bit rot or a bad copy does, and no size check can see."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the high byte of the last float: a large change to one weight
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped-byte", "truncated"])
def test_damaged_checkpoint_falls_back_with_a_note(tmp_path: Path, damage: str) -> None:
    cfg = cfg_for(keep_checkpoints=2)  # 10 steps an epoch, a checkpoint every 3 steps and at each epoch end
    ref_model, ref, _ = run(tmp_path / "ref", cfg, ToyTask())
    with pytest.raises(Crash):
        run(tmp_path / "cut", cfg, ToyTask(crash_at=17))
    root = tmp_path / "cut" / "checkpoints"
    (_, older), (_, newest) = Checkpointer(root, cfg, Method()).complete()[-2:]
    weights_file = newest / "trainable.safetensors"
    size = weights_file.stat().st_size
    if damage == "flipped-byte":
        _flip_last_byte(weights_file)
        assert weights_file.stat().st_size == size and ckpt.is_complete(newest)  # sizes cannot tell
    else:
        weights_file.write_bytes(weights_file.read_bytes()[: size // 2])
    model, res, notes = run(tmp_path / "cut", cfg, ToyTask(), resume=True)
    note = next(n for n in notes if "is damaged" in n)
    assert str(newest) in note and "trainable.safetensors" in note and f"falling back to {older.name}" in note
    assert ("sha256" if damage == "flipped-byte" else "truncated") in note
    assert any(f"resumed from {older}" in n for n in notes)
    # the fallback checkpoint is good, so the run ends exactly where an uninterrupted one does
    assert_same(weights(ref_model), weights(model))
    assert train_losses(tmp_path / "ref") == train_losses(tmp_path / "cut")
    assert res.state.history == ref.state.history


def test_best_weights_hard_linked_between_checkpoints(tmp_path: Path) -> None:
    cfg = cfg_for(lr=0.5, eval_every=2, checkpoint_every=1, epochs=3, keep_checkpoints=20)
    _, res, _ = run(tmp_path / "r", cfg, ToyTask())
    root = tmp_path / "r" / "checkpoints"
    bests = [root / f"step-{s}" / "best.safetensors" for s in range(res.state.best_step + 1, res.state.step + 1)]
    bests = [b for b in bests if b.exists()]
    assert len(bests) >= 2
    assert len({b.stat().st_ino for b in bests}) == 1  # one file on disk, linked into each checkpoint


def test_mismatched_model_refuses_to_resume(tmp_path: Path) -> None:
    cfg = cfg_for(epochs=1)
    run(tmp_path / "r", cfg, ToyTask())
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = make_optimizer(list(other.named_parameters()), cfg)
    cp = Checkpointer(tmp_path / "r" / "checkpoints", cfg, Method(), resume=True)
    with pytest.raises(TuneforgeError, match="does not match this model"):
        cp.restore(other, opt, make_scheduler(opt, make_plan(10, cfg), cfg))


def test_state_encoding_round_trips_exactly() -> None:
    model = toy_model()
    cfg = cfg_for()
    opt = make_optimizer(list(model.named_parameters()), cfg)
    sched = make_scheduler(opt, make_plan(10, cfg), cfg)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    sched.step()
    from tuneforge.training.device import rng_state

    tree = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state(),
            "misc": {1: (2.5, None, float("inf")), "np": np.int64(3)}}
    tensors: dict[str, torch.Tensor] = {}
    text = json.dumps(encode(tree, tensors, ""))
    back = decode(json.loads(text), tensors)
    assert back["rng"]["python"] == tree["rng"]["python"]
    assert np.array_equal(back["rng"]["numpy"][1], tree["rng"]["numpy"][1])
    assert torch.equal(back["rng"]["torch"], tree["rng"]["torch"])
    assert back["scheduler"] == tree["scheduler"]
    assert back["optimizer"]["param_groups"] == [dict(g, betas=tuple(g["betas"])) for g in tree["optimizer"]["param_groups"]]
    for k, v in tree["optimizer"]["state"].items():
        for name, t in v.items():
            assert torch.equal(back["optimizer"]["state"][k][name], t)
    assert back["misc"] == {1: (2.5, None, float("inf")), "np": 3}


def test_truncate_metrics_drops_later_and_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "split": "train", "loss": 1.0} for s in (1, 2, 3, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "spl')
    with open(path, "a") as handle:  # the RunLog's append handle stays valid after the cut
        truncate_metrics(path, 2)
        handle.write(json.dumps({"step": 3}) + "\n")
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]


# ---------------------------------------------------------------- numerical faults, OOM, full disk

def test_nan_loss_stops_naming_step_and_last_checkpoint(tmp_path: Path) -> None:
    cfg = cfg_for(eval_every=None, checkpoint_every=2)
    with pytest.raises(TuneforgeError) as e:
        run(tmp_path / "r", cfg, ToyTask(nan_at={7}))
    msg = str(e.value)
    assert "loss became nan at step 7" in msg and "step-6" in msg and "--resume" in msg
    assert (tmp_path / "r" / "checkpoints" / "step-6" / "state.json").exists()


def test_inf_gradient_with_finite_loss_is_caught(tmp_path: Path) -> None:
    cfg = cfg_for(eval_every=None, checkpoint_every=None)
    with pytest.raises(TuneforgeError, match=r"gradient norm became (inf|nan) .* at step 4"):
        run(tmp_path / "r", cfg, ToyTask(inf_grad_at={4}), checkpoints=False)


def test_nan_policy_skip_skips_up_to_max(tmp_path: Path) -> None:
    cfg = cfg_for(eval_every=None, checkpoint_every=None, nan_policy="skip", max_skips=2)
    _, res, notes = run(tmp_path / "a", cfg, ToyTask(nan_at={3}, inf_grad_at={6}), checkpoints=False)
    assert res.state.skipped == 2 and sum("batch skipped" in n for n in notes) == 2
    with pytest.raises(TuneforgeError, match="at step"):
        run(tmp_path / "b", cfg, ToyTask(nan_at={3, 5, 8}), checkpoints=False)


def test_skipped_last_batch_of_an_epoch_still_validates_and_checkpoints(tmp_path: Path) -> None:
    """A skipped batch advances the epoch like any other: when it is the epoch's last one, that epoch's
    validation and checkpoint still happen (the skip once jumped past both)."""
    cfg = cfg_for(eval_every=None, checkpoint_every=100, keep_checkpoints=10, nan_policy="skip")
    _, res, notes = run(tmp_path / "r", cfg, ToyTask(nan_at={10}, jitter=False))  # 10 batches an epoch
    assert res.state.skipped == 1 and any("step 10: loss became nan; batch skipped" in n for n in notes)
    ends = [(h["step"], h["epoch"]) for h in res.state.history]
    assert ends[:3] == [(9, 1.0), (19, 2.0), (29, 3.0)]  # every epoch end validated, the first after 9 steps
    assert res.state.history[0]["train_loss"] is None  # the skipped step had no usable loss
    assert (tmp_path / "r" / "checkpoints" / "step-9" / "state.json").exists()
    resumed = json.loads((tmp_path / "r" / "checkpoints" / "step-9" / "state.json").read_text())
    assert (resumed["epoch"], resumed["micro"]) == (0, 10)  # the position after the skipped batch


class OomOnce(nn.Module):
    """Wraps a model; its forward raises the CPU allocator's error once, for a batch larger than `limit`."""

    def __init__(self, inner: nn.Module, limit: int, message: str):
        super().__init__()
        self.inner, self.limit, self.message, self.raised = inner, limit, message, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > self.limit and not self.raised:
            self.raised += 1
            raise RuntimeError(self.message)
        return self.inner(x)

    def __getitem__(self, i: int) -> nn.Module:
        return self.inner[i]


@pytest.mark.parametrize("message", ["[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                                     "memory: you tried to allocate 1073741824 bytes", "CUDA out of memory."])
def test_out_of_memory_halves_micro_batch_keeps_effective_batch(tmp_path: Path, message: str) -> None:
    cfg = cfg_for(eval_every=None, checkpoint_every=None, epochs=1, batch_size=8, grad_accum=1,
                  early_stopping=EarlyStoppingConfig(patience=None, restore_best=False))
    # no dropout and no jitter: both runs then do the same arithmetic, up to rounding
    plain = nn.Sequential(*[m for m in toy_model() if not isinstance(m, nn.Dropout)])
    wrapped = OomOnce(nn.Sequential(*[m for m in toy_model() if not isinstance(m, nn.Dropout)]), 5, message)
    with RunLog(None, quiet=True) as log:
        res = fit(wrapped, ToyTask(jitter=False), TRAIN, [], cfg, log, torch.device("cpu"), None)
    assert wrapped.raised == 1 and res.state.micro_split == 2 and res.state.step == 5
    note = next(n for n in log.notes if "out of memory" in n)
    assert "micro-batch 8" in note and "micro-batch 4" in note and "accumulation 2" in note and "unchanged" in note
    with RunLog(None, quiet=True) as log:
        fit(plain, ToyTask(jitter=False), TRAIN, [], cfg, log, torch.device("cpu"), None)
    for a, b in zip(plain.parameters(), wrapped.inner.parameters()):
        assert torch.allclose(a, b, atol=1e-4)  # same effective batch: the same training, up to rounding


def test_out_of_memory_at_micro_batch_one_gives_up_clearly(tmp_path: Path) -> None:
    class AlwaysOom(OomOnce):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    cfg = cfg_for(eval_every=None, checkpoint_every=None, batch_size=2)
    with RunLog(None, quiet=True) as log, pytest.raises(TuneforgeError, match="even with a micro-batch of 1"):
        fit(AlwaysOom(toy_model(), 0, ""), ToyTask(), TRAIN, [], cfg, log, torch.device("cpu"), None)


def test_other_runtime_errors_are_not_mistaken_for_oom(tmp_path: Path) -> None:
    cfg = cfg_for(eval_every=None, checkpoint_every=None)
    with RunLog(None, quiet=True) as log, pytest.raises(RuntimeError, match="shape mismatch"):
        fit(OomOnce(toy_model(), 0, "shape mismatch"), ToyTask(), TRAIN, [], cfg, log, torch.device("cpu"), None)


@pytest.mark.parametrize("error", ["OSError", "SafetensorError"])
def test_disk_full_while_saving_keeps_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      error: str) -> None:
    import safetensors.torch as st
    from safetensors import SafetensorError

    real = st.save_file
    calls = {"n": 0}
    # what safetensors 0.8 really raises on a full disk (seen on a tmpfs: tests/test_disk_full.py)
    full = OSError(errno.ENOSPC, "No space left on device") if error == "OSError" else \
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    def flaky(tensors: Any, filename: str, metadata: Any = None) -> None:
        calls["n"] += 1
        if calls["n"] > 4:  # the first two checkpoints (2 files each) succeed
            with open(filename, "wb") as f:
                f.write(b"half")
            raise full
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(st, "save_file", flaky)
    cfg = cfg_for(eval_every=None, checkpoint_every=2, keep_checkpoints=5)
    with pytest.raises(TuneforgeError) as e:
        run(tmp_path / "r", cfg, ToyTask())
    msg = str(e.value)
    assert "disk full while writing checkpoint step-6" in msg and "step-4" in msg and "--resume" in msg
    root = tmp_path / "r" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-2", "step-4"]  # nothing half-written
    assert all(ckpt.is_complete(p) for p in root.iterdir())


def test_other_safetensors_errors_are_not_mistaken_for_a_full_disk(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch as st
    from safetensors import SafetensorError

    def broken(tensors: Any, filename: str, metadata: Any = None) -> None:
        raise SafetensorError("Some tensors share memory")  # a bug in what we save, not the disk

    monkeypatch.setattr(st, "save_file", broken)
    with pytest.raises(SafetensorError, match="share memory"):
        run(tmp_path / "r", cfg_for(eval_every=None, checkpoint_every=2), ToyTask())
    assert not list((tmp_path / "r" / "checkpoints").iterdir())  # its temporary directory is gone too


# ---------------------------------------------------------------- safe loading

def test_pickle_weights_refused_unless_allowed(tmp_path: Path) -> None:
    from helpers_tiny import make_tiny_bert

    from tuneforge.models import loading as models

    d = make_tiny_bert(tmp_path / "pickled", safe=False)
    assert (d / "pytorch_model.bin").exists()
    with pytest.raises(TuneforgeError, match=r"pytorch_model\.bin is a pickle file.*safe_serialization.*allow_pickle"):
        models.resolve(str(d))
    src = models.resolve(str(d), allow_pickle=True)
    model = models.load_classifier(src, ["a", "b"])  # transformers loads it with weights_only=True
    assert model.config.num_labels == 2
    with pytest.raises(TuneforgeError, match="pickle file"):
        models.resolve(str(d / "pytorch_model.bin"))
    # an adapter's safetensors beside pickle base weights does not make the base weights safe
    (d / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(TuneforgeError, match="pickle"):
        models.resolve(str(d))
    os.remove(d / "adapter_model.safetensors")


def test_lora_checkpoint_holds_only_trainable_parameters(tmp_path: Path) -> None:
    from helpers_tiny import make_tiny_bert
    from safetensors.torch import load_file

    from tuneforge.models import loading as models
    from tuneforge.config import MethodConfig
    from tuneforge.training.loop import LoopState
    from tuneforge.methods import get_method

    src = models.resolve(str(make_tiny_bert(tmp_path / "bert")))
    method, cfg = get_method("lora"), cfg_for()

    def build() -> nn.Module:
        torch.manual_seed(7)
        return method.apply(models.load_classifier(src, ["a", "b"]), MethodConfig(r=2), "classification")

    model = build()
    with torch.no_grad():  # move the adapter off its init so a restore is visible
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.5)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    sched = make_scheduler(opt, make_plan(10, cfg), cfg)
    path = Checkpointer(tmp_path / "ck", cfg, method).save(model, opt, sched, LoopState(step=3), is_best=False)
    saved = load_file(str(path / "trainable.safetensors"))
    assert set(saved) == {n for n, _ in params}
    assert all("lora_" in n or "classifier" in n for n in saved)  # no frozen base weight
    fresh = build()
    fopt = make_optimizer([(n, p) for n, p in fresh.named_parameters() if p.requires_grad], cfg)
    resumed = Checkpointer(tmp_path / "ck", cfg, method, resume=True).restore(
        fresh, fopt, make_scheduler(fopt, make_plan(10, cfg), cfg))
    assert resumed is not None and resumed.state.step == 3
    assert_same(weights(model), weights(fresh))
