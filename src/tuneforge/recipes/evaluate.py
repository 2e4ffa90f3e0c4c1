"""The evaluations around training: the base model and the baselines before it (cached per machine,
evaluation/evalcache.py), each split's metrics and rows, and a continued run's pretrained start."""
from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, ContextManager

import torch

from ..evaluation import evalcache
from ..training.distributed import SINGLE, Engine
from ..training.runlog import RunLog

if TYPE_CHECKING:
    from ..config import Config
    from .train import Prepared


def base_and_baselines(prep: Prepared, method: Any, model: torch.nn.Module, device: torch.device,
                       dtype: torch.dtype | None, log: RunLog, engine: Engine
                       ) -> tuple[dict[str, Any] | None, dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The base model's metrics and rows and the baselines' rows: read from this machine's cache when the same
    weights were evaluated on the same data with the same settings before (evaluation/evalcache.py), else
    computed, then cached."""
    cfg, task, sets = prep.cfg, prep.task, eval_sets(prep)
    digest = evalcache.key(model, {**sets, "train": prep.encoded["train"]}, cfg.eval, dtype) \
        if engine.size == 1 and sets and (cfg.eval.base or cfg.eval.baselines) else None
    found = evalcache.read(digest)
    if found is not None:
        log.note("base model and baselines: this machine evaluated the same weights on the same data with the "
                 "same settings before; read from its cache")
        return found["base"], found["base_rows"], found["baselines"]
    base, base_rows, baseline_rows = None, {}, {}
    probed = bool(cfg.eval.baselines and sets) and engine.size == 1  # a lone forward on one rank would hang
    features: dict[str, Any] | None = {} if probed and not method.scratch else None  # scratch: no pretrained features
    with as_started(method, model):
        if cfg.eval.base:
            base, base_rows = evaluate_sets(task, model, sets, cfg, device, dtype, engine, features)
        if probed:
            t0 = time.perf_counter()
            baseline_rows = task.baselines(None if method.scratch else model, prep.encoded["train"], sets,
                                           cfg.eval.batch_size, device, dtype, features)
            if baseline_rows:
                log.note(f"baselines ({', '.join(baseline_rows)}) in {time.perf_counter() - t0:.1f}s")
    evalcache.write(digest, {"base": base, "base_rows": base_rows, "baselines": baseline_rows})
    return base, base_rows, baseline_rows


def as_started(method: Any, model: torch.nn.Module) -> ContextManager[Any]:
    """Where the method's fresh adapters add exactly nothing (LoRA's B = 0), the model with them switched off:
    bitwise the same outputs without their work. Sentiment example (MiniLM, LoRA r=8 on every linear layer,
    bf16, 2 cores): embedding the 1,080 training reviews for the linear probe 3.82-3.98 s with them on,
    2.74-2.78 s off, features equal."""
    switch = method.adapters_off(model) if method.starts_as_base else None
    return switch if switch is not None else contextlib.nullcontext()


def evaluate_sets(task: Any, model: torch.nn.Module, sets: dict[str, list[Any]], cfg: Config, device: torch.device,
                   dtype: torch.dtype | None, engine: Engine = SINGLE, features: dict[str, Any] | None = None
                   ) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """(metrics, per-example rows) of each split. On several processes the split is evaluated in shares and
    gathered, without per-example rows (the report then has no slices, paired tests or intervals).
    `features` (one process): filled with each split's `embed` features where the task takes them from the
    same forward, for the linear probe (the base model's evaluation: no second pass over the same sets)."""
    metrics, rows = {}, {}
    for name, ex in sets.items():
        if engine.size > 1:
            metrics[name] = engine.evaluate(task, model, ex, cfg.eval.batch_size, device, dtype)
            continue
        if features is None:
            metrics[name], r = task.evaluate_rows(model, ex, cfg.eval.batch_size, device, dtype)
        else:
            metrics[name], r, feats = task.evaluate_rows_embedded(model, ex, cfg.eval.batch_size, device, dtype)
            if feats is not None:
                features[name] = feats
        if r is not None:
            rows[name] = r
    return metrics, rows


def pretrained_evaluation(prep: Prepared, method: Any, device: torch.device,
                          dtype: torch.dtype | None) -> dict[str, Any] | None:
    """A continued run of a generating task: the pretrained model too (the chain's start, before any run), so
    eval.json shows it next to the earlier run ("base") and this one; loaded only for this, then freed."""
    if not prep.task.generates:
        return None
    model = prep.task.load_model(prep.cfg, prep.source, method).to(device)
    out = {name: prep.task.evaluate(model, ex, prep.cfg.eval.batch_size, device, dtype)
           for name, ex in eval_sets(prep).items()}
    del model
    return out


def eval_sets(prep: Prepared) -> dict[str, list[Any]]:
    return {k: v for k, v in prep.encoded.items() if k in ("validation", "test")}
