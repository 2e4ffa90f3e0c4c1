"""`tuneforge train` as a plain function over small components (a torchtune-style recipe).

Order matters for the user's safety: every input is read and validated *before* the run directory
is created, so a user mistake never leaves a half-written or overwritten run behind.

Under torchrun / accelerate launch every process runs this recipe (training/distributed.py): rank 0 reads
and vets the data and hands it to the others, and rank 0 alone writes the run directory; every rank trains
on its share of each batch and takes part in evaluation; after the final evaluation rank 0 alone measures
forgetting, diagnoses and saves.
"""
from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config, dump_yaml, to_dict
from ..data import canaries
from ..data.records import Record
from ..data.splits import load_splits
from ..errors import TuneforgeError
from ..evaluation import memorization, tblog
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
from ..runs import card, modeldir, reading, rundir
from ..tasks import task_class
from ..training import distributed, dp, headfirst
from ..training.checkpoint import Checkpointer, write_failure
from ..training.device import autocast_dtype, pick_device, seed_everything, set_threads
from ..training.distributed import SINGLE, Engine
from ..training.fsdp import full_trainable
from ..training.loop import fit
from ..training.runlog import RunLog
from ..training.speed import optimize_for_training
from ..vetting.audit import summary_lines, vet
from .evaluate import base_and_baselines, eval_sets, evaluate_sets, pretrained_evaluation
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


def prepare(cfg: Config, log: RunLog | None = None, splits: dict[str, list[Record]] | None = None,
            engine: Engine = SINGLE) -> Prepared:
    """Read, vet, split and encode the data; resolve the model. Touches nothing on disk.
    On several processes rank 0 reads and vets the data (once) and every rank gets the vetted splits."""
    source = loading.resolve(cfg.model, allow_pickle=cfg.allow_pickle)
    kind = task_class(cfg.task)

    def vetted() -> tuple[dict[str, list[Record]], dict[str, Any]]:
        given = splits if splits is not None else load_splits(  # cross-validation passes each fold's splits in
            cfg.data.train, cfg.data.validation, cfg.data.test, kind.stratify_column(cfg), cfg.data.group,
            cfg.train.seed, cfg.data.limit)
        return vet(canaries.plant(given, cfg)[0], cfg, kind)  # privacy.canaries: planted before vetting

    splits, audit = engine.on_main(vetted)
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
    engine = distributed.engine_for(distributed.start(), pick_device())  # one process unless launched on many
    set_threads(cfg.train.threads, share=engine.world.local_size)
    seed_everything(cfg.train.seed)
    resume = bool(cfg.resume)
    early = RunLog(None, quiet=quiet or not engine.main)
    prep = prepare(cfg, early, splits, engine)
    check_early_stopping_metric(cfg, prep.task)
    inputs = config_inputs(cfg)
    if engine.main:  # only rank 0 touches the run directory
        rundir.check(cfg.run_dir, overwrite=overwrite, resume=resume, inputs=inputs)
        if resume and not overwrite:
            check_resume(cfg, early)
    method = get_method(cfg.method.name)
    ready = start(prep, method, early, engine, dp.start(cfg, len(prep.encoded["train"]), engine.size > 1))  # σ for ε
    if resume and not overwrite and engine.main:  # this many processes, this strategy: refused before writing
        Checkpointer(cfg.run_dir / "checkpoints", cfg.train, method, engine=engine).check_resumable()
    if not engine.main:
        return TrainOutcome(cfg.run_dir, _train_and_evaluate(prep, method, ready, cfg.run_dir, early, engine))
    run_dir = rundir.prepare(cfg.run_dir, overwrite=overwrite, resume=resume, inputs=inputs)
    with rundir.lock(run_dir):
        provenance = {**reading.provenance(cfg, prep.splits), "distributed": engine.summary()}
        rundir.atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg, provenance, relative_to=run_dir))
        rundir.atomic_write_json(run_dir / "data_audit.json", prep.audit)
        with RunLog(run_dir, quiet=quiet) as log:
            log.notes[:0] = early.notes
            result = _train_and_evaluate(prep, method, ready, run_dir, log, engine)
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
    pretrained: dict[str, Any] | None  # a continued run: the pretrained model, before the earlier run
    base_rows: dict[str, list[dict[str, Any]]]
    baseline_rows: dict[str, dict[str, list[dict[str, Any]]]]
    private: dp.Private | None = None  # privacy.dp: DP-SGD (training/dp.py)


