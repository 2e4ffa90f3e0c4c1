"""Forgetting: measured before/after every run, and mitigated by replay, EWC and an L2 pull to the base.

What the model must not lose, by case:
- a continued run (`init_from`): the accuracy of every earlier task, through its own head;
- an instruction model: perplexity on general text, plus general prompts that the base model answers
  before training and that are re-scored after (perplexity of the base model's own answers);
- a classifier on its own: the geometry of its sentence embeddings on general text (the correlation of
  pairwise cosine similarities before vs after) — what an embedding model like MiniLM is used for.

`ForgettingGuard.start` runs before training (measures "before", builds the replay mix and penalties);
`finish` runs after and returns eval.json["forgetting"] = {metric, before, after, relative_change, flagged}.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..training.device import autocast
from ..errors import TuneforgeError



def lower_is_better(metric: str) -> bool:
    return "perplexity" in metric or "loss" in metric


# ------------------------------------------------------------------ reference data

@dataclass
class Reference:
    """General text the model must keep modelling, and general prompts it must keep answering."""

    texts: list[str]
    prompts: list[str]
    source: str

    def training_texts(self, probe_size: int) -> list[str]:
        """The texts replay and the EWC Fisher may train on: those the probe does not measure.

        The probe scores texts[:probe_size]; training on them would make replay look better than it is."""
        rest = self.texts[probe_size:]
        if not rest:
            raise TuneforgeError(f"forgetting.reference {self.source} has {len(self.texts)} texts and the probe "
                                 f"uses forgetting.samples = {probe_size}; lower it so some remain for replay/EWC")
        return rest


REFERENCE_COLUMNS = ("text", "prompt", "instruction")


def load_reference(spec: str | None, pii: str = "off") -> Reference | None:
    """`builtin` (shipped inside the package), a JSONL file (rows with "text" and/or "prompt"), or None.

    A user's file goes through the same PII scan as the training data (`pii` is privacy.pii): its prompts
    reach eval.json (the base model's sample answers) and its texts are trained on by replay/EWC."""
    if not spec:
        return None
    if spec == "builtin":
        root = resources.files("tuneforge") / "resources" / "reference"
        rows = _jsonl(root.joinpath("general.jsonl").read_text(encoding="utf-8"), "builtin general.jsonl") \
            + _jsonl(root.joinpath("prompts.jsonl").read_text(encoding="utf-8"), "builtin prompts.jsonl")
    else:
        from ..vetting import privacy
        from ..data.records import read_records

        path = Path(spec)
        if not path.is_file():
            raise TuneforgeError(f"`forgetting.reference` = {spec!r}: file not found (use builtin, a JSONL "
                                 "file with \"text\"/\"prompt\" fields, or null to switch the probe off)")
        records, _ = privacy.scan_records(read_records(path), REFERENCE_COLUMNS, pii)
        rows = [r.fields for r in records]
    texts = [r["text"] for r in rows if isinstance(r.get("text"), str) and r["text"].strip()]
    prompts = [r.get("prompt") or r.get("instruction") for r in rows if r.get("prompt") or r.get("instruction")]
    if not texts and not prompts:
        raise TuneforgeError(f"`forgetting.reference` = {spec!r} holds no \"text\" or \"prompt\" fields")
    return Reference(texts, [p for p in prompts if isinstance(p, str)], spec)


def _jsonl(text: str, where: str) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise TuneforgeError(f"{where}:{i}: not valid JSON ({e.msg})") from None
    return rows


# ------------------------------------------------------------------ plain-text language modelling

class TextLM:
    """Plain text as causal-LM examples: the reference perplexity and the replay batches for LMs."""

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def encode(self, texts: list[str]) -> list[list[int]]:
        eos = self.tokenizer.eos_token_id
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length - 1)["input_ids"]
        return [row + ([eos] if eos is not None else []) for row in ids]

    def collate(self, examples: list[list[int]], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        rows = [examples[i] for i in idx]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, row in enumerate(rows):
            ids[j, :len(row)] = torch.tensor(row)
            mask[j, :len(row)] = 1
        labels = ids.masked_fill(mask == 0, -100)  # no loss on padding
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device),
                "n_real": mask.sum()}  # n_real stays on the CPU: counting tokens must not wait for the device

    @staticmethod
    def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["labels"]).loss

    @staticmethod
    def tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["n_real"]


