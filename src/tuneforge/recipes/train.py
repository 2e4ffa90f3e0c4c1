"""`tuneforge train` as a plain function over small components (a torchtune-style recipe).

Order matters for the user's safety: every input is read and validated *before* the run directory
is created, so a user mistake never leaves a half-written or overwritten run behind.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..models import loading as models
from ..runs import rundir
from ..config import Config, dump_yaml, to_dict
from ..data.records import Record
from ..training.device import autocast_dtype, pick_device, seed_everything, set_threads
from ..errors import TuneforgeError
from ..training.loop import fit
from ..methods.base import count_parameters, get_method, weight_bytes
from ..training.runlog import RunLog, read_metrics as log_rows
from ..training.speed import optimize_for_training
from ..data.splits import load_splits

TRAIN_PROBE = 512  # training examples re-evaluated at the end, to compare train vs validation


@dataclass
class Prepared:
    """Validated inputs: the data after vetting, encoded for the task, plus the audit."""

    cfg: Config
    source: models.ModelSource
    tokenizer: Any
    task: Any
    splits: dict[str, list[Record]]
    encoded: dict[str, list[Any]]
    audit: dict[str, Any]


def prepare(cfg: Config, log: RunLog | None = None, splits: dict[str, list[Record]] | None = None) -> Prepared:
    """Read, vet, split and encode the data; resolve the model. Touches nothing on disk."""
    source = models.resolve(cfg.model, allow_pickle=cfg.allow_pickle)
    label = cfg.data.label if cfg.task == "classification" else None
    if splits is None:  # cross-validation passes each fold's splits in
        splits = load_splits(cfg.data.train, cfg.data.validation, cfg.data.test, label, cfg.data.group,
                             cfg.train.seed, cfg.data.limit)
    splits, audit = vet(splits, cfg)
    if log is not None:
        from ..vetting.audit import summary_lines

        for line in summary_lines(audit):
            log.note(line)
    tokenizer = models.load_tokenizer(source)
    models.check_vocabulary(tokenizer, source, splits["train"], text_columns(cfg))
    task = build_task(cfg, tokenizer, splits["train"])
    encoded = {name: task.encode(records, name) for name, records in splits.items()}
    if log is not None:  # e.g. instruction truncation summaries (which examples were cut, and how)
        for line in getattr(task, "notes", []):
            log.note(line)
    return Prepared(cfg, source, tokenizer, task, splits, encoded, audit)


FACT_COLUMN = "fact"  # instruction: the string a correct answer must contain (fact_accuracy, eval.json samples)


def text_columns(cfg: Config) -> list[str]:
    """Columns scanned for PII: every text the model sees and every text a run writes out (eval.json
    samples hold prompt, reference and fact). All are redacted with one per-record placeholder map,
    so a redacted fact still matches the redacted answer."""
    if cfg.task == "classification":
        return [cfg.data.text]
    columns = [cfg.data.prompt, cfg.data.input, cfg.data.response, cfg.data.messages, cfg.data.text, FACT_COLUMN]
    return list(dict.fromkeys(columns))  # a column named twice (data.text = data.prompt) is scanned once


def input_columns(cfg: Config) -> list[str]:
    """Columns compared for leakage: the inputs. Instruction data legitimately repeats answers (the
    same fact asked in new words is what a support bot must generalize to), so responses are left out."""
    if cfg.task == "classification":
        return [cfg.data.text]
    return list(dict.fromkeys([cfg.data.prompt, cfg.data.input, cfg.data.messages, cfg.data.text]))


def vet(splits: dict[str, list[Record]], cfg: Config) -> tuple[dict[str, list[Record]], dict[str, Any]]:
    """PII scan/redaction, then leakage checks on the redacted data (policies from the config)."""
    from ..vetting.audit import audit

    return audit(splits, text_columns(cfg), cfg.privacy.pii, cfg.leakage.policy, cfg.leakage.threshold,
                 ngram=cfg.leakage.ngram, group_column=cfg.data.group, shingle=cfg.leakage.shingle,
                 ngram_share=cfg.leakage.ngram_share, leak_columns=input_columns(cfg))


def build_task(cfg: Config, tokenizer: Any, train_records: list[Record]) -> Any:
    if cfg.task == "classification":
        from ..tasks.classification import ClassificationTask, label_set

        labels, multi = label_set(train_records, cfg.data.label)
        task = ClassificationTask(tokenizer, labels, cfg.data.text, cfg.data.label, cfg.data.max_length,
                                  multi_label=multi, label_smoothing=cfg.train.label_smoothing)
        if cfg.init_from:  # continuing an earlier run: this task becomes a new head on the same body
            from ..recipes.sequence import continued_task

            return continued_task(cfg, task)
        return task
    from ..tasks.instruction.task import InstructionTask

    return InstructionTask.from_config(cfg, tokenizer)


def load_model(cfg: Config, source: models.ModelSource, task: Any, method: Any) -> torch.nn.Module:
    if cfg.task == "classification":
        return models.load_classifier(source, getattr(task, "model_labels", task.labels), scratch=method.scratch,
                                      dropout=cfg.train.model_dropout, multi_label=task.multi_label)
    return models.load_causal_lm(source, scratch=method.scratch)


def provenance(cfg: Config, splits: dict[str, list[Record]]) -> dict[str, Any]:
    import transformers

    return {"tuneforge": __version__, "torch": str(torch.__version__), "transformers": str(transformers.__version__),
            "python": platform.python_version(), "data_sha256": data_hashes(cfg),
            "split_sizes": {k: len(v) for k, v in splits.items()}}


def data_hashes(cfg: Config) -> dict[str, str]:
    """split → sha256 (first 16 hex digits) of each data file the config names."""
    import hashlib

    hashes = {}
    for name in ("train", "validation", "test"):
        spec = getattr(cfg.data, name)
        if isinstance(spec, str) and Path(spec).is_file():
            hashes[name] = hashlib.sha256(Path(spec).read_bytes()).hexdigest()[:16]
    return hashes


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
        rundir.atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg, provenance(cfg, prep.splits)))
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
    names = getattr(task, "validation_metrics", None)
    metric = cfg.train.early_stopping.metric
    if names is not None and metric not in {f"val_{m}" for m in names}:
        raise TuneforgeError(f"`train.early_stopping.metric` = {rundir.shorten(metric)} is not computed on "
                             f"{cfg.task} validation data; choose one of {', '.join(f'val_{m}' for m in names)}")


# What a resume may not change: what the checkpoints were made from (the trainable parameters, the data
# and its vetting). train.* changes are noted by the checkpointer (against the checkpoint's own copy).
RESUME_REFUSES = ("task", "model", "init_from", "method", "data", "privacy", "leakage")
RESUME_NOTES = ("forgetting", "eval")
SPLIT_FILES = ("data.train", "data.validation", "data.test")


def check_resume(cfg: Config, log: RunLog) -> None:
    """Refuse a resume whose config or data differ from what the run started with; reads, never writes."""
    import yaml

    path = cfg.run_dir / "config.yaml"
    if not path.is_file():  # killed before config.yaml: nothing recorded to compare with
        return
    saved = yaml.safe_load(path.read_text(encoding="utf-8"))  # rundir.check vetted it as tuneforge's
    then = saved.pop("_provenance", {}).get("data_sha256") or {}
    now = data_hashes(cfg)
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


def start(prep: Prepared, method: Any, log: RunLog) -> Ready:
    """Everything before the first step that can fail (the model, the method, the forgetting reference and
    earlier runs); touches nothing on disk."""
    cfg, task = prep.cfg, prep.task
    device = pick_device()
    dtype = autocast_dtype(cfg.train.precision, device)
    t_load = time.perf_counter()
    model = start_model(cfg, prep.source, task, method)
    model = method.apply(model, cfg.method, cfg.task).to(device)
    if not any(p.requires_grad for p in model.parameters()):  # fit refuses too, but only once the run exists
        raise TuneforgeError("no trainable parameters: the method froze everything (check method.targets)")
    log.note(f"loaded {cfg.model} in {time.perf_counter() - t_load:.1f}s; method {method.name}: "
             + _param_line(model))
    if hasattr(task, "prepare_model"):  # instruction: attention kernel and packing, before compilation
        log.note(task.prepare_model(model))
    for line in optimize_for_training(model, method, device, dtype, cfg.train.compile):
        log.note(line)
    if hasattr(method, "describe"):  # e.g. qlora: the 4-bit base's memory against bf16/fp32
        log.note(method.describe(model))
    base = None
    if cfg.eval.base:
        base = {name: task.evaluate(model, ex, cfg.eval.batch_size, device, dtype)
                for name, ex in _eval_sets(prep).items()}
    from ..guards.forgetting import ForgettingGuard

    guard = ForgettingGuard.start(prep, model, device, dtype, log)  # "before" probe, replay mix, EWC/L2
    return Ready(model, device, dtype, guard, base)


def _eval_sets(prep: Prepared) -> dict[str, list[Any]]:
    return {k: v for k, v in prep.encoded.items() if k in ("validation", "test")}


def _train_and_evaluate(prep: Prepared, method: Any, ready: Ready, run_dir: Path, log: RunLog) -> dict[str, Any]:
    cfg, task = prep.cfg, prep.task
    model, device, dtype, guard = ready.model, ready.device, ready.dtype, ready.guard
    eval_sets = _eval_sets(prep)
    results: dict[str, Any] = {"task": cfg.task, "method": method.name, "model": cfg.model}
    if ready.base is not None:
        results["base"] = ready.base

    from ..training.checkpoint import Checkpointer

    checkpointer = Checkpointer(run_dir / "checkpoints", cfg.train, method, resume=bool(cfg.resume),
                                metrics=run_dir / "metrics.jsonl", note=log.note) \
        if cfg.train.checkpoint_every or cfg.resume else None
    outcome = fit(model, guard.task, guard.train, prep.encoded.get("validation", []), cfg.train, log,
                  device, dtype, regularizer=guard.regularizer, checkpointer=checkpointer,
                  eval_batch_size=cfg.eval.batch_size)

    final = {name: task.evaluate(model, ex, cfg.eval.batch_size, device, dtype) for name, ex in eval_sets.items()}
    final["train"] = task.evaluate(model, prep.encoded["train"][:TRAIN_PROBE], cfg.eval.batch_size, device, dtype)
    trainable, total = count_parameters(model)
    results.update({
        "final": final,
        "training": {"steps": outcome.state.step, "epochs": outcome.state.epoch, "tokens": outcome.state.tokens,
                     "train_seconds": round(outcome.train_seconds, 2),
                     "tokens_per_s": round(outcome.state.tokens / max(outcome.train_seconds, 1e-9), 1),
                     "stop_reason": outcome.state.stop_reason, "best_step": outcome.state.best_step,
                     "best_metric": outcome.state.best_metric, "restored_best": outcome.best_weights_restored,
                     "trainable_params": trainable, "total_params": total,
                     "weights_mb": round(weight_bytes(model) / 2 ** 20, 1)},
        "history": outcome.state.history,
        "notes": log.notes,
    })
    forgetting = guard.finish(model, log)
    if forgetting is not None:
        results["forgetting"] = forgetting
    from ..guards.diagnosis import diagnose, summary_lines

    results["diagnosis"] = diagnose(log_rows(run_dir), results, cfg)
    for line in summary_lines(results["diagnosis"]):
        log.note(line)
    save_model(model, method, prep, run_dir)
    from ..evaluation.report import write_outputs

    write_outputs(run_dir, results)
    return results


def start_model(cfg: Config, source: models.ModelSource, task: Any, method: Any) -> torch.nn.Module:
    """The model training starts from: the base model, or an earlier run's (`init_from`) with a new head."""
    if cfg.init_from and cfg.task == "classification":
        from ..recipes.sequence import continue_from

        return continue_from(cfg, task)
    return load_model(cfg, source, task, method)


