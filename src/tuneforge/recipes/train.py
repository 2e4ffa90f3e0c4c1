"""`tuneforge train` as a plain function over small components (a torchtune-style recipe).

Order matters for the user's safety: every input is read and validated *before* the run directory
is created, so a user mistake never leaves a half-written or overwritten run behind.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config, dump_yaml, to_dict
from ..data.records import Record
from ..data.splits import load_splits
from ..errors import TuneforgeError
from ..evaluation import tblog
from ..evaluation.analysis import analyze
from ..evaluation.report import write_outputs, write_predictions
from ..evaluation.slices import missing_columns
from ..guards.diagnosis import diagnose
from ..guards.diagnosis import summary_lines as diagnosis_lines
from ..guards.forgetting import ForgettingGuard
from ..guards.probes import PreviousTask
from ..methods import get_method
from ..methods.base import count_parameters, weight_bytes
from ..models import loading
from ..runs import reading, rundir
from ..tasks import task_class
from ..training.checkpoint import Checkpointer, write_failure
from ..training.device import autocast_dtype, pick_device, seed_everything, set_threads
from ..training.loop import fit
from ..training.runlog import RunLog
from ..training.speed import optimize_for_training
from ..vetting.audit import summary_lines, vet
from .inference import start_model

TRAIN_PROBE = 512  # training examples re-evaluated at the end, to compare train vs validation


@dataclass
class Prepared:
    """Validated inputs: the data after vetting, encoded for the task, plus the audit."""

    cfg: Config
    source: loading.ModelSource
    tokenizer: Any
    task: Any
    splits: dict[str, list[Record]]
    encoded: dict[str, list[Any]]
    audit: dict[str, Any]


def prepare(cfg: Config, log: RunLog | None = None, splits: dict[str, list[Record]] | None = None) -> Prepared:
    """Read, vet, split and encode the data; resolve the model. Touches nothing on disk."""
    source = loading.resolve(cfg.model, allow_pickle=cfg.allow_pickle)
    kind = task_class(cfg.task)
    if splits is None:  # cross-validation passes each fold's splits in
        splits = load_splits(cfg.data.train, cfg.data.validation, cfg.data.test, kind.stratify_column(cfg),
                             cfg.data.group, cfg.train.seed, cfg.data.limit)
    splits, audit = vet(splits, cfg, kind)
    problem = missing_columns(cfg.eval.slices, splits.get("test") or splits.get("validation") or [])
    if problem:
        raise TuneforgeError(f"`eval.slices`: {problem}")
    if log is not None:
        for line in summary_lines(audit):
            log.note(line)
    tokenizer = loading.load_tokenizer(source)
    loading.check_vocabulary(tokenizer, source, splits["train"], kind.pii_columns(cfg))
    task = build_task(cfg, tokenizer, splits["train"])
    encoded = {name: task.encode(records, name) for name, records in splits.items()}
    if log is not None:  # e.g. instruction truncation summaries (which examples were cut, and how)
        for line in task.notes:
            log.note(line)
    return Prepared(cfg, source, tokenizer, task, splits, encoded, audit)


def build_task(cfg: Config, tokenizer: Any, train_records: list[Record]) -> Any:
    """The config's task, built for training (labels and formatting from the config and the training data)."""
    return task_class(cfg.task).from_config(cfg, tokenizer, train_records)


@dataclass
class TrainOutcome:
    run_dir: Path
    eval: dict[str, Any]


def train(cfg: Config, overwrite: bool = False, quiet: bool = False,
          splits: dict[str, list[Record]] | None = None) -> TrainOutcome:
    """Fine-tune per `cfg` and write the run directory; returns it with the final eval.json content.

    Every check that can fail runs before the run directory is created or an old run replaced: the data,
    the run directory itself, a resume's compatibility, the early-stopping metric, then loading the model,
    applying the method, the base evaluation and the forgetting guard (reference, earlier runs).
    `splits` (train/validation/test records) replaces reading cfg.data — cross-validation folds use it."""
    set_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    resume = bool(cfg.resume)
    early = RunLog(None, quiet=quiet)
    prep = prepare(cfg, early, splits)
    check_early_stopping_metric(cfg, prep.task)
    inputs = config_inputs(cfg)
    rundir.check(cfg.run_dir, overwrite=overwrite, resume=resume, inputs=inputs)
    if resume and not overwrite:
        check_resume(cfg, early)
    method = get_method(cfg.method.name)
    ready = start(prep, method, early)
    run_dir = rundir.prepare(cfg.run_dir, overwrite=overwrite, resume=resume, inputs=inputs)
    with rundir.lock(run_dir):
        rundir.atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg, reading.provenance(cfg, prep.splits)))
        rundir.atomic_write_json(run_dir / "data_audit.json", prep.audit)
        with RunLog(run_dir, quiet=quiet) as log:
            log.notes[:0] = early.notes
            result = _train_and_evaluate(prep, method, ready, run_dir, log)
    return TrainOutcome(run_dir, result)


