"""The base-evaluation cache (evaluation/evalcache.py): a rerun of the same model on the same data reads the
base model's and the baselines' numbers instead of recomputing them, and the run comes out the same; another
seed (a fresh head) or other data is another key; a broken or unwritable cache only costs the speed-up."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers_tiny import make_tiny_bert, sentiment_rows, tiny_train_config, write_jsonl
from safetensors.torch import load_file

from tuneforge.config import load_config
from tuneforge.evaluation import evalcache


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "hub"
    monkeypatch.setattr(evalcache, "hub_cache", lambda: where)
    return where / "tuneforge-evals"


def _run(tmp_path: Path, name: str, seed: int = 0, rows: int = 40) -> tuple[dict[str, Any], Path]:
    from tuneforge.recipes.train import train

    bert = tmp_path / "bert"
    if not bert.exists():
        make_tiny_bert(bert)
    data = write_jsonl(tmp_path / f"train{rows}.jsonl", sentiment_rows(rows))
    raw = tiny_train_config(bert, data, tmp_path / "runs", name=name, epochs=1, seed=seed)
    raw["eval"] = {"base": True, "batch_size": 32, "bootstrap": 50, "audit": False}
    raw["method"] = {"name": "lora", "r": 4}
    out = train(load_config(None, base=raw), quiet=True)
    return json.loads((out.run_dir / "eval.json").read_text()), out.run_dir


def test_a_rerun_reads_the_base_evaluation_and_comes_out_the_same(tmp_path: Path, cache: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first, a = _run(tmp_path, "a")
    assert len(list(cache.glob("*.json"))) == 1
    from tuneforge.tasks.classification import ClassificationTask

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the baselines were computed again")

    with monkeypatch.context() as m:
        m.setattr(ClassificationTask, "baselines", refuse)
        second, b = _run(tmp_path, "b")
    assert any("read from its cache" in n for n in second["notes"])
    for key in ("base", "final", "baselines", "comparisons", "slices", "calibration"):
        assert json.dumps(second[key], sort_keys=True) == json.dumps(first[key], sort_keys=True), key
    wa, wb = (load_file(str(r / "model" / "adapter_model.safetensors")) for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "predictions").exists() and sorted(p.name for p in (a / "predictions").iterdir()) == \
        sorted(p.name for p in (b / "predictions").iterdir())

    _run(tmp_path, "c", seed=1)  # another seed: another head, another key
    _run(tmp_path, "d", rows=44)  # other data
    assert len(list(cache.glob("*.json"))) == 3


def test_a_broken_or_unwritable_cache_only_costs_the_speed_up(tmp_path: Path, cache: Path) -> None:
    first, _ = _run(tmp_path, "a")
    (entry,) = cache.glob("*.json")
    entry.write_text("{not json", encoding="utf-8")
    second, _ = _run(tmp_path, "b")
    assert not any("read from its cache" in n for n in second["notes"])
    assert second["base"] == first["base"]
    json.loads(entry.read_text(encoding="utf-8"))  # rewritten whole
    for f in cache.glob("*.json"):
        f.unlink()
    cache.rmdir()
    cache.write_text("a file where the cache directory should be", encoding="utf-8")
    third, _ = _run(tmp_path, "c")
    assert third["base"] == first["base"]
