"""Forwards the run shares instead of repeating (issue #16): the base model's evaluation hands the linear probe
its embeddings of the same sets, and the final train probe hands the memorization audit its members' losses.
Each shared result must equal what its own pass gave, bit for bit, on a tiny random model."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers_tiny import make_tiny_bert, sentiment_rows, tiny_train_config, write_jsonl

from tuneforge.config import load_config
from tuneforge.evaluation import evalcache, memorization
from tuneforge.methods import get_method
from tuneforge.recipes.evaluate import base_and_baselines, eval_sets, evaluate_sets
from tuneforge.recipes.inference import start_model
from tuneforge.recipes.train import TRAIN_PROBE, Prepared, prepare, train_probe
from tuneforge.tasks.classification import ClassificationTask, HeadTask
from tuneforge.training.distributed import SINGLE
from tuneforge.training.runlog import RunLog

CPU = torch.device("cpu")
DTYPES = [None, torch.bfloat16]  # fp32, and the CPU autocast the sentiment example runs in


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Toy reviews of uneven length, so batches pad and a logit can depend on its batch."""
    rows = sentiment_rows(n, seed)
    for i, r in enumerate(rows):
        r["text"] += " really" * (i * 7 % 41)
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Prepared, Any, torch.nn.Module]:
    """A tiny LoRA classification run, prepared and loaded as training starts it (eval batch 8, uneven lengths)."""
    root = tmp_path_factory.mktemp("shared")
    bert = make_tiny_bert(root / "bert", hidden=128)  # at 32 or 64 wide no logit depended on its batch here
    raw = tiny_train_config(bert, write_jsonl(root / "train.jsonl", _rows(90, 0)), root / "runs", name="shared")
    raw["data"]["max_length"] = 64
    raw["data"]["test"] = str(write_jsonl(root / "test.jsonl", _rows(30, 1)))
    raw["eval"] = {"base": True, "baselines": True, "batch_size": 8, "bootstrap": 0}
    raw["method"] = {"name": "lora", "r": 4}
    prep = prepare(load_config(None, base=raw))
    method = get_method("lora")
    model = method.apply(start_model(prep.cfg, prep.source, prep.task, method), prep.cfg.method, prep.task)
    return prep, method, model


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_forward_gives_the_base_evaluation_and_the_probe_embeddings(run: tuple[Prepared, Any, torch.nn.Module],
                                                                       dtype: torch.dtype | None) -> None:
    prep, _, model = run
    task, sets, bs, cfg = prep.task, eval_sets(prep), prep.cfg.eval.batch_size, prep.cfg
    metrics, rows = evaluate_sets(task, model, sets, cfg, CPU, dtype)
    probes = task.baselines(model, prep.encoded["train"], sets, bs, CPU, dtype)
    features: dict[str, Any] = {}
    shared_metrics, shared_rows = evaluate_sets(task, model, sets, cfg, CPU, dtype, features=features)
    assert set(features) == set(sets) == {"validation", "test"}
    for split, ex in sets.items():
        assert np.array_equal(features[split], task.embed(model, ex, bs, CPU, dtype)), split
    assert _same(shared_metrics, metrics) and _same(shared_rows, rows)
    shared_probes = task.baselines(model, prep.encoded["train"], sets, bs, CPU, dtype, features)
    assert any(k.startswith("linear probe") for k in probes) and _same(shared_probes, probes)