def config_inputs(cfg: Config) -> dict[str, str]:
    """Config key → every file or directory the run reads (a run directory holding one is never deleted)."""
    found = {f"data.{name}": getattr(cfg.data, name) for name in ("train", "validation", "test")}
    reference = cfg.forgetting.reference
    found.update({"model": cfg.model, "init_from": cfg.init_from or "",
                  "forgetting.reference": "" if reference == "builtin" else reference or ""})
    return {key: value for key, value in found.items() if isinstance(value, str) and value and Path(value).exists()}


def check_early_stopping_metric(cfg: Config, task: Any) -> None:
    """The early-stopping metric must be one the task computes on validation data (its counts are not metrics)."""
    names = list(task.metrics)
    metric = cfg.train.early_stopping.metric
    if metric not in {f"val_{m}" for m in names}:
        raise TuneforgeError(f"`train.early_stopping.metric` = {rundir.shorten(metric)} is not computed on "
                             f"{cfg.task} validation data; choose one of {', '.join(f'val_{m}' for m in names)}")


# What a resume may not change: what the checkpoints were made from (the trainable parameters, the data
# and its vetting). train.* changes are noted by the checkpointer (against the checkpoint's own copy).
RESUME_REFUSES = ("task", "model", "init_from", "method", "data", "privacy", "leakage")
RESUME_NOTES = ("forgetting", "eval")
SPLIT_FILES = ("data.train", "data.validation", "data.test")


def check_resume(cfg: Config, log: RunLog) -> None:
    """Refuse a resume whose config or data differ from what the run started with; reads, never writes."""
    if not (cfg.run_dir / "config.yaml").is_file():  # killed before config.yaml: nothing recorded to compare with
        return
    saved, recorded = reading.read_saved_config(cfg.run_dir)  # rundir.check vetted it as tuneforge's
    then = recorded.get("data_sha256") or {}
    now = reading.data_hashes(cfg)
    for split, digest in then.items():
        if split in now and now[split] != digest:
            raise TuneforgeError(
                f"--resume: `data.{split}` file {getattr(cfg.data, split)} is not the one {cfg.run_dir} was trained "
                f"on (sha256 {digest} then, {now[split]} now); restore that file, or start over with --overwrite")
    for key, old, new in _differences(saved, to_dict(cfg)):
        section = key.split(".")[0]
        if key in SPLIT_FILES and key.split(".")[1] in then and key.split(".")[1] in now:
            continue  # the same content under another path
        if section in RESUME_REFUSES:
            raise TuneforgeError(f"--resume: `{key}` changed since {cfg.run_dir} started ({rundir.shorten(old)} → "
                                 f"{rundir.shorten(new)}); set it back to continue, or start over with --overwrite")
        if section in RESUME_NOTES:
            log.note(f"`{key}` changed since the run started ({rundir.shorten(old)} → {rundir.shorten(new)})")


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) of every leaf that differs; keys only one side has are skipped
    (a config written by another tuneforge version)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in old if k in new for d in _differences(old[k], new[k], f"{prefix}{k}.")]
    return [] if old == new else [(prefix.rstrip("."), old, new)]


@dataclass
class Ready:
    """The model as training starts: loaded, wrapped by the method, on its device, base-evaluated, guarded."""

    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype | None
    guard: Any
    base: dict[str, Any] | None
    base_rows: dict[str, list[dict[str, Any]]]
    baseline_rows: dict[str, dict[str, list[dict[str, Any]]]]


