"""Inference: the one place that loads a finished run, and what is done with it (evaluate, predict).

`load_run` rebuilds (config, task, model) from a run directory: the config from config.yaml, the task from
model/tuneforge.json (exactly the labels and formatting training used), the model from the method's
artifact on top of the model the run started from. eval, predict, chat, export, serve, sequence and continued
runs (`init_from`) all load runs through here; `TunedModel` (tuneforge.load) keeps one loaded, with typed
results, for the Python API and the server.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Sequence, Union

import torch

from ..config import Config
from ..data.records import Record, read_records
from ..errors import DataError, TuneforgeError
from ..evaluation.generation import Sampling
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
        if method.scratch:  # built with fresh weights from its config.json: the trained ones go on top
            model = method.load(model, run_dir / "model")
    else:  # an adapter: on top of the model the run started from
        model = method.load(start_model(cfg, loading.resolve(cfg.model), task, method), run_dir / "model")
    model.to(pick_device()).eval()
    return LoadedRun(cfg, task, model)


def start_model(cfg: Config, source: loading.ModelSource, task: Any, method: Any) -> torch.nn.Module:
    """The model a run starts from: the base model with the task's head, or (init_from) the earlier run's
    model with its adapters merged, continued by the task (for classification: a new head beside the old)."""
    if not cfg.init_from:
        return task.edit_start(task.load_model(cfg, source, method), cfg)
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
    method = get_method(reading.read_meta(run_dir)["method"])  # preference: the model the run started from
    task.use_reference(model, method, lambda: start_model(cfg, loading.resolve(cfg.model), task, method).to(device))
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


# ---------------------------------------------------------------- a run kept loaded (tuneforge.load, serve)

@dataclass(frozen=True)
class Classification:
    """One text's prediction: its label (a list of labels for a multi-label run) and each class's probability."""

    text: str
    label: str | list[str]
    probs: dict[str, float]


@dataclass(frozen=True)
class Reply:
    """One generated reply: its text (cut before any stop string), why generation ended ("stop": a stop token
    or string; "length": max_new_tokens), and the tokens counted the way OpenAI's `usage` counts them."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Evaluation:
    """A run's metrics on a data file (the task's: accuracy/F1..., or ROUGE-L/perplexity...); `m["accuracy"]`."""

    metrics: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]


Prompt = Union[str, Sequence[Mapping[str, Any]]]  # a user message, or a whole conversation (OpenAI messages)