@torch.no_grad()
def perplexity(model: nn.Module, batches: list[dict[str, torch.Tensor]], device: torch.device,
               dtype: torch.dtype | None) -> float:
    """exp(mean token NLL) over every labelled token of `batches` (token-weighted, not batch-weighted)."""
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    for batch in batches:
        with autocast(device, dtype):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
        nll += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                     ignore_index=-100, reduction="sum"))
        count += int((labels != -100).sum())
    model.train(was_training)
    return math.exp(nll / max(count, 1))


# ------------------------------------------------------------------ probes

class LMProbe:
    """Instruction models: perplexity on general text, and on the base model's own answers to general prompts."""

    metric = "perplexity"

    def __init__(self, ref: Reference, tokenizer: Any, max_length: int, samples: int, max_new_tokens: int,
                 device: torch.device, dtype: torch.dtype | None):
        self.lm, self.tokenizer, self.device, self.dtype = TextLM(tokenizer, max_length), tokenizer, device, dtype
        texts = self.lm.encode(ref.texts[:samples]) if ref.texts else []
        self.text_batches = [self.lm.collate(texts, list(range(i, min(i + 16, len(texts)))), device)
                             for i in range(0, len(texts), 16)]
        self.prompts = ref.prompts[:samples]
        self.max_new_tokens = max_new_tokens
        self.answer_batches: list[dict[str, torch.Tensor]] = []
        self.answers: list[str] = []

    def measure(self, model: nn.Module, first: bool) -> dict[str, Any]:
        if first and self.prompts:  # the base model answers once; later we re-score those answers
            self.answers = generate(model, self.tokenizer, self.prompts, self.max_new_tokens, self.device, self.dtype)
            self.answer_batches = answer_batches(self.tokenizer, self.prompts, self.answers, self.device)
        out: dict[str, Any] = {}
        if self.text_batches:
            out["perplexity"] = perplexity(model, self.text_batches, self.device, self.dtype)
        if self.answer_batches:
            out["base_answer_perplexity"] = perplexity(model, self.answer_batches, self.device, self.dtype)
        return out

    def details(self) -> dict[str, Any]:
        return {"texts": sum(len(b["input_ids"]) for b in self.text_batches), "prompts": len(self.prompts),
                "sample_answers": [{"prompt": p, "base_answer": a} for p, a in zip(self.prompts[:3], self.answers[:3])]}