def start(prep: Prepared, method: Any, log: RunLog) -> Ready:
    """Everything before the first step that can fail (the model, the method, the forgetting reference and
    earlier runs); touches nothing on disk."""
    cfg, task = prep.cfg, prep.task
    device = pick_device()
    dtype = autocast_dtype(cfg.train.precision, device)
    t_load = time.perf_counter()
    model = start_model(cfg, prep.source, task, method)
    model = method.apply(model, cfg.method, task).to(device)
    if not any(p.requires_grad for p in model.parameters()):  # fit refuses too, but only once the run exists
        raise TuneforgeError("no trainable parameters: the method froze everything (check method.targets)")
    log.note(f"loaded {cfg.model} in {time.perf_counter() - t_load:.1f}s; method {method.name}: "
             + _param_line(model))
    for line in (task.prepare_model(model),  # e.g. instruction: attention kernel and packing, before compiling
                 *optimize_for_training(model, method, device, dtype, cfg.train.compile),
                 method.describe(model)):  # e.g. qlora: the 4-bit base's memory against bf16/fp32
        if line:
            log.note(line)
    base, base_rows, baseline_rows = None, {}, {}
    if cfg.eval.base:
        base, base_rows = _evaluate_sets(task, model, _eval_sets(prep), cfg, device, dtype)
    if cfg.eval.baselines and _eval_sets(prep):
        t0 = time.perf_counter()
        baseline_rows = task.baselines(None if method.scratch else model, prep.encoded["train"], _eval_sets(prep),
                                       cfg.eval.batch_size, device, dtype)  # scratch: no pretrained features
        if baseline_rows:
            log.note(f"baselines ({', '.join(baseline_rows)}) in {time.perf_counter() - t0:.1f}s")
    guard = ForgettingGuard.start(cfg, task, prep.encoded["train"], model, device, dtype, log,
                                  previous=earlier_tasks(task))  # "before" probe, replay mix, EWC/L2
    return Ready(model, device, dtype, guard, base, base_rows, baseline_rows)


def _evaluate_sets(task: Any, model: torch.nn.Module, sets: dict[str, list[Any]], cfg: Config, device: torch.device,
                   dtype: torch.dtype | None) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """(metrics, per-example rows) of each split."""
    metrics, rows = {}, {}
    for name, ex in sets.items():
        metrics[name], r = task.evaluate_rows(model, ex, cfg.eval.batch_size, device, dtype)
        if r is not None:
            rows[name] = r
    return metrics, rows


def earlier_tasks(task: Any) -> list[PreviousTask]:
    """The earlier tasks of a continued run, each with its data re-read and re-vetted from its own config
    (what the forgetting guard measures and replays), seen through this run's model."""
    out = []
    for earlier in task.earlier_runs():
        prev = prepare(reading.read_config(Path(earlier.run)))
        test = prev.encoded.get("test") or prev.encoded.get("validation")
        if not test:
            raise TuneforgeError(f"earlier run {earlier.run} has no test or validation data to measure forgetting on")
        out.append(PreviousTask(earlier.name, earlier.run, earlier.view(prev.task), prev.encoded["train"], test))
    return out


def _eval_sets(prep: Prepared) -> dict[str, list[Any]]:
    return {k: v for k, v in prep.encoded.items() if k in ("validation", "test")}