def _param_line(model: torch.nn.Module) -> str:
    trainable, total = count_parameters(model)
    return f"{trainable:,} of {total:,} parameters train ({100 * trainable / max(total, 1):.2f}%)"


def save_model(model: torch.nn.Module, method: Any, prep: Prepared, run_dir: Path) -> None:
    """model/: the method's artifact (PEFT adapter or full HF model), the tokenizer and tuneforge.json."""
    import shutil
    import tempfile

    from ..training.checkpoint import Checkpointer, write_failure

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


def load_run(run_dir: Path) -> tuple[Config, Any, torch.nn.Module]:
    """Rebuild (config, task, model) from a finished run directory, for eval, predict and chat."""
    cfg = run_config(run_dir)
    meta = json.loads((run_dir / "model" / "tuneforge.json").read_text(encoding="utf-8"))
    source = models.resolve(cfg.model)
    tokenizer = models.load_tokenizer(models.ModelSource(cfg.model, run_dir / "model"))
    method = get_method(meta["method"])
    if cfg.task == "classification":
        from ..tasks.classification import ClassificationTask

        task = ClassificationTask(tokenizer, meta["labels"], cfg.data.text, cfg.data.label, cfg.data.max_length,
                                  multi_label=meta.get("multi_label", False))
        if meta.get("heads"):  # a continued run: one shared head, this task's slice of it
            from ..recipes.sequence import HeadTask

            task = HeadTask.wrap(task, meta["offset"], meta["heads"])
    else:
        from ..tasks.instruction.task import InstructionTask

        task = InstructionTask.from_config(cfg, tokenizer, saved=meta)
    base = start_model(cfg, source, task, method) if method.name != "full" and method.name != "scratch" \
        else None
    if base is None:  # full/scratch: the saved directory is a complete model
        base = load_model(cfg, models.ModelSource(cfg.model, run_dir / "model"), task, method)
        model = base
    else:
        model = method.load(base, run_dir / "model")
    model.to(pick_device()).eval()
    return cfg, task, model


