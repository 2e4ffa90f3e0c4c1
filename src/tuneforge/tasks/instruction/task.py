"""Instruction fine-tuning of causal LMs: records → chat-formatted token ids with a loss mask → packed batches.

Data formats (data.format, `auto` decides per record):
- pairs: `instruction` (+ optional `input`) → `output`   (data.prompt / data.input / data.response)
- chat:  OpenAI-style `messages` [{role: system|user|assistant, content}], multi-turn   (data.messages)
- text:  plain `text` for continued pre-training; every token trains   (data.text)

Formatting uses the tokenizer's own chat template. A tokenizer without one gets FALLBACK_TEMPLATE (the
Zephyr layout `<|user|>\\n…</s>\\n<|assistant|>\\n…</s>\\n`, with the tokenizer's eos). Whichever template
trains is set on the tokenizer, so it is saved with it in model/ and inference renders exactly the same.

A conversation is rendered turn by turn: the text before each assistant turn (prompt) and the assistant
turn itself (content + end-of-turn) are tokenized as separate pieces, so the ids a prompt has at inference
are exactly the ids that preceded the response in training (`conversation_ids`). Loss falls on every
assistant turn only, unless data.train_on_inputs.

Packing (data.packing: true): the examples of a micro-batch are packed first-fit into rows of at most
data.max_length tokens; position_ids restart at 0 for each example and no attention mask is passed, which
makes transformers (5.x, sdpa and eager) build a block-diagonal causal mask from the restarts — no example
attends to another. A one-off probe per model checks that this really holds; models that fail it train
unpacked (right-padded rows with an attention mask). `train.batch_size` counts examples either way.
Unpacked (false), batches are length-bucketed, so little goes to padding either. `auto` packs only for
flash-attention kernels, which attend within each packed example; sdpa and eager attend over the whole
row (masked), so a packed row's attention costs grow with the row, not the example: SmolLM2 LoRA on 2 CPU
cores, 8 support-bot examples (~95 tokens) per batch, max_length 512: 202 tokens/s packed, 321-389 bucketed.

The loss runs the model body, then the lm_head only on supervised positions, in chunks: full-vocabulary
logits for every position are never materialized.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...data.records import Record
from ...training.device import autocast, prefer_eager_attention
from ...errors import DataError, TuneforgeError

IGNORE = -100                 # label of a position that carries no loss (the Hugging Face convention)
FLASH_ATTENTION = ("flash_attention", "kernels-community/flash")  # kernels that attend per packed example
CE_CHUNK = 1024               # supervised positions per lm_head + cross-entropy chunk
GENERATE_SPLITS = ("test", "eval")  # splits whose evaluation includes generation (validation: loss only)
ROLES = ("system", "user", "assistant")
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


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


@dataclass
class Piece:
    text: str
    trains: bool          # an assistant turn: its tokens carry the loss


# ---------------------------------------------------------------------------- records → messages

def detect_format(r: Record, fmt: str, prompt: str, response: str, messages: str, text: str) -> str:
    """The layout of one record: the configured one, or (auto) the first whose columns it has."""
    if fmt != "auto":
        return fmt
    if messages in r.fields:
        return "chat"
    if prompt in r.fields:
        return "pairs"
    if text in r.fields:
        return "text"
    have = ", ".join(sorted(r.fields)) or "none"
    raise DataError(r.file, r.line, f"no '{messages}', '{prompt}' or '{text}' column (columns: {have})",
                    "set data.prompt/data.response, data.messages or data.text to your column names")


def _text_field(r: Record, column: str, what: str, required: bool = True) -> str | None:
    value = r.fields.get(column)
    if value is None or value == "":
        if required:
            raise DataError(r.file, r.line, f"missing or empty {what} column '{column}'",
                            f"fill it, or point data.{what} at the right column")
        return None
    if not isinstance(value, str):
        raise DataError(r.file, r.line, f"{what} column '{column}' is {type(value).__name__}, expected text")
    return value


def _content(r: Record, i: int, m: Any) -> dict[str, str]:
    """One OpenAI-style message, validated; list-of-parts content is joined."""
    if not isinstance(m, dict) or "role" not in m or "content" not in m:
        raise DataError(r.file, r.line, f"message {i} is not an object with 'role' and 'content'",
                        'write {"role": "user", "content": "..."}')
    role, content = m["role"], m["content"]
    if role not in ROLES:
        raise DataError(r.file, r.line, f"message {i} has role {role!r}", f"use one of {', '.join(ROLES)}")
    if isinstance(content, list):  # [{"type": "text", "text": "..."}]
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise DataError(r.file, r.line, f"message {i} content is {type(content).__name__}, expected text")
    return {"role": role, "content": content}


def chat_messages(r: Record, column: str, system: str | None) -> list[dict[str, str]]:
    raw = r.fields.get(column)
    if isinstance(raw, str):  # CSV cells hold the list as JSON text
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise DataError(r.file, r.line, f"'{column}' is text that is not a JSON list of messages") from None
    if not isinstance(raw, list) or not raw:
        raise DataError(r.file, r.line, f"'{column}' must be a non-empty list of messages")
    msgs = [_content(r, i, m) for i, m in enumerate(raw)]
    if system and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": system})
    first = next((m["role"] for m in msgs if m["role"] != "system"), None)
    if first == "assistant":
        raise DataError(r.file, r.line, "the conversation starts with an assistant message",
                        "start with a user message")
    return msgs


def pair_messages(r: Record, prompt: str, inp: str, response: str | None,
                  system: str | None) -> list[dict[str, str]]:
    """instruction (+ input, after a blank line) as the user turn; output as the assistant turn."""
    user = _text_field(r, prompt, "prompt")
    extra = _text_field(r, inp, "input", required=False)
    msgs = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": user + (f"\n\n{extra}" if extra else "")})
    if response is not None:
        msgs.append({"role": "assistant", "content": _text_field(r, response, "response")})
    return msgs


# ---------------------------------------------------------------------------- messages → pieces → ids

def conversation_pieces(messages: list[dict[str, str]], render: Callable[..., str],
                        add_generation_prompt: bool = False) -> list[Piece]:
    """The rendered conversation cut at assistant-turn boundaries: prompt pieces and assistant pieces.

    Relies on the template being prefix-stable (rendering the first k messages is a prefix of rendering
    k+1), which holds for the common templates; one that is not gets a clear error instead of bad masks.
    """
    pieces: list[Piece] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        head, full = render(messages[:i], True), render(messages[:i + 1], False)
        _check_prefix(done, head)
        _check_prefix(head, full)
        pieces += [Piece(head[len(done):], False), Piece(full[len(head):], True)]
        done = full
    tail = render(messages, add_generation_prompt) if messages[-1]["role"] != "assistant" or \
        add_generation_prompt else done
    _check_prefix(done, tail)
    if tail[len(done):]:
        pieces.append(Piece(tail[len(done):], False))
    return [p for p in pieces if p.text]


def _check_prefix(prefix: str, text: str) -> None:
    if not text.startswith(prefix):
        raise TuneforgeError("the chat template renders earlier turns differently once later turns are added, "
                             "so assistant turns cannot be located for the loss mask; use a model whose "
                             f"template is prefix-stable (first mismatch near {prefix[-40:]!r})")


def fit_window(ids: list[int], labels: list[int], start: int, floor: int, max_length: int,
               where: str) -> tuple[list[int], list[int], str]:
    """Cut a sequence to max_length without silently losing its response.

    `start` is where the final response begins and `floor` how many prompt tokens right before it must stay
    (at least the assistant header). First the prompt is cut from the left; if the response alone is too
    long its beginning is kept (and a note returned); if nothing of it fits, DataError.
    """
    if len(ids) <= max_length:
        return ids, labels, ""
    if len(ids) - start + floor <= max_length:
        cut = len(ids) - max_length
        return ids[cut:], labels[cut:], "prompt cut from the left"
    room = max_length - floor
    if room <= 0:
        raise DataError(*_split_where(where), f"nothing of the response fits in data.max_length={max_length} "
                        f"after the {floor} prompt tokens that must stay", "raise data.max_length")
    begin = start - floor
    return ids[begin:begin + max_length], labels[begin:begin + max_length], \
        f"response cut to its first {room} tokens"


def _split_where(where: str) -> tuple[str, int | None]:
    file, _, line = where.rpartition(":")
    return (file, int(line)) if line.isdigit() else (where, None)


# ---------------------------------------------------------------------------- the task

@dataclass
class Formatting:
    """What must be identical at training and inference: template, system prompt, columns, lengths."""

    chat_template: str
    template_source: str            # "tokenizer" or "fallback"
    format: str = "auto"
    prompt: str = "instruction"
    input: str = "input"
    response: str = "output"
    messages: str = "messages"
    text: str = "text"
    system: str | None = None
    train_on_inputs: bool = False
    max_length: int = 256


class InstructionTask:
    name = "instruction"
    # What `evaluate` computes on validation data (no generation there); `n` and `tokens` are counts.
    validation_metrics = ("loss", "perplexity")

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

    @classmethod
    def from_config(cls, cfg: Any, tokenizer: Any, saved: dict[str, Any] | None = None) -> "InstructionTask":
        """From the config at training time; from model/tuneforge.json (`saved`) at inference time."""
        if saved and saved.get("formatting"):
            fmt = Formatting(**saved["formatting"])
        else:
            template = tokenizer.chat_template
            if isinstance(template, dict):  # several named templates: the default one chats
                template = template.get("default")
            d = cfg.data
            fmt = Formatting(template or FALLBACK_TEMPLATE, "tokenizer" if template else "fallback", d.format,
                             d.prompt, d.input, d.response, d.messages, d.text, d.system, d.train_on_inputs,
                             d.max_length)
        return cls(tokenizer, fmt, packing=cfg.data.packing, max_new_tokens=cfg.eval.max_new_tokens,
                   samples=cfg.eval.samples)

    def metadata(self) -> dict[str, Any]:
        """What model/tuneforge.json holds so that inference formats exactly like training."""
        return {"formatting": asdict(self.fmt), "stop_ids": self.stop_ids}

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
        fact = r.fields.get("fact")
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
        text = _text_field(r, self.fmt.text, "text")
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
        order = list(range(len(examples)))
        rng = random.Random(seed)
        if shuffle:
            rng.shuffle(order)
        if self.packing:
            return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        chunk, out = batch_size * 32, []
        for s in range(0, len(order), chunk):
            part = sorted(order[s:s + chunk], key=lambda i: len(examples[i].ids))
            out += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        if shuffle:
            rng.shuffle(out)
        return out

    def collate(self, examples: list[Example], idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        """Tensors (rows, width): input_ids, labels, position_ids, real (1 = a real token) [, attention_mask].

        Packed batches have no attention_mask: position_ids restarting at 0 separate the examples (and the
        padding at a row's end forms its own block). Unpacked batches are right-padded with a mask.
        """
        seqs = [examples[i] for i in idx]
        rows = pack_rows([len(e.ids) for e in seqs], self.fmt.max_length) if self.packing \
            else [[j] for j in range(len(seqs))]
        width = max(sum(len(seqs[j].ids) for j in row) for row in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        real = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            at = 0
            for j in row:
                n = len(seqs[j].ids)
                ids[r, at:at + n] = torch.tensor(seqs[j].ids)
                labels[r, at:at + n] = torch.tensor(seqs[j].labels)
                pos[r, at:at + n] = torch.arange(n)
                real[r, at:at + n] = 1
                at += n
            pos[r, at:] = torch.arange(width - at)  # padding: a block of its own
        batch = {"input_ids": ids, "labels": labels, "position_ids": pos, "real": real}
        if not self.packing:
            batch["attention_mask"] = real.clone()
        batch["supervised_at"] = supervised_positions(labels)
        out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        out["n_real"] = real.sum()  # stays on the CPU: counting tokens must not wait for the accelerator
        return out

    @staticmethod
    def tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["n_real"]

    # ------------------------------------------------------------------ loss
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the supervised tokens of the batch."""
        total, count = self.loss_sum(model, batch)
        return total / max(count, 1)

    def loss_sum(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
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
        if at.numel() == 0:
            return hidden.sum() * 0.0, 0
        flat = hidden.reshape(-1, hidden.shape[-1])
        targets = batch["labels"].reshape(-1)[at + 1]
        return chunked_cross_entropy(head, flat[at], targets, model_config(model)), at.numel()

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
    @torch.no_grad()
    def evaluate(self, model: nn.Module, examples: list[Example], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None, generate: bool | None = None) -> dict[str, Any]:
        """Loss and perplexity on the supervised tokens; generation metrics too on test/eval splits.

        `generate=None` generates for examples from GENERATE_SPLITS that have a reference, so validation
        during training stays cheap (loss only) while base/final test evaluations compare generations.
        """
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                s, n = self.loss_sum(model, batch)
            total, count = total + float(s), count + n
        loss = total / max(count, 1)
        out: dict[str, Any] = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "n": len(examples),
                               "tokens": count}
        gen = [e for e in examples if e.reference is not None and e.prompt]
        if generate is None:
            generate = bool(gen) and all(e.split in GENERATE_SPLITS for e in gen)
        if generate and gen:
            out.update(self._generation_report(model, gen, batch_size, device, dtype))
        model.train(was_training)
        return out

    def _generation_report(self, model: nn.Module, examples: list[Example], batch_size: int,
                           device: torch.device, dtype: torch.dtype | None) -> dict[str, Any]:
        from ...evaluation.genmetrics import generation_metrics

        outputs = self.generate(model, [e.prompt or [] for e in examples], batch_size, device, dtype)
        metrics: dict[str, Any] = generation_metrics(outputs, [e.reference or "" for e in examples],
                                                     [e.fact for e in examples])
        metrics["samples"] = [{"where": e.where, "prompt": e.question, "reference": e.reference,
                               "generated": o, **({"fact": e.fact} if e.fact else {})}
                              for e, o in list(zip(examples, outputs))[:self.samples]]
        return metrics

    @torch.no_grad()
    def generate(self, model: nn.Module, prompts: list[list[int]], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None, max_new_tokens: int | None = None) -> list[str]:
        """Greedy decoding with KV cache, batched with left padding (similar lengths batched together)."""
        from transformers import GenerationConfig

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        config = GenerationConfig(max_new_tokens=max_new_tokens or self.max_new_tokens, do_sample=False,
                                  pad_token_id=pad, eos_token_id=self.stop_ids)
        was_training = model.training
        model.eval()
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out = [""] * len(prompts)
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[r, width - len(prompts[i]):] = 1
            with autocast(device, dtype):
                gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     generation_config=config)
            for r, i in enumerate(idx):
                out[i] = self.decode_reply(gen[r, width:].tolist())
        model.train(was_training)
        return out

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


