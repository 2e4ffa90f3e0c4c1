"""Token classification: pull entities (order numbers, products, dates, amounts, names) out of text.

Records hold `text` + character `spans` or `tokens` + `tags` (BIO or IOBES; tasks/spans.py reads both into
text + spans, before vetting, so the PII scan and the leakage check read the whole text and redaction keeps
every span on its entity). The text is tokenized once by the model's fast tokenizer; its words (the
tokenizer's own pre-tokenization, from `word_ids`) carry BIO tags, and each word's first sub-token is
labelled while the others are ignored by the loss (-100: the Hugging Face convention). The model is
transformers' AutoModelForTokenClassification (a linear `classifier` over every position), so every method
applies unchanged (PEFT task type TOKEN_CLS, the head trained fully next to an adapter).

Predictions are spans: character offsets into the text, the substring and the mean probability of its
words' tags. Evaluation is entity-level (seqeval, evaluation/entities.py) over every word of the text:
words past data.max_length count as predicted O, so a cut-off entity is a miss, never silently dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.records import Record, is_blank, preview, preview_list
from ..errors import DataError, TuneforgeError, show
from ..evaluation.entities import ENTITY_DIRECTIONS, entity_metrics
from ..training.device import autocast
from .base import pad_id, pad_right
from .spans import OUTSIDE, Span, align, entity_tags, parse_spans, remap_spans, scheme_of, tag_entities, \
    tokens_record, unit_spans
from .text import TextTask

if TYPE_CHECKING:
    from ..config import Config

IGNORE = -100  # label of a sub-token that carries no loss (the Hugging Face convention)
SAMPLE_CHARS = 400  # characters of a text shown with a mistake in eval.json
SENSITIVE = ("extraction data: the entities a model learns to pull out (names, order numbers, amounts, addresses) "
             "are often personal data themselves, and the text around them more so; every text is scanned, "
             "and privacy.pii: redact keeps each span on its entity")


@dataclass
class Example:
    ids: list[int]
    labels: list[int]              # per position: the tag id at each word's first sub-token, IGNORE elsewhere
    where: str
    text: str
    words: list[tuple[int, int]]   # (start, end) in the text of every word, also those past max_length
    first: list[int]               # position in ids of the first sub-token of each word inside the window
    gold: list[str]                # BIO tag of every word ([] for prediction)
    tokens: list[tuple[int, int]] | None = None  # a tokens record's own words, for tags on them
    scheme: str = "BIO"            # the tagging scheme of that record's tags


class TokenClassificationTask(TextTask):
    name = "token_classification"
    peft_task_type = "TOKEN_CLS"
    auto_class = "AutoModelForTokenClassification"
    pools = False  # one output per token: nothing is pooled
    headline = ("entity_f1_micro", "entity_precision_micro", "entity_recall_micro", "entity_f1_macro",
                "token_accuracy")
    primary_metric = "entity_f1_micro"
    curve_metric = "entity_f1_micro"
    showcase = {"mistakes": "Mistakes: gold and predicted spans"}
    output_fields = ("predicted",)
    metrics = ENTITY_DIRECTIONS  # counts (n, words, entities) and tables are computed too, but are no metrics

    def __init__(self, tokenizer: Any, types: list[str], cfg: "Config", label_smoothing: float = 0.0):
        super().__init__(tokenizer, cfg.data.text, cfg.data.max_length)
        if not getattr(tokenizer, "is_fast", False):
            raise TuneforgeError(f"task token_classification needs a fast tokenizer (character offsets of each "
                                 f"token); {cfg.model} has a slow one ({type(tokenizer).__name__}): save the "
                                 "model with its tokenizer.json")
        self.types, self.label_smoothing, self.samples = types, label_smoothing, cfg.eval.samples
        self.spans_col, self.tokens_col, self.tags_col = cfg.data.spans, cfg.data.tokens, cfg.data.tags
        self.tags = [OUTSIDE] + [f"{p}-{t}" for t in types for p in ("B", "I")]
        self.index = {t: i for i, t in enumerate(self.tags)}

    @property
    def model_labels(self) -> list[str]:
        return list(self.tags)

    # ------------------------------------------------------------------ the config's questions
    @classmethod
    def pii_columns(cls, cfg: "Config") -> list[str]:
        """The text (tokens records are joined into it before vetting; their words too, for files read later)."""
        return [cfg.data.text, cfg.data.tokens]

    @classmethod
    def config_problems(cls, cfg: "Config") -> list[str]:
        d, problems = cfg.data, []
        if d.text == d.spans or d.tokens == d.tags:
            problems.append(f"`data.text`/`data.spans` ({show(d.text)}, {show(d.spans)}) and `data.tokens`/"
                            f"`data.tags` ({show(d.tokens)}, {show(d.tags)}) must name different columns")
        if cfg.init_from:
            problems.append("`init_from` continues classification runs (a new head per task); to build on an "
                            "earlier token_classification run, point `model:` at its exported model")
        for key, value in (("replay", cfg.forgetting.replay), ("ewc", cfg.forgetting.ewc)):
            if value:
                problems.append(f"`forgetting.{key}` = {value} protects an earlier task, and token_classification "
                                "runs continue none; set it to 0 (the forgetting probe still measures the encoder)")
        return problems

    @classmethod
    def input_layouts(cls, cfg: "Config", labelled: bool) -> tuple[dict[str, list[str]], list[str]]:
        d = cfg.data
        if labelled:
            return {"spans": [d.text, d.spans], "tokens": [d.tokens, d.tags]}, ["spans", "tokens"]
        return {"text": [d.text], "tokens": [d.tokens]}, ["text", "tokens"]

    @classmethod
    def overfit_advice(cls, cfg: "Config | None") -> list[str]:
        return ["try train.label_smoothing: 0.1"]

    @classmethod
    def privacy_notice(cls, cfg: "Config") -> str | None:
        return SENSITIVE

    # ------------------------------------------------------------------ records before vetting
    @classmethod
    def normalize_records(cls, cfg: "Config", records: list[Record]) -> list[Record]:
        """tokens + tags records become text + spans (the words joined by spaces); others stay as read."""
        d, out = cfg.data, []
        for r in records:
            if d.text in r.fields or d.tokens not in r.fields:
                out.append(r)
                continue
            text, spans, _ = tokens_record(r, d.tokens, d.tags if d.tags in r.fields else None)
            fields = {k: v for k, v in r.fields.items() if k not in (d.tokens, d.tags)}
            fields[d.text] = text
            if spans is not None:
                fields[d.spans] = [s.as_dict() for s in spans]
            out.append(Record(fields, r.file, r.line, dict(r.meta)))
        return out

    @classmethod
    def after_redaction(cls, cfg: "Config", fields: dict[str, Any],
                        edits: dict[tuple[Any, ...], list[tuple[int, int, int, int]]]
                        ) -> tuple[dict[str, Any], dict[str, int]]:
        """The spans moved with the text they point into (a malformed list is left for encode to name)."""
        changes, raw = edits.get((cfg.data.text,)), fields.get(cfg.data.spans)
        spans = _loose_spans(raw)
        if not changes or spans is None:
            return fields, {}
        moved, counts = remap_spans(spans, changes)
        return {**fields, cfg.data.spans: [s.as_dict() for s in moved]}, {"records": 1, **counts}

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg: "Config", tokenizer: Any, train_records: list[Record]) -> "TokenClassificationTask":
        """The entity types are those of the training data."""
        probe = cls(tokenizer, [], cfg)
        types = sorted({s.label for r in train_records for s in probe.read(r, labelled=True)[1] or []})
        if not types:
            where = train_records[0].file if train_records else cfg.data.train
            raise DataError(where, None, "no entity in the training data", f"give each record its entities in "
                            f"{preview(cfg.data.spans)} (or {preview(cfg.data.tags)}); an empty list is fine for some")
        return cls(tokenizer, types, cfg, cfg.train.label_smoothing)

    @classmethod
    def from_saved(cls, cfg: "Config", tokenizer: Any, meta: dict[str, Any]) -> "TokenClassificationTask":
        return cls(tokenizer, list(meta["types"]), cfg)

    def metadata(self) -> dict[str, Any]:
        return {"types": self.types, "tags": self.tags, "scheme": "BIO"}

    # ------------------------------------------------------------------ data
    def read(self, r: Record, labelled: bool) -> tuple[str, list[Span] | None, list[tuple[int, int]] | None, str]:
        """(text, spans or None, the record's own word ranges or None, its tagging scheme) of either layout."""
        if self.text_col not in r.fields and self.tokens_col in r.fields:
            tags = self.tags_col if labelled or self.tags_col in r.fields else None
            text, spans, ranges = tokens_record(r, self.tokens_col, tags)
            scheme = scheme_of(r.fields[self.tags_col]) if tags else "BIO"
            return text, spans if labelled else None, ranges, scheme
        text = r.fields.get(self.text_col)
        if not isinstance(text, str) or is_blank(text):
            have = preview_list(sorted(r.fields)) or "none"
            raise DataError(r.file, r.line, f"no text in {preview(self.text_col)} and no words in "
                            f"{preview(self.tokens_col)} (columns: {have})", "set data.text or data.tokens to "
                            "the column holding the text")
        return text, parse_spans(r, text, self.spans_col) if labelled else None, None, "BIO"

    def encode(self, records: list[Record], split: str = "train") -> list[Example]:
        return self._encode(records, split, labelled=True)

    def encode_unlabelled(self, records: list[Record]) -> list[Example]:
        return self._encode(records, "predict", labelled=False)

    def _encode(self, records: list[Record], split: str, labelled: bool) -> list[Example]:
        read = [self.read(r, labelled) for r in records]
        if not read:
            return []
        enc = self.tokenizer([t for t, _, _, _ in read], return_offsets_mapping=True)
        out, off, cut, lost = [], 0, 0, 0
        for i, (r, (text, spans, tokens, scheme)) in enumerate(zip(records, read)):
            word_ids, offsets = enc.word_ids(i), enc["offset_mapping"][i]
            words, index = _words(text, word_ids, offsets)
            if not words:
                raise DataError(r.file, r.line, "the text has no tokens the model can read", "remove the record")
            gold: list[str] = []
            if spans is not None:
                unknown = [s.label for s in spans if f"B-{s.label}" not in self.index]
                if unknown and self.types:
                    raise DataError(r.file, r.line, f"entity type {preview(unknown[0])} in {split} never occurs in "
                                    f"train (train types: {preview_list(self.types)})", "fix the label or add "
                                    "training examples of it")
                entities, misaligned = align(words, spans)
                gold, off = entity_tags(len(words), entities), off + misaligned
            positions = _window(word_ids, self.max_length)
            first = _first_positions(positions, word_ids, offsets, index)
            if len(first) < len(words):
                cut += 1
                lost += len(tag_entities(gold[len(first):])) if gold else 0
            labels = [IGNORE] * len(positions)
            for w, q in enumerate(first):
                if gold and gold[w] in self.index:
                    labels[q] = self.index[gold[w]]
            ids = [enc["input_ids"][i][p] for p in positions]
            out.append(Example(ids, labels, r.where, text, words, first, gold, tokens, scheme))
        self._note(split, len(records), off, cut, lost)
        return out

    def _note(self, split: str, n: int, misaligned: int, cut: int, lost: int) -> None:
        if misaligned:
            self.notes.append(f"{split}: {misaligned} span(s) do not start and end on a token boundary; each is "
                              "learned and scored as the whole words it touches")
        if cut:
            self.notes.append(f"{split}: {cut} of {n} text(s) longer than data.max_length={self.max_length} were "
                              f"cut; {lost} entit{'y' if lost == 1 else 'ies'} past the cut count as missed "
                              "(raise data.max_length)")

    def collate(self, examples: list[Example], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        ids, mask = pad_right([examples[i].ids for i in idx], pad_id(self.tokenizer))
        labels, _ = pad_right([examples[i].labels for i in idx], IGNORE)
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device),
                "n_real": mask.sum()}  # n_real stays on the CPU: counting tokens must not wait for the device

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the labelled sub-tokens (each word's first) of the batch."""
        logits = self.logits(model, batch).float()
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE,
                               label_smoothing=self.label_smoothing)

    # ------------------------------------------------------------------ results
    @torch.no_grad()
    def _tag(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
             dtype: torch.dtype | None) -> tuple[list[list[str]], list[list[float]], float, int]:
        """(tags of every word, their probabilities, loss summed over labelled sub-tokens, how many)."""
        was_training = model.training
        model.eval()
        tags: list[list[str]] = [[] for _ in examples]
        probs: list[list[float]] = [[] for _ in examples]
        total, count = 0.0, 0
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                logits = self.logits(model, batch).float()
            labels = batch["labels"]
            if bool((labels != IGNORE).any()):
                total += float(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                                               reduction="sum"))
                count += int((labels != IGNORE).sum())
            p, best = logits.softmax(-1).max(-1)
            p, best = p.cpu(), best.cpu()
            for j, i in enumerate(idx):
                ex = examples[i]
                tags[i] = [self.tags[int(best[j, q])] for q in ex.first] + [OUTSIDE] * (len(ex.words) - len(ex.first))
                probs[i] = [float(p[j, q]) for q in ex.first] + [1.0] * (len(ex.words) - len(ex.first))
        model.train(was_training)
        return tags, probs, total, count

    def evaluate(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        """Loss, entity-level metrics over every word, and the first mistakes (gold vs predicted spans)."""
        tags, _, total, count = self._tag(model, examples, batch_size, device, dtype)
        metrics = entity_metrics([e.gold for e in examples], tags, self.types)
        metrics["loss"] = total / max(count, 1)
        wrong = [(e, t) for e, t in zip(examples, tags) if t != e.gold][:self.samples]
        metrics["mistakes"] = [{"where": e.where, "text": e.text[:SAMPLE_CHARS],
                                "gold": self._spans(e, e.gold), "predicted": self._spans(e, t)} for e, t in wrong]
        return metrics

    def _spans(self, ex: Example, tags: Sequence[str], probs: Sequence[float] | None = None) -> list[dict[str, Any]]:
        out = []
        for a, b, label in tag_entities(tags):
            span = unit_spans(ex.words, [(a, b, label)])[0].as_dict(ex.text)
            if probs is not None:
                span["score"] = round(sum(probs[a:b + 1]) / (b - a + 1), 4)
            out.append(span)
        return out

    def predict(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                dtype: torch.dtype | None) -> list[dict[str, Any]]:
        """Per example, in input order: the text and its entities as spans (start, end, label, text, score);
        a tokens record also gets a tag per word of its own, in its own scheme."""
        tags, probs, _, _ = self._tag(model, examples, batch_size, device, dtype)
        rows = []
        for ex, t, p in zip(examples, tags, probs):
            row: dict[str, Any] = {"text": ex.text, "spans": self._spans(ex, t, p)}
            if ex.tokens is not None:
                found, _ = align(ex.tokens, unit_spans(ex.words, tag_entities(t)))
                row["tags"] = entity_tags(len(ex.tokens), found, ex.scheme)
            rows.append(row)
        return rows


def _words(text: str, word_ids: list[int | None], offsets: list[tuple[int, int]]
           ) -> tuple[list[tuple[int, int]], dict[int, int]]:
    """(start, end) of every word of the tokenized text, leading spaces trimmed (byte-level BPE offsets
    include them), and each word id's index in that list."""
    spans: dict[int, list[int]] = {}
    for w, (a, b) in zip(word_ids, offsets):
        if w is None or a == b:
            continue
        if w not in spans:
            spans[w] = [a, b]
        spans[w][1] = max(spans[w][1], b)
    words, index = [], {}
    for w in sorted(spans):
        a, b = spans[w]
        while a < b - 1 and text[a].isspace():
            a += 1
        index[w] = len(words)
        words.append((a, b))
    return words, index


def _window(word_ids: list[int | None], max_length: int) -> list[int]:
    """The positions kept within max_length: the first content tokens that fit and every special token."""
    if len(word_ids) <= max_length:
        return list(range(len(word_ids)))
    content = [i for i, w in enumerate(word_ids) if w is not None]
    room = max(1, max_length - (len(word_ids) - len(content)))
    keep = set(content[:room])
    return [i for i, w in enumerate(word_ids) if w is None or i in keep]


def _first_positions(positions: list[int], word_ids: list[int | None], offsets: list[tuple[int, int]],
                     index: dict[int, int]) -> list[int]:
    """For words 0, 1, ... inside the window: the position (in the window) of each one's first sub-token."""
    seen: dict[int, int] = {}
    for q, p in enumerate(positions):
        w = word_ids[p]
        if w is not None and offsets[p][0] != offsets[p][1]:
            seen.setdefault(index[w], q)
    first = []
    while len(first) in seen:
        first.append(seen[len(first)])
    return first


def _loose_spans(raw: Any) -> list[Span] | None:
    """Spans read without checks (what redaction re-maps); None when they are not a list of spans."""
    if not isinstance(raw, list):
        return None
    out = []
    for item in raw:
        triple = (item.get("start"), item.get("end"), item.get("label")) if isinstance(item, dict) else \
            tuple(item) if isinstance(item, list) and len(item) == 3 else (None, None, None)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in triple[:2]):
            return None
        out.append(Span(triple[0], triple[1], triple[2]))
    return out