def run_config(run_dir: Path) -> Config:
    """The resolved config a finished run was trained with."""
    import yaml

    from ..config import load_config

    rundir.require_run(run_dir)
    raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    raw.pop("_provenance", None)
    return load_config(None, base=raw)


def evaluate_run(run_dir: Path, data: str) -> dict[str, Any]:
    """Metrics of a trained run on a new data file (same columns as training)."""
    from ..data.records import read_records

    saved = run_config(run_dir)
    records = read_records(data)
    require_columns(records, saved, run_dir, labelled=True)  # before the model loads: a fast answer
    cfg, task, model = load_run(run_dir)
    examples = task.encode(records, "eval")
    device = pick_device()
    return task.evaluate(model, examples, cfg.eval.batch_size, device, autocast_dtype(cfg.train.precision, device))


def predict_run(run_dir: Path, texts: list[str] | None = None, data: str | None = None) -> list[dict[str, Any]]:
    from ..data.records import Record, read_records

    if data:
        saved = run_config(run_dir)
        records = read_records(data)
        require_columns(records, saved, run_dir, labelled=False)
    cfg, task, model = load_run(run_dir)
    if not data:
        records = [Record({cfg.data.text: t, cfg.data.prompt: t}, "<text>", i + 1) for i, t in enumerate(texts or [])]
    device = pick_device()
    examples = task.encode_unlabelled(records)
    return task.predict(model, examples, cfg.eval.batch_size, device, autocast_dtype(cfg.train.precision, device))