def start(prep: Prepared, method: Any, log: RunLog, engine: Engine = SINGLE, private: Any = None) -> Ready:
    """Everything before the first step that can fail (the model, the method, the distribution strategy, the
    forgetting reference and earlier runs); touches nothing on disk."""
    cfg, task = prep.cfg, prep.task
    device = engine.device
    dtype = autocast_dtype(cfg.train.precision, device)
    t_load = time.perf_counter()
    model = method.apply(start_model(cfg, prep.source, task, method), cfg.method, task)
    if not any(p.requires_grad for p in model.parameters()):  # fit refuses too, but only once the run exists
        raise TuneforgeError("no trainable parameters: the method froze everything (check method.targets)")
    distribute(cfg, method, model, engine)
    headfirst.check(model, task, cfg.train.head_epochs, engine.size)  # what trains in its head phase
    if not engine.sharded:
        model = model.to(device)  # FSDP puts each shard on its device itself
    log.note(f"loaded {cfg.model} in {time.perf_counter() - t_load:.1f}s; method {method.name}: "
             + _param_line(model))
    if engine.size > 1:
        log.note(distributed.describe(engine, cfg.train.batch_size, cfg.train.grad_accum))
    lines = [task.use_reference(model, method, lambda: copy.deepcopy(model)),  # preference: the start
             *optimize_for_training(model, method, device, dtype, "none" if cfg.privacy.dp.epsilon is not None
                                    else cfg.train.compile, lean=not engine.sharded),  # DP: hooks, no compiling
             method.describe(model)]  # e.g. qlora: the 4-bit base's memory against bf16/fp32
    if not engine.sharded:  # e.g. instruction: attention kernel and packing, before compiling
        lines.insert(0, task.prepare_model(model))
    model = engine.wrap(model, dtype)
    if engine.sharded:  # its probe runs the body: through the sharded model's forward
        lines.insert(0, engine.call(model, task.prepare_model))
    for line in lines:
        if line:
            log.note(line)
    base, base_rows, baseline_rows = base_and_baselines(prep, method, model, device, dtype, log, engine)
    pretrained = pretrained_evaluation(prep, method, device, dtype) if base is not None and cfg.init_from else None
    previous = earlier_tasks(task, engine)
    guard = engine.call(model, lambda m: ForgettingGuard.start(  # "before" probe, replay mix, EWC/L2
        cfg, task, prep.encoded["train"], m, device, dtype, log, previous=previous)) if engine.sharded else \
        ForgettingGuard.start(cfg, task, prep.encoded["train"], model, device, dtype, log, previous=previous)
    return Ready(model, device, dtype, guard, base, pretrained, base_rows, baseline_rows, private)


def distribute(cfg: Config, method: Any, model: torch.nn.Module, engine: Engine) -> None:
    """Settle the engine's strategy (train.distributed on this many processes) or refuse what cannot run."""
    strategy, why = distributed.choose(cfg.train.distributed, engine.world, method, model, engine.device)
    problem = method.distributed_problem(strategy)
    if problem is None and strategy == "fsdp" and (cfg.forgetting.ewc or cfg.forgetting.l2_to_base):
        problem = ("`forgetting.ewc` / `forgetting.l2_to_base` keep a full copy of the starting weights per process, "
                   "which FSDP exists to avoid; use train.distributed: ddp")
    if problem:
        raise TuneforgeError(f"train.distributed: {strategy} ({why}): {problem}")
    engine.strategy, engine.reason = strategy, why


def earlier_tasks(task: Any, engine: Engine = SINGLE) -> list[PreviousTask]:
    """The earlier tasks of a continued run, each with its data re-read and re-vetted from its own config
    (what the forgetting guard measures and replays), seen through this run's model."""
    out = []
    for earlier in task.earlier_runs():
        prev = prepare(reading.read_config(Path(earlier.run)), engine=engine)
        test = prev.encoded.get("test") or prev.encoded.get("validation")
        if not test:
            raise TuneforgeError(f"earlier run {earlier.run} has no test or validation data to measure forgetting on")
        out.append(PreviousTask(earlier.name, earlier.run, earlier.view(prev.task), prev.encoded["train"], test))
    return out