# ---------------------------------------------------------------------------- helpers

def stop_token_ids(tokenizer: Any, template: str) -> list[int]:
    """eos plus any end-of-turn special token the template writes (e.g. <|im_end|>, <|eot_id|>)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    specials = set(getattr(tokenizer, "all_special_tokens", [])) | set(tokenizer.get_added_vocab())
    for tok in sorted(specials):
        low = tok.lower()
        if tok in template and ("end" in low or "eot" in low):
            tid = tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid not in ids:
                ids.append(tid)
    if not ids:
        raise TuneforgeError("the tokenizer has no eos token, so generation could never stop; set one")
    return ids


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: indices into `lengths` grouped into rows of at most `capacity` tokens."""
    rows: list[list[int]] = []
    room: list[int] = []
    for j in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        k = next((k for k, free in enumerate(room) if free >= lengths[j]), None)
        if k is None:
            rows.append([j])
            room.append(max(capacity, lengths[j]) - lengths[j])
        else:
            rows[k].append(j)
            room[k] -= lengths[j]
    return rows


def supervised_positions(labels: torch.Tensor) -> torch.Tensor:
    """Indices into labels.reshape(-1) of the positions t whose next token (t + 1, same row) has a label.

    The last column never qualifies: its next token is in the next row.
    """
    keep = labels != IGNORE
    keep[:, 0] = False  # no position predicts a row's first token
    return keep.reshape(-1).nonzero().squeeze(1) - 1