def chat_text(tokenizer: Any, prompt: str) -> str:
    """The prompt as the model sees it at inference: its chat template when it has one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt + "\n"


@torch.no_grad()
def generate(model: nn.Module, tokenizer: Any, prompts: list[str], max_new_tokens: int, device: torch.device,
             dtype: torch.dtype | None, batch_size: int = 16) -> list[str]:
    """Greedy answers (deterministic, so before/after differences are the model's, not sampling noise)."""
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    answers: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            texts = [chat_text(tokenizer, p) for p in prompts[i:i + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with autocast(device, dtype):
                out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                     max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            answers += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return [a.strip() for a in answers]


def answer_batches(tokenizer: Any, prompts: list[str], answers: list[str], device: torch.device,
                   batch_size: int = 16) -> list[dict[str, torch.Tensor]]:
    """(prompt, answer) pairs with the loss on the answer tokens only."""
    rows = []
    for p, a in zip(prompts, answers):
        if not a:
            continue
        head = tokenizer(chat_text(tokenizer, p), add_special_tokens=False)["input_ids"]
        tail = tokenizer(a, add_special_tokens=False)["input_ids"]
        rows.append((head, tail))
    batches = []
    pad = tokenizer.pad_token_id or 0
    for i in range(0, len(rows), batch_size):
        part = rows[i:i + batch_size]
        width = max(len(h) + len(t) for h, t in part)
        ids = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for j, (h, t) in enumerate(part):
            ids[j, :len(h) + len(t)] = torch.tensor(h + t)
            mask[j, :len(h) + len(t)] = 1
            labels[j, len(h):len(h) + len(t)] = torch.tensor(t)
        batches.append({"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)})
    return batches


class EmbeddingProbe:
    """Classifiers: how well the body keeps the geometry of its sentence embeddings on general text.

    The metric is the Pearson correlation between the pairwise cosine similarities of mean-pooled
    last-layer embeddings before and after training (1.0 = unchanged geometry).
    """

    metric = "embedding_geometry"

    def __init__(self, ref: Reference, tokenizer: Any, max_length: int, samples: int, device: torch.device,
                 dtype: torch.dtype | None):
        self.device, self.dtype = device, dtype
        texts = ref.texts[:samples]
        self.batches = [tokenizer(texts[i:i + 32], truncation=True, max_length=max_length, padding=True,
                                  return_tensors="pt").to(device) for i in range(0, len(texts), 32)]
        self.base: torch.Tensor | None = None

    @torch.no_grad()
    def similarities(self, model: nn.Module) -> torch.Tensor:
        was_training = model.training
        model.eval()
        pooled = []
        for enc in self.batches:
            with autocast(self.device, self.dtype):
                out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
            hidden = out.hidden_states[-1].float()                          # (B, T, H)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))  # (B, H)
        model.train(was_training)
        emb = F.normalize(torch.cat(pooled), dim=-1)
        sims = emb @ emb.T
        upper = torch.triu_indices(len(sims), len(sims), offset=1)
        return sims[upper[0], upper[1]].cpu()

    def measure(self, model: nn.Module, first: bool) -> dict[str, Any]:
        sims = self.similarities(model)
        if first:
            self.base = sims
        assert self.base is not None
        corr = torch.corrcoef(torch.stack([self.base, sims]))[0, 1]
        return {"embedding_geometry": float(corr)}

    def details(self) -> dict[str, Any]:
        return {"texts": sum(len(b["input_ids"]) for b in self.batches)}


@dataclass
class PreviousTask:
    """An earlier task of a continued run: its head-sliced task and its train/test examples."""

    name: str
    run: str
    task: Any
    train: list[Any]
    test: list[Any]


class PreviousTasksProbe:
    """Continued runs: accuracy of every earlier task on its own test data, through its own head."""

    metric = "accuracy"

    def __init__(self, previous: list[PreviousTask], batch_size: int, device: torch.device, dtype: torch.dtype | None):
        self.previous, self.batch_size, self.device, self.dtype = previous, batch_size, device, dtype

    def measure(self, model: nn.Module, first: bool) -> dict[str, Any]:
        per_task = {p.name: float(p.task.evaluate(model, p.test, self.batch_size, self.device, self.dtype)["accuracy"])
                    for p in self.previous}
        return {"accuracy": sum(per_task.values()) / len(per_task), "tasks": per_task}

    def details(self) -> dict[str, Any]:
        return {"previous": [{"name": p.name, "run": p.run, "test_examples": len(p.test)} for p in self.previous]}


# ------------------------------------------------------------------ replay

@dataclass
class ReplayItem:
    """One example of the replay pool, with the task that knows how to batch it and take its loss."""

    task: Any
    example: Any


class ReplayTask:
    """Wraps the training task: every batch of new data gets extra examples from earlier tasks/reference.

    With fraction f, a batch of n new examples gets round(n·f/(1−f)) replayed ones (so they make up f of
    the batch) and the loss is the example-weighted mean over both. Steps per epoch stay those of the
    new data; the replayed examples are drawn seeded by (seed, epoch), so a resumed run sees the same mix.
    Validation and test examples pass straight through to the wrapped task.
    """

    def __init__(self, task: Any, n_main: int, pool: list[ReplayItem], fraction: float):
        assert 0 < fraction < 1, f"replay fraction must be in (0, 1), got {fraction}"
        assert pool, "replay needs a non-empty pool"
        self.task, self.n_main, self.pool, self.fraction = task, n_main, pool, fraction

    def __getattr__(self, name: str) -> Any:  # evaluate, labels, metadata, ... come from the wrapped task
        return getattr(self.task, name)

    def batches(self, examples: list[Any], batch_size: int, shuffle: bool = False, seed: int = 0) -> list[list[int]]:
        main = self.task.batches(examples[:self.n_main], batch_size, shuffle=shuffle, seed=seed)
        rng = random.Random(seed * 7919 + 1)
        out = []
        for idx in main:
            k = max(1, round(len(idx) * self.fraction / (1 - self.fraction)))
            out.append(list(idx) + [self.n_main + rng.randrange(len(self.pool)) for _ in range(k)])
        return out

    def collate(self, examples: list[Any], idx: list[int], device: torch.device) -> dict[str, Any]:
        main = [i for i in idx if i < self.n_main]
        groups: dict[int, tuple[Any, list[Any]]] = {}
        for i in idx:
            if i >= self.n_main:
                item = examples[i]
                groups.setdefault(id(item.task), (item.task, []))[1].append(item.example)
        replay = [(task, len(exs), task.collate(exs, list(range(len(exs))), device)) for task, exs in groups.values()]
        return {"main": self.task.collate(examples, main, device), "n_main": len(main), "replay": replay}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        total = self.task.loss(model, batch["main"]) * batch["n_main"]
        count = batch["n_main"]
        for task, n, sub in batch["replay"]:
            total = total + task.loss(model, sub) * n
            count += n
        return total / count

    def tokens(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.task.tokens(batch["main"]) + sum(task.tokens(sub) for task, _, sub in batch["replay"])


# ------------------------------------------------------------------ the guard

@dataclass
class ForgettingGuard:
    """Set up before training (probe "before", replay mix, penalties); `finish` measures "after"."""

    task: Any                                  # the task loop.fit trains (the replay wrapper or the plain task)
    train: list[Any]                           # the training examples loop.fit sees (+ the replay pool)
    regularizer: Callable[[], torch.Tensor] | None
    probe: Any | None = None
    before: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.1
    mitigation: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, prep: Any, model: nn.Module, device: torch.device, dtype: torch.dtype | None,
              log: Any | None = None) -> "ForgettingGuard":
        cfg, fc = prep.cfg, prep.cfg.forgetting
        previous = previous_tasks(cfg) if cfg.init_from else []
        ref = load_reference(fc.reference, cfg.privacy.pii) if (fc.reference and not previous) else None
        probe = make_probe(cfg, prep.tokenizer, ref, previous, device, dtype)
        before = probe.measure(model, first=True) if probe else {}
        train, task = list(prep.encoded["train"]), prep.task
        mitigation = {"replay": fc.replay, "ewc": fc.ewc, "l2_to_base": fc.l2_to_base}
        if fc.replay > 0:
            pool = replay_pool(cfg, prep, previous, ref)
            task = ReplayTask(prep.task, len(train), pool, fc.replay)
            train = train + pool
            mitigation["replay_pool"] = len(pool)
        regularizer = penalties(model, cfg, prep, previous, ref, device, dtype, mitigation)
        if log is not None and probe is not None:
            log.note(f"forgetting probe ({probe.metric}) before training: {_fmt(before.get(probe.metric))}")
        return cls(task, train, regularizer, probe, before, fc.threshold, mitigation)

    def finish(self, model: nn.Module, log: Any | None = None) -> dict[str, Any] | None:
        if self.probe is None:
            return None
        after = self.probe.measure(model, first=False)
        metric = self.probe.metric
        out = {"metric": metric, **change(self.before[metric], after[metric], metric, self.threshold),
               "threshold": self.threshold, "mitigation": self.mitigation, **self.probe.details()}
        for key in after:
            if key not in (metric, "tasks") and key in self.before:
                out[key] = change(self.before[key], after[key], key, self.threshold)
        if "tasks" in after:
            out["tasks"] = {name: change(self.before["tasks"][name], value, metric, self.threshold)
                            for name, value in after["tasks"].items()}
        if log is not None:
            log.note(f"forgetting ({metric}): {_fmt(out['before'])} → {_fmt(out['after'])} "
                     f"({100 * out['relative_change']:+.1f}%)" + ("  FLAGGED" if out["flagged"] else ""))
        return out


def penalties(model: nn.Module, cfg: Any, prep: Any, previous: list[PreviousTask], ref: Reference | None,
              device: torch.device, dtype: torch.dtype | None,
              mitigation: dict[str, Any]) -> Callable[[], torch.Tensor] | None:
    """EWC and/or the L2 pull, anchored at the weights training starts from (None: plain training, untouched)."""
    fc = cfg.forgetting
    if not (fc.ewc > 0 or fc.l2_to_base > 0):
        return None
    from ..guards import ewc

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    anchor = ewc.snapshot(params)
    found = []
    if fc.ewc > 0:
        fisher = fisher_for(model, params, cfg, prep, previous, ref, device, dtype)
        found.append(ewc.ewc_penalty(params, fisher, anchor, fc.ewc))
        total = sum(f.numel() for f in fisher.values())
        mitigation["fisher_mean"] = float(sum(f.sum() for f in fisher.values()) / max(total, 1))
    if fc.l2_to_base > 0:
        found.append(ewc.l2_to_anchor(params, anchor, fc.l2_to_base))
    return ewc.combine(found)


def change(before: float, after: float, metric: str, threshold: float) -> dict[str, Any]:
    """before/after, relative change, and whether it got worse by more than `threshold` (relative)."""
    rel = (after - before) / before if before else 0.0
    worse = rel if lower_is_better(metric) else -rel
    return {"before": before, "after": after, "relative_change": rel, "flagged": bool(worse > threshold)}


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, (int, float)) else str(x)


def make_probe(cfg: Any, tokenizer: Any, ref: Reference | None, previous: list[PreviousTask],
               device: torch.device, dtype: torch.dtype | None) -> Any | None:
    fc = cfg.forgetting
    if previous:
        return PreviousTasksProbe(previous, cfg.eval.batch_size, device, dtype)
    if ref is None:
        return None
    if cfg.task == "instruction":
        return LMProbe(ref, tokenizer, min(cfg.data.max_length, 512), fc.samples, cfg.eval.max_new_tokens, device, dtype)
    if not ref.texts:
        return None
    return EmbeddingProbe(ref, tokenizer, cfg.data.max_length, fc.samples, device, dtype)


def previous_tasks(cfg: Any) -> list[PreviousTask]:
    """Every earlier head of a continued run, with its data re-read (and re-vetted) from that run's config."""
    from ..recipes.train import prepare
    from ..recipes.sequence import HeadTask, heads_for, run_config

    out = []
    for head in heads_for(cfg)[:-1]:
        prev_cfg = run_config(Path(head["run"]))
        prev = prepare(prev_cfg)
        task = HeadTask.wrap(prev.task, head["offset"], [])
        test = prev.encoded.get("test") or prev.encoded.get("validation")
        if not test:
            raise TuneforgeError(f"earlier run {head['run']} has no test or validation data to measure forgetting on")
        out.append(PreviousTask(head["name"], head["run"], task, prev.encoded["train"], test))
    return out


def replay_pool(cfg: Any, prep: Any, previous: list[PreviousTask], ref: Reference | None) -> list[ReplayItem]:
    """Earlier tasks' training examples (continued runs), else the reference text (instruction runs)."""
    if previous:
        return [ReplayItem(p.task, ex) for p in previous for ex in p.train]
    if cfg.task == "instruction" and ref is not None and ref.texts:
        lm = TextLM(prep.tokenizer, min(cfg.data.max_length, 512))
        return [ReplayItem(lm, ex) for ex in lm.encode(ref.training_texts(cfg.forgetting.samples))]
    raise TuneforgeError("`forgetting.replay` needs earlier data: set init_from (a previous run) or, for "
                         "instruction runs, forgetting.reference")


def fisher_for(model: nn.Module, params: list[tuple[str, nn.Parameter]], cfg: Any, prep: Any,
               previous: list[PreviousTask], ref: Reference | None, device: torch.device,
               dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """The EWC Fisher on what must be kept: earlier tasks' training data, else the reference text."""
    from ..guards.ewc import fisher_diagonal

    n = cfg.forgetting.fisher_samples
    if previous:
        items = [(p.task, p.train) for p in previous]
    elif cfg.task == "instruction" and ref is not None and ref.texts:
        lm = TextLM(prep.tokenizer, min(cfg.data.max_length, 512))
        items = [(lm, lm.encode(ref.training_texts(cfg.forgetting.samples)))]
    else:
        raise TuneforgeError("`forgetting.ewc` needs earlier data: set init_from (a previous run) or, for "
                             "instruction runs, forgetting.reference")
    rng = random.Random(cfg.train.seed)
    per_task = max(1, n // len(items))

    def losses() -> Any:
        for task, examples in items:
            for i in rng.sample(range(len(examples)), min(per_task, len(examples))):
                def one(task: Any = task, examples: list[Any] = examples, i: int = i) -> torch.Tensor:
                    batch = task.collate(examples, [i], device)
                    with autocast(device, dtype):
                        return task.loss(model, batch).float()
                yield one

    return fisher_diagonal(model, params, losses())