def _train_and_evaluate(prep: Prepared, method: Any, ready: Ready, run_dir: Path, log: RunLog,
                        engine: Engine = SINGLE) -> dict[str, Any]:
    cfg, task = prep.cfg, prep.task
    model, device, dtype, guard = ready.model, ready.device, ready.dtype, ready.guard
    results: dict[str, Any] = {"run": cfg.name, "task": cfg.task, "method": method.name, "model": cfg.model,
                               "data": {k: {"file": _data_file(getattr(cfg.data, k), k), "n": len(v)}
                                        for k, v in prep.splits.items()}}
    if engine.size > 1:
        results["distributed"] = {**engine.summary(), "batch_per_device": cfg.train.batch_size,
                                  "effective_batch": engine.global_batch(cfg.train.batch_size) * cfg.train.grad_accum}
    if ready.base is not None:
        results["base"] = ready.base
    if ready.pretrained is not None:
        results["pretrained"] = ready.pretrained
    checkpointer = Checkpointer(run_dir / "checkpoints", cfg.train, method, resume=bool(cfg.resume),
                                metrics=run_dir / "metrics.jsonl" if engine.main else None, note=log.note,
                                engine=engine, attachments={"privacy": ready.private} if ready.private else None
                                ) if cfg.train.checkpoint_every or cfg.resume else None
    outcome = fit(model, guard.task, guard.train, prep.encoded.get("validation", []), cfg.train, log,
                  device, dtype, regularizer=guard.regularizer, checkpointer=checkpointer,
                  eval_batch_size=cfg.eval.batch_size, directions=task.metrics, engine=engine, private=ready.private)
    results["privacy"] = dp.results(ready.private, outcome.state.step)

    final, final_rows = evaluate_sets(task, model, eval_sets(prep), cfg, device, dtype, engine)
    final["train"], scored = train_probe(prep, model, device, dtype, engine)
    results["audit"] = memorization.run(task, model, prep.encoded, cfg, device, dtype, log.note, final_rows,
                                        scored) if engine.size == 1 else None  # membership inference, canaries
    results.update({"final": final, "training": _training_summary(outcome, model), "history": outcome.state.history,
                    "notes": log.notes})
    forgetting, weights = None, None
    if engine.sharded:  # every forward is collective: all ranks measure; then the weights gather on rank 0
        forgetting = engine.call(model, lambda m: guard.finish(m, log))
        weights = full_trainable(model)
    elif engine.main:
        forgetting = guard.finish(model, log)
    distributed.done()  # the last step every rank takes: from here rank 0 works alone
    if not engine.main:
        return results
    rows = {"base": ready.base_rows, "final": final_rows}
    t0 = time.perf_counter()
    fields = {r.where: r.fields for records in prep.splits.values() for r in records} if cfg.eval.slices else {}
    temperature = analyze(task, results, rows, ready.baseline_rows, fields, cfg.eval, cfg.train.seed)
    if temperature != 1.0:
        task.set_temperature(temperature)
        log.note(f"eval.calibrate: temperature {temperature:g} (predict divides the logits by it)")
    log.note(f"intervals, paired tests, slices and calibration in {time.perf_counter() - t0:.1f}s")
    if forgetting is not None:
        results["forgetting"] = forgetting
    results["diagnosis"] = diagnose(reading.read_metrics(run_dir), results, cfg)
    for line in diagnosis_lines(results["diagnosis"]):
        log.note(line)
    save_model(model if weights is None else consolidated(prep, method, weights), method, prep, run_dir, results,
               log.note)
    write_predictions(run_dir, rows)
    tblog.write(log, task, to_dict(cfg), dump_yaml(cfg), results, final_rows, outcome.state.step)
    results["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    write_outputs(run_dir, results)
    return results


def train_probe(prep: Prepared, model: torch.nn.Module, device: torch.device, dtype: torch.dtype | None,
                engine: Engine = SINGLE) -> tuple[dict[str, Any], memorization.Scores | None]:
    """final["train"], the first TRAIN_PROBE training examples' metrics, and (one process, eval.audit) the
    memorization audit's member losses (example_nll) from the same pass when the members lead the probe, as
    they do unless canaries were planted among them; else None and the audit scores its members itself.
    Sentiment example, one core: 6.7 s → 4.5 s. The members keep their own batches, so the audit is
    bit-identical; the probe's loss then sums two shares (1.098493 → 1.098495 there, the rest unchanged)."""
    cfg, task, train = prep.cfg, prep.task, prep.encoded["train"]
    probe = train[:TRAIN_PROBE]
    scored = memorization.members(train) if cfg.eval.audit and engine.size == 1 else []
    if not scored or len(scored) > len(probe) or any(a is not b for a, b in zip(scored, probe)):
        return engine.evaluate(task, model, probe, cfg.eval.batch_size, device, dtype), None
    return task.evaluate_and_score(model, probe, len(scored), cfg.eval.batch_size, device, dtype)


def consolidated(prep: Prepared, method: Any, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """An FSDP run's final model as one piece on rank 0's CPU: the same model and method built again, with
    the gathered trainable weights (the frozen ones are the base's), so the method saves it as usual."""
    model = method.apply(start_model(prep.cfg, prep.source, prep.task, method), prep.cfg.method, prep.task)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    return model


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


def save_model(model: torch.nn.Module, method: Any, prep: Prepared, run_dir: Path,
               results: dict[str, Any] | None = None, note: Any = None) -> None:
    """model/: the method's artifact (PEFT adapter or full HF model), the tokenizer, tuneforge.json and the
    model card, made portable (runs/modeldir.py: the base by a stable name, labels, template, generation)."""
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=".model."))
        method.save(model, tmp)
        tokenizer = modeldir.save_tokenizer(prep.tokenizer, prep.task, tmp)
        base = modeldir.make_portable(tmp, prep.cfg, prep.source, prep.task, method, tokenizer, note)
        meta = {"task": prep.cfg.task, "model": prep.cfg.model, "method": method.name, "base": base,
                **prep.task.metadata()}
        (tmp / "tuneforge.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (tmp / "README.md").write_text(card.render(prep.cfg, prep.task, method, results or {}, prep.audit, base),
                                       encoding="utf-8")
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
