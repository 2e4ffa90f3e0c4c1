"""Inference: the one place that loads a finished run, and what is done with it (evaluate, predict).

`load_run` rebuilds (config, task, model) from a run directory: the config from config.yaml, the task from
model/tuneforge.json (exactly the labels and formatting training used), the model from the method's
artifact on top of the model the run started from. eval, predict, chat, export, sequence and continued runs
(`init_from`) all load runs through here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..config import Config
from ..data.records import Record, read_records
from ..errors import DataError
from ..evaluation.uncertainty import with_intervals
from ..methods import get_method
from ..models import loading
from ..runs import reading
from ..runs.rundir import shorten
from ..tasks import task_class
from ..training.device import autocast_dtype, pick_device


class LoadedRun(NamedTuple):
    """A finished run, ready to predict: its config, its task and its model (on the device, in eval mode)."""

    cfg: Config
    task: Any
    model: torch.nn.Module


def load_run(run_dir: Path) -> LoadedRun:
    """Rebuild (config, task, model) from a finished run directory, for eval, predict and chat."""
    cfg = reading.read_config(run_dir)
    meta = reading.read_meta(run_dir)
    tokenizer = loading.load_tokenizer(loading.ModelSource(cfg.model, run_dir / "model"))
    method = get_method(meta["method"])
    task = task_class(cfg.task).from_saved(cfg, tokenizer, meta)
    if method.saves_full_model:  # the saved directory is a complete model
        model = task.load_model(cfg, loading.ModelSource(cfg.model, run_dir / "model"), method)
    else:  # an adapter: on top of the model the run started from
        model = method.load(start_model(cfg, loading.resolve(cfg.model), task, method), run_dir / "model")
    model.to(pick_device()).eval()
    return LoadedRun(cfg, task, model)


def start_model(cfg: Config, source: loading.ModelSource, task: Any, method: Any) -> torch.nn.Module:
    """The model a run starts from: the base model with the task's head, or (init_from) the earlier run's
    model with its adapters merged, continued by the task (for classification: a new head beside the old)."""
    if not cfg.init_from:
        return task.load_model(cfg, source, method)
    earlier = Path(cfg.init_from)
    _, _, model = load_run(earlier)
    model = get_method(reading.read_meta(earlier)["method"]).merge(model).cpu()
    return task.continue_model(model, cfg)


def evaluate_run(run_dir: Path, data: str) -> dict[str, Any]:
    """Metrics of a trained run on a new data file (same columns as training)."""
    saved = reading.read_config(run_dir)
    records = read_records(data)
    require_columns(records, saved, run_dir, labelled=True)  # before the model loads: a fast answer
    cfg, task, model = load_run(run_dir)
    examples = task.encode(records, "eval")
    device = pick_device()
    metrics, rows = task.evaluate_rows(model, examples, cfg.eval.batch_size, device,
                                       autocast_dtype(cfg.train.precision, device))
    return with_intervals(metrics, task.tally(rows) if rows else None, task.summarize, list(task.headline),
                          cfg.eval.bootstrap, cfg.train.seed)  # 95% bootstrap intervals, as in eval.json


def predict_run(run_dir: Path, texts: list[str] | None = None, data: str | None = None) -> list[dict[str, Any]]:
    """One row per text (or per record of `data`): the task's prediction."""
    if data:
        saved = reading.read_config(run_dir)
        records = read_records(data)
        require_columns(records, saved, run_dir, labelled=False)
    cfg, task, model = load_run(run_dir)
    if not data:  # a bare text is both an input text and a prompt: the task reads the column it knows
        records = [Record({cfg.data.text: t, cfg.data.prompt: t}, "<text>", i + 1) for i, t in enumerate(texts or [])]
    device = pick_device()
    examples = task.encode_unlabelled(records)
    return task.predict(model, examples, cfg.eval.batch_size, device, autocast_dtype(cfg.train.precision, device))


def require_columns(records: list[Record], cfg: Config, run_dir: Path, labelled: bool) -> None:
    """eval/predict read a file with the column names the run was trained with (its config fixes them and
    these commands cannot change them): name the missing column, and the fix, in the file."""
    layouts, order = task_class(cfg.task).input_layouts(cfg, labelled)
    for r in records:
        picked = next((k for k in order if layouts[k][0] in r.fields), None)
        missing = [c for c in layouts[picked or order[0]] if c not in r.fields]
        if not missing:
            continue
        have = ", ".join(shorten(c, 40) for c in sorted(r.fields)[:8]) + (", …" if len(r.fields) > 8 else "")
        wanted = " or ".join(repr(layouts[k][0]) for k in order) if picked is None else repr(missing[0])
        raise DataError(r.file, r.line, f"no column {wanted} (columns: {have or 'none'})",
                        f"{run_dir} was trained on the column {wanted}: rename that column in {r.file}")
