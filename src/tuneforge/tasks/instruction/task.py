"""The instruction task: chat-formatted causal-LM fine-tuning with a loss mask, and generation.

Records become conversations and token ids with labels (formatting.py). Batches are packed into shared rows
(data.packing: true) or length-bucketed and right-padded (false), so little goes to padding either way;
the loss runs the body, then the lm_head only on supervised positions (lm.py). `auto` packs only for
flash-attention kernels, which attend within each packed example; sdpa and eager attend over the whole row
(masked), so a packed row's attention costs grow with the row, not the example: SmolLM2 LoRA on 2 CPU cores,
8 support-bot examples (~95 tokens) per batch, max_length 512: 202 tokens/s packed, 321-389 bucketed.
`train.batch_size` counts examples either way. Evaluation adds generation metrics on test splits;
generation goes through evaluation/generation.py.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ...data.records import Record
from ...errors import DataError
from ...evaluation.generation import greedy
from ...evaluation.genmetrics import example_scores, generation_metrics, generation_summary, generation_tally
from ...models import loading
from ...models.anatomy import body_and_head, model_config
from ...training.device import autocast, prefer_eager_attention
from ..base import Task, batch_indices
from .formatting import (FALLBACK_TEMPLATE, Formatting, chat_messages, conversation_pieces, detect_format, fit_window,
                         pair_messages, stop_token_ids, text_field)
from .lm import IGNORE, chunked_cross_entropy, fill_rows, pack_rows, packing_probe, supervised_positions, unpack

if TYPE_CHECKING:
    from ...config import Config
    from ...data.reference import Reference
    from ...models.loading import ModelSource

FLASH_ATTENTION = ("flash_attention", "kernels-community/flash")  # kernels that attend per packed example
GENERATE_SPLITS = ("test", "eval")  # splits whose evaluation includes generation (validation: loss only)
FACT_COLUMN = "fact"  # the string a correct answer must contain (fact_accuracy, eval.json samples)
PROBE_MAX_LENGTH = 512  # the forgetting probe's and replay's reference texts are cut to this many tokens


@dataclass
class Example:
    """One training sequence. labels[t] = ids[t] where position t is predicted (loss), else IGNORE."""

    ids: list[int]
    labels: list[int]
    where: str
    split: str = "train"
    prompt: list[int] | None = None      # ids before the final assistant turn (generation input)
    reference: str | None = None         # the final assistant turn's text (generation target)
    fact: str | None = None              # a string a correct answer must contain (fact_accuracy)
    question: str = ""                   # the last user message, for eval.json samples


class InstructionTask(Task):
    name = "instruction"
    peft_task_type = "CAUSAL_LM"
    auto_class = "AutoModelForCausalLM"
    headline = ("exact_match", "token_f1", "rouge_l", "fact_accuracy", "perplexity")
    primary_metric = "rouge_l"
    curve_metric = "rouge_l"  # generated on test splits only: validation curves show the loss alone
    # What `evaluate` computes on validation data (no generation there); `n` and `tokens` are counts.
    metrics = {"loss": "min", "perplexity": "min"}
    generates = True
    showcase = {"samples": "Sample generations next to the references"}
    output_fields = ("generated",)

    def __init__(self, tokenizer: Any, fmt: Formatting, packing: bool | str = "auto", max_new_tokens: int = 64,
                 samples: int = 5):
        self.tokenizer, self.fmt = tokenizer, fmt
        self.packing_setting = packing
        self.packing = packing is True  # `auto` stays unpacked unless prepare_model finds a flash kernel
        self.max_new_tokens, self.samples = max_new_tokens, samples
        self.notes: list[str] = []              # truncation summaries, for the run log
        self._packing_ok: dict[int, bool] = {}  # probe result per model body
        tokenizer.chat_template = fmt.chat_template  # saved with the tokenizer → used at inference
        self.stop_ids = stop_token_ids(tokenizer, fmt.chat_template)

    # ------------------------------------------------------------------ the config's questions
    @classmethod
    def pii_columns(cls, cfg: "Config") -> list[str]:
        """Every text the model sees and every text a run writes out (eval.json samples hold prompt, reference
        and fact). All are redacted with one per-record placeholder map, so a redacted fact still matches
        the redacted answer."""
        d = cfg.data
        return list(dict.fromkeys([d.prompt, d.input, d.response, d.messages, d.text, FACT_COLUMN]))

    @classmethod
    def leakage_columns(cls, cfg: "Config") -> list[str]:
        """The inputs. Instruction data legitimately repeats answers (the same fact asked in new words is what
        a support bot must generalize to), so responses are left out."""
        d = cfg.data
        return list(dict.fromkeys([d.prompt, d.input, d.messages, d.text]))

    @classmethod
    def config_problems(cls, cfg: "Config") -> list[str]:
        problems = []
        if cfg.init_from:
            problems.append("`init_from` continues classification runs (a new head per task); for instruction "
                            "runs point `model:` at the earlier run's model directory instead")
        for key, value in (("replay", cfg.forgetting.replay), ("ewc", cfg.forgetting.ewc)):
            if value and not cfg.forgetting.reference:
                problems.append(f"`forgetting.{key}` = {value} needs reference text: set forgetting.reference: "
                                "builtin or a file")
        return problems

    @classmethod
    def input_layouts(cls, cfg: "Config", labelled: bool) -> tuple[dict[str, list[str]], list[str]]:
        """The layouts `detect_format` tells apart: the first whose leading column the record has."""
        d = cfg.data
        layouts = {"chat": [d.messages], "pairs": [d.prompt] + ([d.response] if labelled else []), "text": [d.text]}
        return layouts, [d.format] if d.format != "auto" else ["chat", "pairs", "text"]

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg: "Config", tokenizer: Any, train_records: list[Record] | None = None
                    ) -> "InstructionTask":
        """At training time: the tokenizer's chat template (or the fallback) and the config's columns."""
        template = tokenizer.chat_template
        if isinstance(template, dict):  # several named templates: the default one chats
            template = template.get("default")
        d = cfg.data
        fmt = Formatting(template or FALLBACK_TEMPLATE, "tokenizer" if template else "fallback", d.format,
                         d.prompt, d.input, d.response, d.messages, d.text, d.system, d.train_on_inputs,
                         d.max_length)
        return cls(tokenizer, fmt, packing=cfg.data.packing, max_new_tokens=cfg.eval.max_new_tokens,
                   samples=cfg.eval.samples)

    @classmethod
    def from_saved(cls, cfg: "Config", tokenizer: Any, meta: dict[str, Any]) -> "InstructionTask":
        """At inference time: exactly the formatting training used, from model/tuneforge.json."""
        if not meta.get("formatting"):
            return cls.from_config(cfg, tokenizer)
        return cls(tokenizer, Formatting(**meta["formatting"]), packing=cfg.data.packing,
                   max_new_tokens=cfg.eval.max_new_tokens, samples=cfg.eval.samples)

    def metadata(self) -> dict[str, Any]:
        """What model/tuneforge.json holds so that inference formats exactly like training."""
        return {"formatting": asdict(self.fmt), "stop_ids": self.stop_ids}

    def load_model(self, cfg: "Config", source: "ModelSource", method: Any) -> nn.Module:
        return loading.load_causal_lm(source, scratch=method.scratch)

    # ------------------------------------------------------------------ formatting
    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def conversation_ids(self, messages: list[dict[str, str]],
                         add_generation_prompt: bool = False) -> tuple[list[int], list[int], list[list[int]]]:
        """Token ids of a conversation with labels, and the ids of each piece.

        Pieces are tokenized separately, so the ids before a response are exactly what inference sees.
        """
        pieces = conversation_pieces(messages, self.render, add_generation_prompt)
        parts = self._tokenize([p.text for p in pieces])
        ids: list[int] = []
        labels: list[int] = []
        for piece, toks in zip(pieces, parts):
            ids += toks
            labels += toks if (piece.trains or self.fmt.train_on_inputs) else [IGNORE] * len(toks)
        return ids, labels, parts

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The generation input for a conversation that ends with a user turn (predict, chat)."""
        ids, _, _ = self.conversation_ids(messages, add_generation_prompt=True)
        return ids[-self.fmt.max_length:]

    def messages_of(self, r: Record, with_response: bool = True) -> tuple[str, list[dict[str, str]]]:
        f = self.fmt
        kind = detect_format(r, f.format, f.prompt, f.response, f.messages, f.text)
        if kind == "chat":
            return kind, chat_messages(r, f.messages, f.system)
        if kind == "pairs":
            return kind, pair_messages(r, f.prompt, f.input, f.response if with_response else None, f.system)
        return kind, []

    # ------------------------------------------------------------------ data
    def encode(self, records: list[Record], split: str = "train") -> list[Example]:
        out: list[Example] = []
        cut: dict[str, list[str]] = {}
        for r in records:
            kind, msgs = self.messages_of(r)
            if kind == "text":
                out += self._encode_text(r, split)
                continue
            ex, note = self._encode_chat(r, msgs, split)
            out.append(ex)
            if note:
                cut.setdefault(note.split(" ")[0], []).append(r.where)
        for what, where in cut.items():
            self.notes.append(f"{split}: {len(where)} example(s) longer than data.max_length={self.fmt.max_length}: "
                              f"{what} cut ({', '.join(where[:3])}{', …' if len(where) > 3 else ''})")
        return out

    def _encode_chat(self, r: Record, msgs: list[dict[str, str]], split: str) -> tuple[Example, str]:
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None:
            raise DataError(r.file, r.line, "no assistant message to learn from", "add the expected answer")
        msgs = msgs[:last + 1]  # trailing user turns carry no loss
        ids, labels, parts = self.conversation_ids(msgs)
        start = len(ids) - len(parts[-1])  # parts: [..., final prompt, final response]
        if not parts[-1]:
            raise DataError(r.file, r.line, "the response is empty", "fill in the answer")
        # The prompt may shrink from the left down to its last turn (≤ half the window), never below
        # the assistant header that generation starts from.
        floor = max(self._header_length(msgs[:last]), min(len(parts[-2]), self.fmt.max_length // 2))
        prompt = ids[:start][-self.fmt.max_length:]
        ids, labels, note = fit_window(ids, labels, start, floor, self.fmt.max_length, r.where)
        labels = [IGNORE] + labels[1:]  # the first token has nothing before it to predict it from
        fact = r.fields.get(FACT_COLUMN)
        ex = Example(ids, labels, r.where, split, prompt, msgs[-1]["content"],
                     fact if isinstance(fact, str) and fact else None,
                     next((m["content"] for m in reversed(msgs) if m["role"] == "user"), ""))
        return ex, note

    def _header_length(self, prompt_msgs: list[dict[str, str]]) -> int:
        """Tokens the template adds to open an assistant turn (generation starts right after them)."""
        bare, head = self.render(prompt_msgs, False), self.render(prompt_msgs, True)
        return len(self._tokenize([head[len(bare):]])[0]) if head.startswith(bare) else 1

    def _encode_text(self, r: Record, split: str) -> list[Example]:
        """Continued pre-training: every token trains; long texts become several max_length windows."""
        text = text_field(r, self.fmt.text, "text")
        ids = self.tokenizer(text)["input_ids"]
        if self.tokenizer.eos_token_id is not None:
            ids = ids + [self.tokenizer.eos_token_id]
        n = self.fmt.max_length
        return [Example(w, [IGNORE] + w[1:], r.where, split) for w in (ids[i:i + n] for i in range(0, len(ids), n))
                if len(w) > 1]

    def encode_unlabelled(self, records: list[Record]) -> list[Example]:
        """For predict: the prompt (data.prompt, + data.input) or a chat whose last turn is the user's."""
        out = []
        for r in records:
            kind, msgs = self.messages_of(r, with_response=False)
            if kind == "text":
                raise DataError(r.file, r.line, f"no '{self.fmt.prompt}' or '{self.fmt.messages}' to answer")
            while msgs and msgs[-1]["role"] == "assistant":
                msgs = msgs[:-1]
            prompt = self.prompt_ids(msgs)
            user = next((m["content"] for m in reversed(msgs) if m["role"] == "user"), "")
            out.append(Example(prompt, [IGNORE] * len(prompt), r.where, "predict", prompt, question=user))
        return out

    # ------------------------------------------------------------------ batches
    def batches(self, examples: list[Example], batch_size: int, shuffle: bool = False,
                seed: int = 0) -> list[list[int]]:
        """Index lists of `batch_size` examples (packed into rows by collate when packing is on).

        Unpacked, examples are length-bucketed so that little goes to padding.
        """
        return batch_indices([len(e.ids) for e in examples], batch_size, shuffle, seed, by_length=not self.packing)

    def collate(self, examples: list[Example], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        """Tensors (rows, width): input_ids, labels, position_ids, real (1 = a real token) [, attention_mask].

        Packed batches have no attention_mask: position_ids restarting at 0 separate the examples (and the
        padding at a row's end forms its own block). Unpacked batches are right-padded with a mask.
        """
        seqs = [examples[i] for i in idx]
        rows = pack_rows([len(e.ids) for e in seqs], self.fmt.max_length) if self.packing \
            else [[j] for j in range(len(seqs))]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = fill_rows([(e.ids, e.labels) for e in seqs], rows, pad)
        if not self.packing:
            batch["attention_mask"] = batch["real"].clone()
        batch["supervised_at"] = supervised_positions(batch["labels"])
        out = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "example"}
        out["example"] = batch["example"]  # stays on the CPU, like n_real: only evaluation reads it
        out["n_real"] = batch["real"].sum()  # stays on the CPU: counting tokens must not wait for the accelerator
        return out

    # ------------------------------------------------------------------ loss
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the supervised tokens of the batch."""
        total, count = self.loss_sum(model, batch)
        return total / max(count, 1)

    def loss_sum(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        head, hidden, at, batch = self._supervised(model, batch)
        if at.numel() == 0:
            return hidden.sum() * 0.0, 0
        flat = hidden.reshape(-1, hidden.shape[-1])
        targets = batch["labels"].reshape(-1)[at + 1]
        return chunked_cross_entropy(head, flat[at], targets, model_config(model)), at.numel()

    def example_losses(self, model: nn.Module, batch: dict[str, torch.Tensor],
                       n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed loss, supervised tokens) of each of the batch's n examples, on the CPU (evaluation)."""
        head, hidden, at, batch = self._supervised(model, batch)
        sums, counts = torch.zeros(n), torch.zeros(n)
        if at.numel() == 0:
            return sums, counts
        flat = hidden.reshape(-1, hidden.shape[-1])
        targets = batch["labels"].reshape(-1)[at + 1]
        losses = chunked_cross_entropy(head, flat[at], targets, model_config(model), reduction="none")
        which = batch["example"].reshape(-1)[at.cpu() + 1].cpu()
        sums.index_add_(0, which, losses.float().cpu())
        counts.index_add_(0, which, torch.ones(len(which)))
        return sums, counts

    def _supervised(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[nn.Module, torch.Tensor,
                                                                                  torch.Tensor, dict[str, Any]]:
        """(lm_head, hidden states (rows, width, d), supervised flat positions, the batch as run)."""
        body, head = body_and_head(model)
        if not self._ready(body) and "attention_mask" not in batch:
            batch = unpack(batch)
        kwargs = {k: batch[k] for k in ("input_ids", "position_ids", "attention_mask") if k in batch}
        hidden = body(**kwargs, use_cache=False)[0]                       # (rows, width, d)
        # Flat positions t whose next token t+1 is supervised; collate found them on the CPU, so neither
        # the count nor the gather waits for the accelerator (a boolean mask here would).
        at = batch.get("supervised_at")
        if at is None:
            at = supervised_positions(batch["labels"])
        return head, hidden, at, batch

    def prepare_model(self, model: nn.Module) -> str:
        """Once, before training and before any compilation: pick the attention kernel, settle data.packing
        for it (auto: pack only for flash kernels) and, when packing, probe that examples stay apart.
        Returns a line for the run log naming the kernel that will really run."""
        body = body_and_head(model)[0]
        prefer_eager_attention(body, self.fmt.max_length)
        impl = getattr(body.config, "_attn_implementation", None) or "unknown"
        if self.packing_setting == "auto":
            self.packing = impl.startswith(FLASH_ATTENTION)
        if self.packing:
            self._ready(body)  # the probe's tiny shapes run now, not inside a compiled model
        layout = "packed rows" if self.packing else "length-bucketed padded batches"
        return f"data.packing {str(self.packing_setting).lower()}: {layout}, {impl} attention"

    def _ready(self, body: nn.Module) -> bool:
        """Once per model body: pick the attention kernel, then check that packing keeps examples apart."""
        key = id(body)
        if key not in self._packing_ok:
            prefer_eager_attention(body, self.fmt.max_length)
            self._packing_ok[key] = packing_probe(body)
            if not self._packing_ok[key]:
                self.notes.append("packing: this model does not separate packed examples by position_ids; "
                                  "training unpacked (padded) instead")
        return self._packing_ok[key]

    # ------------------------------------------------------------------ evaluation and generation
    def evaluate(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None, generate: bool | None = None) -> dict[str, Any]:
        """Loss and perplexity on the supervised tokens; generation metrics too on test/eval splits.
        `generate=None` generates for examples from GENERATE_SPLITS that have a reference, so validation
        during training stays cheap (loss only) while base/final test evaluations compare generations."""
        return self.evaluate_rows(model, examples, batch_size, device, dtype, generate)[0]

    @torch.no_grad()
    def evaluate_rows(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                      dtype: torch.dtype | None, generate: bool | None = None
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """`evaluate`'s metrics and a row per example: its loss and tokens, and where it was generated,
        the prompt, reference, answer and the answer's scores."""
        was_training = model.training
        model.eval()
        losses, tokens = torch.zeros(len(examples)), torch.zeros(len(examples))
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                s, n = self.example_losses(model, batch, len(idx))
            losses[idx], tokens[idx] = losses[idx] + s, tokens[idx] + n
        count = int(tokens.sum())
        loss = float(losses.sum()) / max(count, 1)
        out: dict[str, Any] = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "n": len(examples),
                               "tokens": count}
        rows = [{"where": e.where, "length": len(e.prompt or e.ids), "loss": round(float(losses[i]), 4),
                 "tokens": int(tokens[i])} for i, e in enumerate(examples)]
        gen = [i for i, e in enumerate(examples) if e.reference is not None and e.prompt]
        if generate is None:
            generate = bool(gen) and all(examples[i].split in GENERATE_SPLITS for i in gen)
        if generate and gen:
            out.update(self._generation_report(model, [examples[i] for i in gen], [rows[i] for i in gen],
                                               batch_size, device, dtype))
        model.train(was_training)
        return out, rows

    def _generation_report(self, model: nn.Module, examples: list[Example], rows: list[dict[str, Any]],
                           batch_size: int, device: torch.device, dtype: torch.dtype | None) -> dict[str, Any]:
        """Generation metrics and samples; each example's row gets its prompt, reference, answer and scores."""
        outputs = self.generate(model, [e.prompt or [] for e in examples], batch_size, device, dtype)
        metrics: dict[str, Any] = generation_metrics(outputs, [e.reference or "" for e in examples],
                                                     [e.fact for e in examples])
        for e, o, row in zip(examples, outputs, rows):
            row.update({"prompt": e.question, "reference": e.reference, "generated": o,
                        **({"fact": e.fact} if e.fact else {}), **example_scores(o, e.reference or "", e.fact)})
        metrics["samples"] = [{"where": e.where, "prompt": e.question, "reference": e.reference,
                               "generated": o, **({"fact": e.fact} if e.fact else {})}
                              for e, o in list(zip(examples, outputs))[:self.samples]]
        return metrics

    @classmethod
    def tally(cls, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        return generation_tally(rows) if rows else None

    @classmethod
    def summarize(cls, sums: dict[str, Any]) -> dict[str, Any]:
        return generation_summary(sums)

    def generate(self, model: nn.Module, prompts: list[list[int]], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None, max_new_tokens: int | None = None, streamer: Any = None) -> list[str]:
        """Greedy replies to prompt ids (evaluation/generation.py), each cut at its first stop token."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        new = greedy(model, prompts, max_new_tokens or self.max_new_tokens, device, dtype, pad, self.stop_ids,
                     batch_size, streamer)
        return [self.decode_reply(ids) for ids in new]

    def decode_reply(self, new_ids: list[int]) -> str:
        """Generated ids up to the first stop token, as text."""
        for k, t in enumerate(new_ids):
            if t in self.stop_ids:
                new_ids = new_ids[:k]
                break
        return self.tokenizer.decode(new_ids, skip_special_tokens=True).strip()

    @torch.no_grad()
    def predict(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                dtype: torch.dtype | None) -> list[dict[str, Any]]:
        """Per example, in input order: the prompt and the generated response."""
        outputs = self.generate(model, [e.prompt or e.ids for e in examples], batch_size, device, dtype)
        return [{"prompt": e.question, "response": o} for e, o in zip(examples, outputs)]

    # ------------------------------------------------------------------ the forgetting guard's questions
    def forgetting_probe(self, ref: "Reference", cfg: "Config", device: torch.device,
                         dtype: torch.dtype | None) -> Any | None:
        """Perplexity on general text, and on the base model's own answers to general prompts."""
        from ...guards.probes import LMProbe

        return LMProbe(ref, self.tokenizer, min(cfg.data.max_length, PROBE_MAX_LENGTH), cfg.forgetting.samples,
                       cfg.eval.max_new_tokens, device, dtype)

    def replay_source(self, ref: "Reference | None", cfg: "Config") -> tuple[Any, list[Any]] | None:
        """The reference texts the probe does not measure, as plain causal-LM examples."""
        from ..textlm import TextLM

        if ref is None or not ref.texts:
            return None
        lm = TextLM(self.tokenizer, min(cfg.data.max_length, PROBE_MAX_LENGTH))
        return lm, lm.encode(ref.training_texts(cfg.forgetting.samples))