def unpack(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A packed batch re-laid as one right-padded row per example (for models that cannot pack)."""
    segs = []
    for r in range(batch["input_ids"].shape[0]):
        starts = (batch["position_ids"][r] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
        segs += [(r, a, b) for a, b in zip(starts, starts[1:]) if batch["real"][r, a]]
    width = max(b - a for _, a, b in segs)
    out = {k: torch.zeros((len(segs), width), dtype=torch.long, device=batch["input_ids"].device)
           for k in ("input_ids", "position_ids", "real")}
    out["labels"] = torch.full_like(out["input_ids"], IGNORE)
    for s, (r, a, b) in enumerate(segs):
        for k in ("input_ids", "labels", "position_ids", "real"):
            out[k][s, :b - a] = batch[k][r, a:b]
    out["attention_mask"] = out["real"].clone()
    return out


def body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The transformer body (hidden states) and the lm_head, through a PEFT wrapper if there is one."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    body, head = core.base_model, core.get_output_embeddings()
    if body is core or head is None:
        raise TuneforgeError(f"{type(core).__name__} is not a causal LM with a separate body and lm_head")
    return body, head


def model_config(model: nn.Module) -> Any:
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    return core.config


def chunked_cross_entropy(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                          config: Any = None, chunk: int = CE_CHUNK) -> torch.Tensor:
    """Sum of cross-entropy of head(hidden) vs targets, CE_CHUNK positions at a time.

    With several chunks under autograd each chunk is checkpointed: only one chunk's logits
    (chunk × vocab) exist at any time, at the price of recomputing the head in backward.
    """
    scale = getattr(config, "logit_scale", None)
    cap = getattr(config, "final_logit_softcapping", None)

    def ce_sum(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = head(h).float()
        if scale:
            logits = logits * scale
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return F.cross_entropy(logits, y, reduction="sum")

    many = hidden.shape[0] > chunk and torch.is_grad_enabled()
    total = hidden.new_zeros((), dtype=torch.float32)
    for s in range(0, hidden.shape[0], chunk):
        h, y = hidden[s:s + chunk], targets[s:s + chunk]
        part = torch.utils.checkpoint.checkpoint(ce_sum, h, y, use_reentrant=False) if many else ce_sum(h, y)
        total = total + part
    return total


@torch.no_grad()
def packing_probe(body: nn.Module) -> bool:
    """Whether the body keeps packed examples apart: example b's hidden states alone vs. packed after a."""
    was_training = body.training
    body.eval()
    try:
        device = next(body.parameters()).device
        a, b = torch.arange(3, 8, device=device)[None], torch.arange(10, 16, device=device)[None]
        alone = body(input_ids=b, use_cache=False)[0]
        pos = torch.cat([torch.arange(a.shape[1]), torch.arange(b.shape[1])]).to(device)[None]
        packed = body(input_ids=torch.cat([a, b], 1), position_ids=pos, use_cache=False)[0][:, a.shape[1]:]
        return torch.allclose(alone.float(), packed.float(), atol=1e-3, rtol=1e-3)
    except (TypeError, ValueError, RuntimeError):  # a body without position_ids, or that rejects them
        return False
    finally:
        body.train(was_training)
