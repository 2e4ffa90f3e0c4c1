"""The instruction task: chat-formatted causal-LM fine-tuning with a loss mask, and generation.

Records become conversations (formatting.py) and token ids with labels (conversations.py); evaluation is
evaluating.py. Batches are packed into shared rows (data.packing: true) or length-bucketed and right-padded
(false), so little goes to padding either way;
the loss runs the body, then the lm_head only on supervised positions (lm.py). `auto` packs only for
flash-attention kernels, which attend within each packed example; sdpa and eager attend over the whole row
(masked), so a packed row's attention costs grow with the row, not the example: SmolLM2 LoRA on 2 CPU cores,
8 support-bot examples (~95 tokens) per batch, max_length 512: 202 tokens/s packed, 321-389 bucketed.
`train.batch_size` counts examples either way. Evaluation adds generation metrics on test splits;
generation goes through evaluation/generation.py.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ...data.records import Record
from ...errors import DataError
from ...evaluation.generation import greedy
from ...evaluation.structured import load_schema
from ...models import loading
from ...models.anatomy import body_and_head, model_config
from ...training.device import prefer_eager_attention
from ..base import Task, batch_indices
from ..continued import continue_lm, earlier_formatting, formatting_notes
from .conversations import Conversations
from .evaluating import Evaluation
from .example import FACT_COLUMN, GENERATE_SPLITS, Example  # noqa: F401  (the preference task imports them here)
from .formatting import fit_window  # noqa: F401  (tests import it from here)
from .formatting import (FALLBACK_TEMPLATE, SHAREGPT, Formatting, detect_format, layout_notes, stop_token_ids,
                         template_with_system, text_field)
from .lm import (IGNORE, chunked_cross_entropy, fill_rows, lm_logits, pack_rows, packing_probe, supervised_positions,
                 unpack)

if TYPE_CHECKING:
    from ...config import Config
    from ...data.reference import Reference
    from ...models.loading import ModelSource

FLASH_ATTENTION = ("flash_attention", "kernels-community/flash")  # kernels that attend per packed example
PROBE_MAX_LENGTH = 512  # the forgetting probe's and replay's reference texts are cut to this many tokens


class InstructionTask(Conversations, Evaluation, Task):
    name = "instruction"
    peft_task_type = "CAUSAL_LM"
    auto_class = "AutoModelForCausalLM"
    shards_evaluation = True
    headline = ("exact_match", "token_f1", "rouge_l", "fact_accuracy", "json_validity", "schema_validity",
                "field_f1", "perplexity")  # the json/field metrics come with data.schema
    primary_metric = "rouge_l"
    curve_metric = "rouge_l"  # generated on test splits only: validation curves show the loss alone
    # What `evaluate` computes on validation data (no generation there); `n` and `tokens` are counts.
    metrics = {"loss": "min", "perplexity": "min"}
    generates = True
    pipeline_tag = "text-generation"
    showcase = {"samples": "Sample generations next to the references"}
    output_fields = ("generated",)
    supports_dp = True
    plants_canaries = True

    def __init__(self, tokenizer: Any, fmt: Formatting, packing: bool | str = "auto", max_new_tokens: int = 64,
                 samples: int = 5, schema: Any = None):
        self.tokenizer, self.fmt, self.schema = tokenizer, fmt, schema  # schema: the answers' JSON Schema
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
        return list(dict.fromkeys([d.prompt, d.input, d.response, d.messages, SHAREGPT, "system", d.text,
                                   FACT_COLUMN]))

    @classmethod
    def leakage_columns(cls, cfg: "Config") -> list[str]:
        """The inputs. Instruction data legitimately repeats answers (the same fact asked in new words is what
        a support bot must generalize to), so responses are left out."""
        d = cfg.data
        return list(dict.fromkeys([d.prompt, d.input, d.messages, SHAREGPT, d.text]))

    @classmethod
    def config_problems(cls, cfg: "Config") -> list[str]:
        problems = []
        for key, value in (("replay", cfg.forgetting.replay), ("ewc", cfg.forgetting.ewc)):
            if value and not cfg.forgetting.reference:
                problems.append(f"`forgetting.{key}` = {value} needs reference text: set forgetting.reference: "
                                "builtin or a file")
        return problems

    @classmethod
    def input_layouts(cls, cfg: "Config", labelled: bool) -> tuple[dict[str, list[str]], list[str]]:
        """The layouts `detect_format` tells apart: the first whose leading column the record has."""
        d = cfg.data
        layouts = {"chat": [d.messages], "sharegpt": [SHAREGPT], "pairs": [d.prompt] + ([d.response] if labelled else []),
                   "text": [d.text]}
        return layouts, ([d.format] if d.format != "auto" else ["chat", "sharegpt", "pairs", "text"])

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
        task = cls.build(cfg, tokenizer, fmt, load_schema(d.schema) if d.schema else None)
        if cfg.init_from:  # continuing a language-model run: it must be one, and its layout should be this one
            task.notes += formatting_notes(earlier_formatting(cfg, cls.auto_class), asdict(fmt), cfg.init_from)
        return task

    @classmethod
    def from_saved(cls, cfg: "Config", tokenizer: Any, meta: dict[str, Any]) -> "InstructionTask":
        """At inference time: exactly the formatting training used, from model/tuneforge.json."""
        if not meta.get("formatting"):
            return cls.from_config(cfg, tokenizer)
        return cls.build(cfg, tokenizer, Formatting(**meta["formatting"]), meta.get("schema"))

    @classmethod
    def build(cls, cfg: "Config", tokenizer: Any, fmt: Formatting, schema: dict[str, Any] | None
              ) -> "InstructionTask":
        """The task with `fmt` and `schema` (the config's at training, the saved ones at inference) and the
        config's settings."""
        private = cfg.privacy.dp.epsilon is not None  # DP-SGD needs one example per row (packing: auto → off)
        return cls(tokenizer, fmt, packing=False if private else cfg.data.packing,
                   max_new_tokens=cfg.eval.max_new_tokens,
                   samples=cfg.eval.samples, schema=schema)

    def metadata(self) -> dict[str, Any]:
        """What model/tuneforge.json holds so that inference formats exactly like training."""
        out = {"formatting": asdict(self.fmt), "stop_ids": self.stop_ids}
        return out if self.schema is None else {**out, "schema": self.schema}  # eval scores JSON without the file

    def generation_config(self) -> dict[str, Any]:
        """Greedy, stopping at every end-of-turn id training stops at, as long as evaluation generates."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        return {"eos_token_id": self.stop_ids, "pad_token_id": pad, "bos_token_id": self.tokenizer.bos_token_id,
                "max_new_tokens": self.max_new_tokens, "do_sample": False}

    def portable_chat_template(self) -> str:
        return template_with_system(self.fmt.chat_template, self.fmt.system)

    def intended_use(self, cfg: "Config") -> str:
        return ("Answers prompts in the chat format it was trained with (the template and system prompt are in "
                "the tokenizer of this directory). It knows what its training data taught it and no more: check "
                "its answers on questions like yours, and keep a person in the loop for anything that matters.")

    def load_model(self, cfg: "Config", source: "ModelSource", method: Any) -> nn.Module:
        return loading.load_causal_lm(source, scratch=method.scratch)

    def continue_model(self, model: nn.Module, cfg: "Config") -> nn.Module:
        """`init_from`: the earlier language-model run's merged model, trained on as it is."""
        return continue_lm(model, cfg)

    # ------------------------------------------------------------------ data
    def encode(self, records: list[Record], split: str = "train") -> list[Example]:
        out: list[Example] = []
        cut: dict[str, list[str]] = {}
        self.notes += layout_notes(records, self.fmt, split)
        for r in records:
            kind, msgs = self.messages_of(r)
            if kind == "text":
                out += self._encode_text(r, split)
                continue
            ex, note = self._encode_chat(r, msgs, split)
            out.append(ex)
            if note:
                cut.setdefault(note.split(" ")[0], []).append(r.where)
        self.note_cuts(split, cut)
        return out

    def _encode_chat(self, r: Record, msgs: list[dict[str, str]], split: str) -> tuple[Example, str]:
        w = self.fit_conversation(r, msgs)
        fact = r.fields.get(FACT_COLUMN)
        ex = Example(w.ids, w.labels, r.where, split, w.prompt, w.messages[-1]["content"],
                     fact if isinstance(fact, str) and fact else None,
                     next((m["content"] for m in reversed(w.messages) if m["role"] == "user"), ""))
        return ex, w.note

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

    def private_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each example's mean cross-entropy over its supervised tokens, averaged over the examples (privacy.dp).

        Unlike `loss` (one mean over all the batch's tokens, through the lm_head on gathered positions) every
        layer sees (rows, width, ...) inputs with one example per row, so Opacus's per-example gradients are
        each example's own and one example's length does not weigh the others' (measured cost: full-vocabulary
        logits of the micro-batch, rows × width × vocab floats)."""
        body, head = body_and_head(model)
        kwargs = {k: batch[k] for k in ("input_ids", "position_ids", "attention_mask") if k in batch}
        logits = lm_logits(head, body(**kwargs, use_cache=False)[0], model_config(model))[:, :-1]
        targets = batch["labels"][:, 1:]
        per_token = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        counts = (targets != IGNORE).sum(1).clamp(min=1)
        return (per_token.sum(1) / counts).mean()

    @staticmethod
    def loss_units(batch: dict[str, torch.Tensor]) -> int:
        return int(batch["supervised_at"].numel())  # its shape, known on the CPU: no wait for the device

    def loss_sum(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        head, hidden, targets = self.supervised_states(model, batch)
        if targets.numel() == 0:
            return hidden.sum() * 0.0, 0
        return chunked_cross_entropy(head, hidden, targets, model_config(model)), targets.numel()

    def supervised_states(self, model: nn.Module, batch: dict[str, torch.Tensor]
                          ) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
        """(lm_head, the body's hidden states at each position whose next token is supervised, those tokens)."""
        head, hidden, at, batch = self._supervised(model, batch)
        flat = hidden.reshape(-1, hidden.shape[-1])
        return head, flat[at], batch["labels"].reshape(-1)[at + 1]

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
    def generate(self, model: nn.Module, prompts: list[list[int]], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None, max_new_tokens: int | None = None, streamer: Any = None) -> list[str]:
        """Greedy replies to prompt ids (evaluation/generation.py), each cut at its first stop token."""
        return [self.decode_reply(ids) for ids in self.generate_ids(model, prompts, batch_size, device, dtype,
                                                                     max_new_tokens, streamer)]

    def generate_ids(self, model: nn.Module, prompts: list[list[int]], batch_size: int, device: torch.device,
                     dtype: torch.dtype | None, max_new_tokens: int | None = None, streamer: Any = None,
                     sampling: Any = None) -> list[list[int]]:
        """The ids generated after each prompt (greedy, or as `sampling` asks), stop ids included."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        return greedy(model, prompts, max_new_tokens or self.max_new_tokens, device, dtype, pad, self.stop_ids,
                      batch_size, streamer, sampling)

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