class TunedModel:
    """A finished run, loaded once and kept: `tuneforge.load("runs/x")`.

    predict() labels texts (classifiers) or answers prompts (instruction runs) exactly as `tuneforge predict`;
    generate()/stream() answer one prompt or conversation with OpenAI's knobs (temperature, top_p, stop,
    max_new_tokens, seed); evaluate() scores a data file. Calls from several threads are served one at a time
    (a lock around the model), so concurrent callers never see each other's outputs.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.cfg, self.task, self.model = load_run(self.run_dir)
        self.device = pick_device()
        self.dtype = autocast_dtype(self.cfg.train.precision, self.device)
        self.name = self.run_dir.resolve().name
        self.lock = threading.Lock()

    @property
    def generates(self) -> bool:
        """True for a run that answers prompts (instruction), False for one that labels texts."""
        return bool(self.task.generates)

    @property
    def labels(self) -> list[str]:
        """The label names of a classifier ([] for a run that generates)."""
        return list(getattr(self.task, "labels", []))

    @property
    def context_length(self) -> int:
        """The most prompt tokens the run was trained on (data.max_length); longer prompts are cut from the left."""
        return int(self.cfg.data.max_length)

    def predict(self, texts: str | Sequence[str]) -> list[Classification] | list[Reply]:
        """Labels for texts, or greedy replies to prompts: what `tuneforge predict --text/--prompt` prints."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if self.generates:
            return self._replies([self._prompt_ids(t) for t in texts], None, None)
        return self.classify(texts)

    def classify(self, texts: str | Sequence[str]) -> list[Classification]:
        """The label and class probabilities of each text (a classifier run only)."""
        if self.generates:
            raise TuneforgeError(f"{self.run_dir} answers prompts (task: {self.cfg.task}); use generate()")
        texts = [texts] if isinstance(texts, str) else list(texts)
        records = [Record({self.cfg.data.text: t}, "<text>", i + 1) for i, t in enumerate(texts)]
        with self.lock:
            rows = self.task.predict(self.model, self.task.encode_unlabelled(records), self.cfg.eval.batch_size,
                                     self.device, self.dtype)
        return [Classification(t, r["label"], r["probs"]) for t, r in zip(texts, rows)]

    def generate(self, prompt: Prompt, *, max_new_tokens: int | None = None, temperature: float = 0.0,
                 top_p: float = 1.0, stop: Sequence[str] | None = None, seed: int | None = None,
                 raw: bool = False) -> Reply:
        """One reply to a prompt or a conversation, in the training chat format (`raw`: continue the text
        as is, no template). Greedy unless temperature > 0."""
        ids = self._prompt_ids(prompt, raw)
        return self._replies([ids], max_new_tokens, self._sampling(temperature, top_p, stop, seed))[0]

    def stream(self, prompt: Prompt, *, max_new_tokens: int | None = None, temperature: float = 0.0,
               top_p: float = 1.0, stop: Sequence[str] | None = None, seed: int | None = None,
               raw: bool = False) -> Iterator[str | Reply]:
        """generate(), token by token: text pieces as they are generated, then the Reply (whose text is the
        pieces joined). Closing the iterator early stops the generation."""
        ids = self._prompt_ids(prompt, raw)
        events: queue.Queue[Any] = queue.Queue()
        cancelled = threading.Event()
        sampling = self._sampling(temperature, top_p, stop, seed)
        sampling.stopping.append(_Cancelled(cancelled))
        streamer = _Deltas(self.task, list(sampling.stop), events)

        def work() -> None:
            try:
                (reply,) = self._replies([ids], max_new_tokens, sampling, streamer)
                if reply.text[len(streamer.sent):]:
                    events.put(reply.text[len(streamer.sent):])
                events.put(reply)
            except BaseException as e:  # handed to the caller's thread
                events.put(e)

        threading.Thread(target=work, daemon=True).start()
        try:
            while True:
                item = events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Reply):
                    return
        finally:
            cancelled.set()

    def evaluate(self, data: str | Path) -> Evaluation:
        """The task's metrics on a data file with the columns the run was trained on."""
        records = read_records(data)
        require_columns(records, self.cfg, self.run_dir, labelled=True)
        with self.lock:
            return Evaluation(self.task.evaluate(self.model, self.task.encode(records, "eval"), self.cfg.eval.batch_size,
                                                 self.device, self.dtype))

    # ------------------------------------------------------------------ internals
    def _prompt_ids(self, prompt: Prompt, raw: bool = False) -> list[int]:
        if not self.generates:
            raise TuneforgeError(f"{self.run_dir} is a {self.cfg.task} run: it labels texts; use classify()")
        if raw:
            if not isinstance(prompt, str):
                raise TuneforgeError("a raw prompt is text, not a list of messages")
            ids = list(self.task.tokenizer(prompt)["input_ids"])[-self.context_length:]
            if not ids:
                raise TuneforgeError("an empty prompt: there is nothing to continue")
            return ids
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
        return self.task.prompt_ids(messages)

    def _sampling(self, temperature: float, top_p: float, stop: Sequence[str] | None, seed: int | None) -> Sampling:
        return Sampling(temperature=temperature, top_p=top_p, stop=[s for s in stop or [] if s], seed=seed,
                        tokenizer=self.task.tokenizer)

    def _replies(self, prompts: list[list[int]], max_new_tokens: int | None, sampling: Sampling | None,
                 streamer: Any = None) -> list[Reply]:
        limit = max_new_tokens or self.task.max_new_tokens
        positions = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        longest = max((len(p) for p in prompts), default=0)
        if isinstance(positions, int) and longest + limit > positions:  # what OpenAI answers with a 400
            raise TuneforgeError(f"{longest:,} prompt tokens + max_tokens {limit:,} exceed the model's context of "
                                 f"{positions:,} tokens; ask for fewer tokens or send a shorter prompt")
        with self.lock:
            new = self.task.generate_ids(self.model, prompts, self.cfg.eval.batch_size, self.device, self.dtype,
                                         limit, streamer, sampling)
        return [self._reply(p, ids, limit, sampling.stop if sampling else []) for p, ids in zip(prompts, new)]

    def _reply(self, prompt: list[int], ids: list[int], limit: int, stop: list[str]) -> Reply:
        end = next((k for k, t in enumerate(ids) if t in self.task.stop_ids), None)
        kept = ids if end is None else ids[:end]
        text, cut = _cut(self.task.decode_reply(kept), stop)
        done = "stop" if end is not None or cut or len(ids) < limit else "length"
        return Reply(text, done, len(prompt), len(kept) + (end is not None))


def _cut(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The text before the first stop string (OpenAI leaves the stop string out), and whether one was found."""
    at = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:at].rstrip(), True) if at >= 0 else (text, False)


class _Cancelled:
    """A StoppingCriteria that ends generation once the event is set (a streaming client went away)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class _Deltas:
    """A transformers streamer that turns generated ids into text pieces: only text that can no longer
    change is sent (no trailing whitespace, no half a UTF-8 character, nothing that could start a stop
    string), so the pieces joined are exactly the final reply."""

    def __init__(self, task: Any, stop: list[str], events: "queue.Queue[Any]"):
        self.task, self.stop, self.events = task, stop, events
        self.ids: list[int] = []
        self.sent = ""
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        self.ids += [int(t) for t in value.reshape(-1).tolist()]
        end = next((k for k, t in enumerate(self.ids) if t in self.task.stop_ids), len(self.ids))
        text, cut = _cut(self.task.decode_reply(self.ids[:end]), self.stop)
        if not cut:
            text = text.rstrip().rstrip("\ufffd")
            held = max((len(s) - k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            text = text[:len(text) - held] if held else text
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self.events.put(text[len(self.sent):])
            self.sent = text

    def end(self) -> None:
        pass


def load(run_dir: str | Path) -> TunedModel:
    """The finished run at `run_dir`, loaded once (see TunedModel)."""
    return TunedModel(run_dir)