def run_task(run_dir: Path) -> str:
    """The task of a finished run (classification | instruction), read from model/tuneforge.json."""
    rundir.require_run(run_dir)
    path = run_dir / "model" / "tuneforge.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("task", "classification"))
    except (OSError, ValueError, AttributeError) as e:
        raise TuneforgeError(f"cannot read {path} ({type(e).__name__}); the run is damaged: train it again "
                             "with --overwrite") from None


def require_columns(records: list[Record], cfg: Config, run_dir: Path, labelled: bool) -> None:
    """eval/predict read a file with the column names the run was trained with (its config fixes them and
    these commands cannot change them): name the missing column, and the fix, in the file."""
    from ..errors import DataError

    d = cfg.data
    if cfg.task == "classification":
        layouts, order = {"classification": [d.text] + ([d.label] if labelled else [])}, ["classification"]
    else:  # the layout the instruction task detects: the first whose leading column the record has
        layouts = {"chat": [d.messages], "pairs": [d.prompt] + ([d.response] if labelled else []), "text": [d.text]}
        order = [d.format] if d.format != "auto" else ["chat", "pairs", "text"]
    for r in records:
        picked = next((k for k in order if layouts[k][0] in r.fields), None)
        missing = [c for c in layouts[picked or order[0]] if c not in r.fields]
        if not missing:
            continue
        have = ", ".join(rundir.shorten(c, 40) for c in sorted(r.fields)[:8]) + (", …" if len(r.fields) > 8 else "")
        wanted = " or ".join(repr(layouts[k][0]) for k in order) if picked is None else repr(missing[0])
        raise DataError(r.file, r.line, f"no column {wanted} (columns: {have or 'none'})",
                        f"{run_dir} was trained on the column {wanted}: rename that column in {r.file}")