def test_the_base_evaluation_embeds_the_eval_sets_once(run: tuple[Prepared, Any, torch.nn.Module], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """base_and_baselines: the probe embeds only its training sample, the adapters are off, and what it reports
    is the two-pass result with them on, bit for bit."""
    prep, method, model = run
    monkeypatch.setattr(evalcache, "hub_cache", lambda: tmp_path / "hub")
    task, sets, bs = prep.task, eval_sets(prep), prep.cfg.eval.batch_size
    metrics, rows = evaluate_sets(task, model, sets, prep.cfg, CPU, None)
    probes = task.baselines(model, prep.encoded["train"], sets, bs, CPU, None)
    embedded: list[int] = []
    embed = ClassificationTask.embed
    monkeypatch.setattr(ClassificationTask, "embed", lambda self, m, ex, *a: embedded.append(len(ex)) or
                        embed(self, m, ex, *a))
    switched: list[bool] = []  # LoRA's fresh adapters add exact zeros: the base passes run with them off
    for name, param in model.named_parameters():  # a frozen modules_to_save copy (train.pooling's query) stays
        if "modules_to_save" in name:             # frozen: PEFT's switch back on would make it trainable
            monkeypatch.setattr(param, "requires_grad", False)
    off = method.adapters_off
    monkeypatch.setattr(method, "adapters_off", lambda m: switched.append(True) or off(m))
    log = RunLog(None, tensorboard=False, quiet=True)
    base, base_rows, baselines = base_and_baselines(prep, method, model, CPU, None, log, SINGLE)
    assert embedded == [len(prep.encoded["train"])]  # the probe's sample: every training example here
    assert switched == [True]
    assert all(not p.requires_grad for n, p in model.named_parameters() if "modules_to_save" in n)  # as before
    assert _same(base, metrics) and _same(base_rows, rows) and _same(baselines, probes)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_train_probe_scores_the_audit_members_as_the_audit_would(run: tuple[Prepared, Any, torch.nn.Module],
                                                                     dtype: torch.dtype | None) -> None:
    """The members' losses are example_nll's own, bit for bit (their batches are the same); the probe's metrics
    are evaluate's, its loss up to the float order of two shares."""
    prep, _, model = run
    task, bs, train = prep.task, prep.cfg.eval.batch_size, prep.encoded["train"]
    probe, members = train[:TRAIN_PROBE], memorization.members(train)
    scored = 40  # batched alone, not as in the probe's 72: read off the probe's pass, 2 of the 40 losses differed
    metrics, (sums, units) = task.evaluate_and_score(model, probe, scored, bs, CPU, dtype)
    alone = task.example_nll(model, probe[:scored], bs, CPU, dtype)
    assert np.array_equal(sums, alone[0]) and np.array_equal(units, alone[1])
    whole = task.evaluate(model, probe, bs, CPU, dtype)
    assert metrics["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert _same({k: v for k, v in metrics.items() if k != "loss"}, {k: v for k, v in whole.items() if k != "loss"})
    found, nll = train_probe(prep, model, CPU, dtype)
    assert nll is not None and np.array_equal(nll[0], task.example_nll(model, members, bs, CPU, dtype)[0])
    assert found["loss"] == pytest.approx(whole["loss"], rel=1e-5)


def test_the_train_probe_leaves_the_audit_alone_when_its_members_do_not_lead(
        run: tuple[Prepared, Any, torch.nn.Module]) -> None:
    """eval.audit: false, or a canary among the first examples: the probe is evaluate's, the audit scores its own."""
    prep, _, model = run
    probe = prep.encoded["train"][:TRAIN_PROBE]
    whole = prep.task.evaluate(model, probe, prep.cfg.eval.batch_size, CPU, None)
    off = dataclasses.replace(prep, cfg=dataclasses.replace(prep.cfg, eval=dataclasses.replace(prep.cfg.eval,
                                                                                               audit=False)))
    canary = dataclasses.replace(prep.encoded["train"][0], where="<canary>0")
    planted = dataclasses.replace(prep, encoded={**prep.encoded, "train": [canary, *prep.encoded["train"][1:]]})
    for changed in (off, planted):
        metrics, nll = train_probe(changed, model, CPU, None)
        assert nll is None
    assert train_probe(off, model, CPU, None)[0] == whole


def test_a_head_task_reads_its_slice_in_the_shared_forward(run: tuple[Prepared, Any, torch.nn.Module]) -> None:
    """A continued run's task (its labels a slice of a shared head): the one-forward path slices as logits does."""
    from tuneforge.models import loading

    prep, _, _ = run
    task = HeadTask.wrap(prep.task, 2, [])
    model = loading.load_classifier(prep.source, ["old:a", "old:b", *task.labels])
    ex, bs = prep.encoded["test"], prep.cfg.eval.batch_size
    metrics, rows = task.evaluate_rows(model, ex, bs, CPU, None)
    shared_metrics, shared_rows, features = task.evaluate_rows_embedded(model, ex, bs, CPU, None)
    assert _same(shared_metrics, metrics) and _same(shared_rows, rows)
    assert len(rows[0]["logits"]) == len(task.labels)
    assert np.array_equal(features, task.embed(model, ex, bs, CPU, None))


def test_a_scratch_run_gets_the_majority_baseline_and_no_probe(run: tuple[Prepared, Any, torch.nn.Module],
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """method scratch: random weights have no pretrained features to probe (found by `tuneforge compare`,
    whose scratch row crashed embedding with no model); the majority class stays, the base evaluation too."""
    prep, _, model = run
    monkeypatch.setattr(evalcache, "hub_cache", lambda: tmp_path / "hub")
    scratch = get_method("scratch")
    log = RunLog(None, tensorboard=False, quiet=True)
    base, _, baselines = base_and_baselines(prep, scratch, model, CPU, None, log, SINGLE)
    assert list(baselines) == ["majority class"] and set(base) == set(eval_sets(prep))