def _train_and_evaluate(prep: Prepared, method: Any, ready: Ready, run_dir: Path, log: RunLog) -> dict[str, Any]:
    cfg, task = prep.cfg, prep.task
    model, device, dtype, guard = ready.model, ready.device, ready.dtype, ready.guard
    results: dict[str, Any] = {"run": cfg.name, "task": cfg.task, "method": method.name, "model": cfg.model,
                               "data": {k: {"file": _data_file(getattr(cfg.data, k), k), "n": len(v)}
                                        for k, v in prep.splits.items()}}
    if ready.base is not None:
        results["base"] = ready.base
    checkpointer = Checkpointer(run_dir / "checkpoints", cfg.train, method, resume=bool(cfg.resume),
                                metrics=run_dir / "metrics.jsonl", note=log.note) \
        if cfg.train.checkpoint_every or cfg.resume else None
    outcome = fit(model, guard.task, guard.train, prep.encoded.get("validation", []), cfg.train, log,
                  device, dtype, regularizer=guard.regularizer, checkpointer=checkpointer,
                  eval_batch_size=cfg.eval.batch_size, directions=task.metrics)

    final, final_rows = _evaluate_sets(task, model, _eval_sets(prep), cfg, device, dtype)
    final["train"] = task.evaluate(model, prep.encoded["train"][:TRAIN_PROBE], cfg.eval.batch_size, device, dtype)
    results.update({"final": final, "training": _training_summary(outcome, model), "history": outcome.state.history,
                    "notes": log.notes})
    rows = {"base": ready.base_rows, "final": final_rows}
    t0 = time.perf_counter()
    fields = {r.where: r.fields for records in prep.splits.values() for r in records} if cfg.eval.slices else {}
    temperature = analyze(task, results, rows, ready.baseline_rows, fields, cfg.eval, cfg.train.seed)
    if temperature != 1.0:
        task.set_temperature(temperature)
        log.note(f"eval.calibrate: temperature {temperature:g} (predict divides the logits by it)")
    log.note(f"intervals, paired tests, slices and calibration in {time.perf_counter() - t0:.1f}s")
    forgetting = guard.finish(model, log)
    if forgetting is not None:
        results["forgetting"] = forgetting
    results["diagnosis"] = diagnose(reading.read_metrics(run_dir), results, cfg)
    for line in diagnosis_lines(results["diagnosis"]):
        log.note(line)
    save_model(model, method, prep, run_dir)
    write_predictions(run_dir, rows)
    tblog.write(log, task, to_dict(cfg), dump_yaml(cfg), results, final_rows, outcome.state.step)
    results["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    write_outputs(run_dir, results)
    return results


def _data_file(spec: Any, split: str) -> str:
    """How a split was given: its file, or the fraction of data.train it was split off."""
    if isinstance(spec, str) and spec:
        return spec
    return "data.train" if split == "train" else f"{spec:g} of data.train" if isinstance(spec, float) else str(spec)


def _training_summary(outcome: Any, model: torch.nn.Module) -> dict[str, Any]:
    """eval.json["training"]: steps, time, throughput, why it stopped, the best step, the parameter counts."""
    s = outcome.state
    trainable, total = count_parameters(model)
    return {"steps": s.step, "epochs": s.epoch, "tokens": s.tokens, "train_seconds": round(outcome.train_seconds, 2),
            "tokens_per_s": round(s.tokens / max(outcome.train_seconds, 1e-9), 1), "stop_reason": s.stop_reason,
            "best_step": s.best_step, "best_metric": s.best_metric, "restored_best": outcome.best_weights_restored,
            "trainable_params": trainable, "total_params": total, "weights_mb": round(weight_bytes(model) / 2 ** 20, 1)}


def _param_line(model: torch.nn.Module) -> str:
    trainable, total = count_parameters(model)
    return f"{trainable:,} of {total:,} parameters train ({100 * trainable / max(total, 1):.2f}%)"


def save_model(model: torch.nn.Module, method: Any, prep: Prepared, run_dir: Path) -> None:
    """model/: the method's artifact (PEFT adapter or full HF model), the tokenizer and tuneforge.json."""
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".model."))
        method.save(model, tmp)
        prep.tokenizer.save_pretrained(str(tmp))
        meta = {"task": prep.cfg.task, "model": prep.cfg.model, "method": method.name,
                **prep.task.metadata()}
        (tmp / "tuneforge.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    except BaseException as e:  # e.g. disk full (safetensors wraps it in its own error), ^C: no half-written model
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        why = write_failure(e)
        if why is None:
            raise
        last = Checkpointer(run_dir / "checkpoints", prep.cfg.train, method).latest()
        then = f"the last checkpoint {last} is kept: free space and rerun with --resume to finish from it" if last \
            else "free space and rerun with --resume (no checkpoint was written, so training starts over)"
        raise TuneforgeError(f"{why} while writing {run_dir / 'model'}; {then}") from None
    final = run_dir / "model"
    if final.exists():  # swap by renames: a crash leaves the old model or the new one, never neither
        old = tmp.with_name(".model.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
