"""Training on several processes (training/distributed.py), in-process and fast: each rank's share of a global
batch, the gradient of the shares equal to one process's on the whole batch, sharded evaluation equal to the
whole split's, the strategy choice and its refusals, and which checkpoints resume on how many processes.
The real multi-process runs (torchrun, gloo) are in test_distributed_e2e.py."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_tiny import make_tiny_bert, minilm_tokenizer, sentiment_rows

from tuneforge.config import Config, TrainConfig
from tuneforge.data.records import Record
from tuneforge.errors import TuneforgeError
from tuneforge.methods import get_method
from tuneforge.models import loading
from tuneforge.recipes.train import distribute
from tuneforge.tasks.classification import ClassificationTask
from tuneforge.training import distributed
from tuneforge.training.checkpoint import Checkpointer
from tuneforge.training.distributed import Engine, World
from tuneforge.training.loop import accumulate

CPU = torch.device("cpu")


def engine(rank: int, size: int, strategy: str = "ddp") -> Engine:
    return Engine(World(rank, size, rank, size), CPU, strategy if size > 1 else "single")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    source = loading.resolve(str(make_tiny_bert(tmp_path_factory.mktemp("dist") / "bert")))
    task = ClassificationTask(minilm_tokenizer(), ["negative", "neutral", "positive"], "text", "label", 32)
    records = [Record(r, "train.jsonl", i + 1) for i, r in enumerate(sentiment_rows(23))]
    torch.manual_seed(0)
    model = loading.load_classifier(source, task.labels, dropout=0.0)
    return {"task": task, "examples": task.encode(records), "model": model}


def test_each_rank_takes_a_disjoint_share_of_every_global_batch() -> None:
    for n in (1, 2, 3, 7, 8):
        idx = list(range(100, 100 + n))
        shares = [engine(r, 3).shard(idx) for r in range(3)]
        real = [mine for mine, weight in shares if weight]
        assert sorted(i for mine in real for i in mine) == idx  # every example once, none twice
        assert sum(weight for _, weight in shares) == pytest.approx(3.0)  # DDP divides the sum by 3
        assert all(mine for mine, _ in shares)  # a rank without an example still steps (at weight 0)
    assert engine(0, 1).shard([4, 5]) == ([4, 5], 1.0)


def test_sharded_gradients_equal_one_process_on_the_global_batch(setup: dict[str, Any]) -> None:
    """N ranks at batch B, their gradients averaged as DDP does, equal one process at batch N·B — also for a
    tail batch smaller than N·B and one with fewer examples than ranks."""
    task, examples, base = setup["task"], setup["examples"], setup["model"]
    for group in ([list(range(0, 8))], [list(range(8, 13)), list(range(13, 23))], [[3]]):
        def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
            return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

        one = copy.deepcopy(base)
        loss_one, tokens_one = accumulate(one, task, examples, group, CPU, None, None)
        expected = grads(one)
        parts, total_loss, total_tokens = [], 0.0, 0
        for rank in range(3):
            model = copy.deepcopy(base)
            loss, tokens = accumulate(model, task, examples, group, CPU, None, None, engine=engine(rank, 3))
            parts.append(grads(model))
            total_loss, total_tokens = total_loss + float(loss), total_tokens + tokens
        for name, g in expected.items():
            mean = sum(p[name] for p in parts) / 3  # what DDP's all-reduce leaves on every rank
            assert torch.allclose(mean, g, atol=1e-6, rtol=1e-4), name
        assert total_loss / 3 == pytest.approx(float(loss_one), rel=1e-5)  # Engine.step_totals' arithmetic
        assert total_tokens == tokens_one


def test_sharded_evaluation_merges_to_the_whole_split_metrics(setup: dict[str, Any]) -> None:
    task, examples, model = setup["task"], setup["examples"], setup["model"]
    whole = task.evaluate(model, examples, 4, CPU, None)
    for n in (2, 3, 30):  # 30 shares of 23 examples: some are empty
        cuts = [(len(examples) * r) // n for r in range(n + 1)]
        parts = [task.evaluate_shard(model, examples[a:b], 4, CPU, None) for a, b in zip(cuts, cuts[1:])]
        merged = task.merge_shards(parts, examples)
        assert merged["n"] == whole["n"] == len(examples)
        assert merged["confusion_matrix"] == whole["confusion_matrix"]
        assert merged["loss"] == pytest.approx(whole["loss"], rel=1e-5)
        assert {k: v for k, v in merged.items() if k != "loss"} == {k: v for k, v in whole.items() if k != "loss"}


def test_auto_strategy_and_what_is_refused(setup: dict[str, Any]) -> None:
    model = setup["model"]
    two = World(0, 2, 0, 2)
    assert distributed.choose("auto", World(), get_method("full"), model, CPU)[0] == "single"
    assert distributed.choose("auto", two, get_method("lora"), model, CPU)[0] == "ddp"
    assert distributed.choose("auto", two, get_method("full"), model, CPU)[0] == "ddp"  # CPUs: host memory
    assert distributed.choose("fsdp", two, get_method("lora"), model, CPU) == ("fsdp", "train.distributed: fsdp")
    cfg = Config()
    cfg.train.distributed = "fsdp"
    with pytest.raises(TuneforgeError, match="bitsandbytes.*train.distributed: ddp"):
        distribute(cfg, get_method("qlora"), model, engine(0, 2))
    cfg.method.name, cfg.forgetting.ewc = "full", 0.5
    with pytest.raises(TuneforgeError, match="forgetting.ewc.*train.distributed: ddp"):
        distribute(cfg, get_method("full"), model, engine(0, 2))
    cfg.train.distributed, ready = "auto", engine(1, 2)
    distribute(cfg, get_method("lora"), model, ready)
    assert ready.strategy == "ddp" and "frozen base" in ready.reason
    line = distributed.describe(ready, 16, 2)
    assert "ddp on 2 processes" in line and "effective batch 64 = 16 per device × 2 devices × grad_accum 2" in line


def _checkpoint(tmp_path: Path, world_size: int, batch: int, layout: str = "replicated") -> Path:
    step = tmp_path / "checkpoints" / "step-4"
    step.mkdir(parents=True)
    meta = {"format": 1, "files": {}, "world_size": world_size, "global_batch": batch * world_size,
            "layout": layout, "train_config": {"batch_size": batch}}
    (step / "state.json").write_text(json.dumps(meta), encoding="utf-8")
    return tmp_path / "checkpoints"


@pytest.mark.parametrize("then, now, batch_now, strategy, problem", [
    ((2, 8), (2, "ddp"), 8, "ddp", None),                              # same world
    ((2, 8), (1, "single"), 16, "single", None),                       # 2 → 1, same global batch 16
    ((1, 16), (4, "ddp"), 4, "ddp", None),                             # 1 → 4, same global batch 16
    ((2, 8, "sharded"), (1, "single"), 16, "single", None),            # FSDP → one process (DCP consolidates)
    ((2, 8, "sharded"), (4, "fsdp"), 4, "fsdp", None),                 # FSDP 2 → 4 (DCP reshards)
    ((2, 8), (1, "single"), 8, "single", "set train.batch_size=16"),   # another global batch: refused
    ((2, 8), (3, "ddp"), 8, "ddp", "divides 16"),
    ((2, 8), (2, "fsdp"), 8, "fsdp", "resume with train.distributed: ddp"),  # DDP checkpoint under FSDP
])
def test_which_checkpoints_resume_on_how_many_processes(tmp_path: Path, then: tuple[Any, ...], now: tuple[int, str],
                                                        batch_now: int, strategy: str, problem: str | None) -> None:
    directory = _checkpoint(tmp_path, then[0], then[1], *then[2:])
    cfg = TrainConfig(batch_size=batch_now)
    notes: list[str] = []
    ckpt = Checkpointer(directory, cfg, None, resume=True, note=notes.append, engine=engine(0, now[0], now[1]))
    if problem is None:
        ckpt.check_resumable()
        return
    with pytest.raises(TuneforgeError, match=problem):
        ckpt.check_resumable()


def test_launcher_environment_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    world = distributed.world_from_env(env)
    assert (world.rank, world.size, world.local_rank, world.nodes, world.main) == (3, 4, 1, 2, False)
    assert distributed.world_from_env({}) == World()
    with pytest.raises(TuneforgeError, match="WORLD_SIZE='two' is not a number"):
        distributed.world_from_env({"WORLD_SIZE": "two"})
    with pytest.raises(TuneforgeError, match="RANK=4 with WORLD_SIZE=4"):
        distributed.world_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TuneforgeError, match="`tuneforge compare` trains each run in a process of its own"):
        distributed.refuse_launch("compare")


def test_a_sharded_checkpoint_resumes_whole_on_one_process(setup: dict[str, Any], tmp_path: Path) -> None:
    """FSDP's checkpoint path in-process (a 1-process gloo group; 2 processes are in test_distributed_e2e.py):
    the shards written through DCP without pickle, checksummed in state.json, then loaded on one unsharded
    process — the consolidation of an N-process checkpoint on M = 1 — with the optimizer state and best weights."""
    from tuneforge.training import fsdp
    from tuneforge.training.loop import LoopState, make_optimizer, make_plan, make_scheduler

    task, examples, base = setup["task"], setup["examples"], setup["model"]
    cfg = TrainConfig(batch_size=8)

    def parts(model: torch.nn.Module) -> tuple[Any, Any]:
        optimizer = make_optimizer([(n, p) for n, p in model.named_parameters() if p.requires_grad], cfg)
        return optimizer, make_scheduler(optimizer, make_plan(3, cfg), cfg)

    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    try:
        sharded, plain = copy.deepcopy(base), copy.deepcopy(base)
        ready = Engine(World(), CPU, "fsdp")
        ready.wrap(sharded, None)
        optimizer, scheduler = parts(sharded)
        ready.loss(task, sharded, task.collate(examples, list(range(8)), CPU)).backward()
        optimizer.step(), scheduler.step()
        best = {n: p.detach().clone() for n, p in sharded.named_parameters()}
        with torch.no_grad():  # the best weights differ from the current ones: they are saved too
            next(p for p in sharded.parameters()).add_(1.0)
        state = LoopState(step=1, micro=1, best_step=0, best_metric=0.5)
        path = Checkpointer(tmp_path, cfg, None, engine=ready).save(sharded, optimizer, scheduler, state, False, best)
        full = fsdp.full_trainable(sharded)
        full_best = {n: t.full_tensor() for n, t in best.items()}
        moments = {n: optimizer.state[p]["exp_avg"].full_tensor() for n, p in sharded.named_parameters()}
    finally:
        torch.distributed.destroy_process_group()
    meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    assert meta["layout"] == "sharded" and any(name.startswith("sharded/") for name in meta["sha256"])
    assert not list(path.rglob(".metadata")) and all(p.suffix in (".json", ".safetensors") for p in path.rglob("*.*"))
    optimizer, scheduler = parts(plain)
    resumed = Checkpointer(tmp_path, cfg, None, resume=True, note=lambda _: None).restore(plain, optimizer, scheduler)
    assert resumed is not None and resumed.state.step == 1 and resumed.state.best_metric == 0.5
    for name, p in plain.named_parameters():
        assert torch.equal(p.detach(), full[name]), name
        assert torch.equal(resumed.best_weights[name], full_best[name]), name
        assert torch.equal(optimizer.state[p]["exp_avg"], moments[name]), name
    assert scheduler.state_dict()["last_epoch"] == 1
    shard = path / next(n for n in meta["files"] if n.startswith("sharded/"))
    shard.write_bytes(b"x" * shard.stat().st_size)  # same size: only the checksum can tell
    notes: list[str] = []
    assert Checkpointer(tmp_path, cfg, None, resume=True, note=notes.append).restore(plain, *parts(plain)) is None
    assert any("damaged" in n for n in notes), notes  # a corrupted shard is caught by its checksum


def test_instruction_shares_are_weighted_by_supervised_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The instruction loss is a mean over supervised tokens, and examples have different numbers of them: each
    rank weights its loss by its share of the global batch's supervised tokens (Engine.share's all-reduce, here
    the sum over the simulated ranks), so the ranks' averaged gradients equal one process's on the whole batch.
    Weighting by examples instead (the classification rule) would not: that is checked too."""
    from helpers_tiny import make_tiny_llama

    from tuneforge.config import load_config
    from tuneforge.tasks.instruction.task import InstructionTask

    source = loading.resolve(str(make_tiny_llama(tmp_path / "llama")))
    cfg = load_config(None, base={"name": "t", "task": "instruction", "model": str(source.path),
                                  "data": {"train": "x.jsonl", "packing": False}})
    task = InstructionTask.from_config(cfg, loading.load_tokenizer(source))
    rows = [Record({"instruction": f"Question {i}? " + "more words " * i, "output": "detail " * (1 + i * i)},
                   "x.jsonl", i + 1) for i in range(5)]
    examples, group = task.encode(rows), [list(range(5))]
    torch.manual_seed(0)
    base = loading.load_causal_lm(source)

    def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    one = copy.deepcopy(base)
    loss_one, _ = accumulate(one, task, examples, group, CPU, None, None)
    units = [task.loss_units(task.collate(examples, engine(r, 2).shard(group[0])[0], CPU)) for r in range(2)]
    assert units[0] / sum(units) != pytest.approx(3 / 5)  # not the ranks' share of examples: the weighting matters
    for by_tokens in (True, False):
        monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t.fill_(float(sum(units))))
        if not by_tokens:
            monkeypatch.setattr(type(task), "loss_units", staticmethod(lambda batch: None))
        parts, total = [], 0.0
        for rank in range(2):
            model = copy.deepcopy(base)
            loss, _ = accumulate(model, task, examples, group, CPU, None, None, engine=engine(rank, 2))
            parts.append(grads(model))
            total += float(loss)
        same = all(torch.allclose((parts[0][n] + parts[1][n]) / 2, g, atol=1e-6, rtol=1e-4)
                   for n, g in grads(one).items())
        assert same == by_tokens
        assert (total / 2 == pytest.approx(float(loss_one), rel=1e-5)) == by_tokens
