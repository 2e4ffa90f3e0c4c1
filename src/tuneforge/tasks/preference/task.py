"""The preference task: an instruction task whose examples are two completions of one prompt, or one completion
with a label, and whose loss is a preference objective (objectives.py) instead of the NLL.

Records: a context — `data.prompt` (+ `data.input`) or a `data.messages` conversation ending with a user turn,
`data.system` in front as for instruction — and either `data.chosen` + `data.rejected` (a pair) or
`data.completion` + `data.label` (true/false: desirable or not; KTO). Each completion is rendered with the
context by the instruction task's chat template and cut to data.max_length by its rules (the prompt from the
left, never the completion's start): so the chosen answer is trained in exactly the layout `predict` and
`chat` generate in. A completion's log-probability sums its own tokens only.

Batches hold the pairs' chosen rows, then their rejected rows, then unpaired completions, right-padded (no
packing: the two sides of a pair are compared row by row); KTO adds the mismatched rows of its KL estimate
(prompt i with the completion of row i-1, as TRL). `train.batch_size` counts records.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from ...data.records import Record
from ...errors import DataError, show
from ...models.anatomy import model_config
from ...training.device import autocast
from ..base import batch_indices
from ..instruction.formatting import Formatting
from ..instruction.lm import IGNORE, chunked_cross_entropy, lm_logits
from ..instruction.task import FACT_COLUMN, GENERATE_SPLITS, Example, InstructionTask
from . import curves, scoring
from .objectives import OBJECTIVES, Objective
from .reference import Reference, frozen
from .rows import example_rows
from .rows import summarize as rows_summary
from .rows import tally as rows_tally

if TYPE_CHECKING:
    from ...config import Config

TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")  # a CSV cell's spelling of a KTO label


@dataclass
class Side:
    """One completion in its context: ids, the labels instruction tuning would train, where the completion starts."""

    ids: list[int]
    labels: list[int]
    start: int


@dataclass
class PairExample:
    """A pair (chosen, rejected), or one completion (`rejected` None) with its label (`desirable`)."""

    chosen: Side
    rejected: Side | None
    where: str
    split: str = "train"
    desirable: bool | None = None
    prompt: list[int] | None = None      # the context's ids (generation input)
    reference: str | None = None         # the chosen (or a desirable) completion: what generations are scored on
    fact: str | None = None
    question: str = ""

    @property
    def sides(self) -> list[Side]:
        return [self.chosen] if self.rejected is None else [self.chosen, self.rejected]


@dataclass
class Settings:
    objective: Objective
    beta: float = 0.1
    orpo_lambda: float = 0.1
    rpo_alpha: float = 0.0
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    chosen: str = "chosen"
    rejected: str = "rejected"
    completion: str = "completion"
    label: str = "label"

    @classmethod
    def of(cls, cfg: "Config") -> "Settings":
        t, d = cfg.train, cfg.data
        return cls(OBJECTIVES[t.objective or PreferenceTask.objectives[0]], t.beta, t.orpo_lambda, t.rpo_alpha,
                   t.desirable_weight, t.undesirable_weight, d.chosen, d.rejected, d.completion, d.label)


class PreferenceTask(InstructionTask):
    name = "preference"
    shards_evaluation = False  # its evaluate tallies pairs whole (the instruction shards are token sums)
    headline = ("reward_accuracy", "reward_margin", "logp_accuracy", "kl", "rouge_l", "fact_accuracy")
    primary_metric = "reward_accuracy"
    # McNemar between two models on "chosen beat rejected" (rows.py leaves the column out where a model ties
    # every pair: the starting model against itself as reference, whose reward accuracy is 0.5 by construction)
    correct_column = "correct"
    relative_to_start = ("reward_margin", "kl")  # 0 for the starting model (its own reference) by construction
    curve_metric = "reward_accuracy"
    # What `evaluate` computes on validation data (generation only on test splits); `n` is a count.
    metrics = {"loss": "min", "reward_accuracy": "max", "reward_margin": "max", "chosen_logps": "max",
               "rejected_logps": "min", "logp_accuracy": "max", "kl": "min"}
    objectives = tuple(OBJECTIVES)
    supports_dp = False  # its losses compare pairs of completions (and a reference model), not single examples
    plants_canaries = False

    def __init__(self, tokenizer: Any, fmt: Formatting, settings: Settings, max_new_tokens: int = 64, samples: int = 5):
        super().__init__(tokenizer, fmt, packing=False, max_new_tokens=max_new_tokens, samples=samples)
        self.settings, self.objective = settings, settings.objective
        self.reference: Reference | None = None

    # ------------------------------------------------------------------ the config's questions
    @classmethod
    def pii_columns(cls, cfg: "Config") -> list[str]:
        """The context, both completions (or the one) and the fact: all the model sees or eval.json shows."""
        d = cfg.data
        return list(dict.fromkeys([d.prompt, d.input, d.messages, d.chosen, d.rejected, d.completion, FACT_COLUMN]))

    @classmethod
    def config_problems(cls, cfg: "Config") -> list[str]:
        problems = super().config_problems(cfg)
        if cfg.data.format == "text":
            problems.append("`data.format` = text has no prompt to prefer answers to; use auto, pairs or chat")
        if cfg.data.packing is True:
            problems.append("`data.packing` = true: preference batches compare the two answers of a pair row by row, "
                            "unpacked; set data.packing: auto")
        if cfg.data.schema:
            problems.append("`data.schema` scores JSON answers of task: instruction; a preference run compares two "
                            "completions, remove it")
        objective = OBJECTIVES[cfg.train.objective or cls.objectives[0]]
        if objective.reference and cfg.train.beta <= 0:
            problems.append(f"`train.beta` = {cfg.train.beta:g} makes {objective.name} learn nothing; set it above 0 "
                            "(e.g. 0.1)")
        if cfg.train.rpo_alpha and objective.name not in ("dpo", "ipo"):
            problems.append(f"`train.rpo_alpha` adds the chosen answers' NLL to dpo or ipo; {objective.name} "
                            + ("has its own (train.orpo_lambda weighs the other term)" if objective.sft
                               else "learns from unpaired completions") + ": remove it")
        return problems

    @classmethod
    def input_layouts(cls, cfg: "Config", labelled: bool) -> tuple[dict[str, list[str]], list[str]]:
        """The context's layouts; which completion columns a record needs (a pair or a labelled one) encode says."""
        d = cfg.data
        return {"chat": [d.messages], "pairs": [d.prompt]}, [d.format] if d.format != "auto" else ["chat", "pairs"]

    @classmethod
    def overfit_advice(cls, cfg: "Config | None") -> list[str]:
        if cfg is not None and (cfg.train.objective or cls.objectives[0]) == "orpo":
            return [f"lower train.orpo_lambda (now {cfg.train.orpo_lambda:g})"]
        beta = f" (now {cfg.train.beta:g}; try {3 * cfg.train.beta:g})" if cfg is not None else ""
        advice = [f"raise train.beta{beta}: the loss then holds the model closer to the reference"]
        if cfg is None or (cfg.train.objective or cls.objectives[0]) in ("dpo", "ipo") and not cfg.train.rpo_alpha:
            advice.append("set train.rpo_alpha: 1.0: the chosen answers' NLL keeps what the supervised run taught")
        return advice

    @classmethod
    def curve_signals(cls, train: list[dict[str, Any]], val: list[dict[str, Any]],
                      results: dict[str, Any]) -> dict[str, list[str]]:
        return curves.signals(val, results)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, cfg: "Config", tokenizer: Any, train_records: list[Record] | None = None
                    ) -> "PreferenceTask":
        task = super().from_config(cfg, tokenizer, train_records)
        if not task.objective.paired and train_records:
            task.notes += kto_balance(task.settings, train_records)
        return task

    @classmethod
    def build(cls, cfg: "Config", tokenizer: Any, fmt: Formatting, schema: dict[str, Any] | None = None
              ) -> "PreferenceTask":  # no schema: config_problems refuses data.schema
        return cls(tokenizer, fmt, Settings.of(cfg), max_new_tokens=cfg.eval.max_new_tokens, samples=cfg.eval.samples)

    def metadata(self) -> dict[str, Any]:
        s = self.settings
        return {**super().metadata(), "objective": s.objective.name, "beta": s.beta, "orpo_lambda": s.orpo_lambda,
                "rpo_alpha": s.rpo_alpha}

    def use_reference(self, model: nn.Module, method: Any, start: Callable[[], nn.Module]) -> str | None:
        if method.adapters_off(model) is not None:
            self.reference = Reference(switch=method.adapters_off)
        elif self.objective.reference:
            self.reference = Reference(frozen=frozen(start()))
        else:  # ORPO needs none; a full copy only for the KL metric is not worth its memory
            return "reference model: none (orpo needs none; the KL to the starting model is not measured)"
        return self.reference.describe()

    # ------------------------------------------------------------------ data
    def encode(self, records: list[Record], split: str = "train") -> list[PairExample]:
        out, cut = [], {}
        for r in records:
            kind, context = self.messages_of(r, with_response=False)
            if kind == "text" or not context or context[-1]["role"] != "user":
                raise DataError(r.file, r.line, "no prompt to answer: the context must end with a user turn",
                                f"give a '{self.fmt.prompt}' column, or '{self.fmt.messages}' ending with a user message")
            ex, notes = self._encode_record(r, context, split)
            out.append(ex)
            for note in notes:
                cut.setdefault(note.split(" ")[0], []).append(r.where)
        self.note_cuts(split, cut)
        return out

    def _encode_record(self, r: Record, context: list[dict[str, str]], split: str) -> tuple[PairExample, list[str]]:
        s = self.settings
        paired = s.chosen in r.fields or s.rejected in r.fields
        if not paired and s.completion not in r.fields:
            raise DataError(r.file, r.line, f"no '{s.chosen}'/'{s.rejected}' pair and no '{s.completion}' column",
                            "set data.chosen/data.rejected (pairs) or data.completion + data.label (KTO) to your columns")
        if not paired and self.objective.paired:
            raise DataError(r.file, r.line, f"an unpaired completion ('{s.completion}'), but train.objective "
                            f"{self.objective.name} learns from chosen/rejected pairs", "use train.objective: kto")
        texts = [completion_text(r, s.chosen), completion_text(r, s.rejected)] if paired \
            else [completion_text(r, s.completion)]
        windows = [self.fit_conversation(r, context + [{"role": "assistant", "content": t}]) for t in texts]
        sides = [Side(w.ids, w.labels, w.start) for w in windows]
        desirable = None if paired else kto_label(r, s.label)
        fact = r.fields.get(FACT_COLUMN)
        ex = PairExample(sides[0], sides[1] if paired else None, r.where, split, desirable, windows[0].prompt,
                         texts[0] if desirable is not False else None, fact if isinstance(fact, str) and fact else None,
                         context[-1]["content"])
        return ex, [w.note for w in windows if w.note]

    def batches(self, examples: list[PairExample], batch_size: int, shuffle: bool = False,
                seed: int = 0) -> list[list[int]]:
        """Length-bucketed by each record's longest completion row."""
        return batch_indices([max(len(s.ids) for s in e.sides) for e in examples], batch_size, shuffle, seed)

    def collate(self, examples: list[PairExample], idx: list[int], device: torch.device) -> dict[str, Any]:
        """`main`: chosen rows, rejected rows, unpaired rows; `kl` (KTO): the mismatched rows; the row layout."""
        picked = [examples[i] for i in idx]
        pairs = [e for e in picked if e.rejected is not None]
        single = [e for e in picked if e.rejected is None]
        rows = [e.chosen for e in pairs] + [e.rejected for e in pairs] + [e.chosen for e in single]  # type: ignore[misc]
        batch: dict[str, Any] = {"main": self._rows(rows, device), "pairs": len(pairs),
                                 "desirable": torch.tensor([True] * len(pairs) + [False] * len(pairs)
                                                           + [bool(e.desirable) for e in single], device=device)}
        if not self.objective.paired:
            batch["kl"] = self._rows(mismatched(rows, self.fmt.max_length), device)
        batch["n_real"] = batch["main"]["n_real"]
        return batch

    def _rows(self, rows: list[Side], device: torch.device) -> dict[str, Any]:
        """Right-padded rows (the instruction collate, unpacked) plus, per supervised position, its row and
        whether it predicts a completion token; and each row's completion length."""
        labels = [s.labels if self.objective.sft else [IGNORE] * s.start + s.ids[s.start:] for s in rows]
        sub = InstructionTask.collate(self, [Example(s.ids, y, "") for s, y in zip(rows, labels)],
                                      list(range(len(rows))), device)
        width = sub["input_ids"].shape[1]
        at = sub["supervised_at"]
        starts = torch.tensor([s.start for s in rows], device=device)
        sub["row_of"] = torch.div(at, width, rounding_mode="floor")
        sub["in_completion"] = ((at % width) + 1 >= starts[sub["row_of"]]).float()
        sub["lengths"] = torch.tensor([len(s.ids) - s.start for s in rows], device=device, dtype=torch.float32)
        return sub

    # ------------------------------------------------------------------ loss
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return scoring.objective_loss(self.pair_scores(model, batch), batch, self.settings)

    def pair_scores(self, model: nn.Module, batch: dict[str, Any], keep: bool = False) -> dict[str, Any]:
        """Sequence log-probabilities of every row: the policy's (with gradients while training), the
        reference's, and KTO's mismatched rows (no gradients); `keep` keeps hidden states for the KL."""
        reference = self.reference or Reference()  # an empty Reference raises: none was set up
        out: dict[str, Any] = {"policy": self.logps(model, batch["main"], keep)}
        if self.objective.reference or (keep and self.reference is not None):
            out["ref"] = reference.run(model, lambda m: self.logps(m, batch["main"], keep))
        if "kl" in batch:
            with torch.no_grad():
                out["policy_kl"] = self.logps(model, batch["kl"])
            out["ref_kl"] = reference.run(model, lambda m: self.logps(m, batch["kl"]))
        return out

    def logps(self, model: nn.Module, sub: dict[str, Any], keep: bool = False) -> dict[str, Any]:
        """Per row: the completion's summed log-probability; per supervised position: its log-probability."""
        head, hidden, targets = self.supervised_states(model, sub)
        token = -chunked_cross_entropy(head, hidden, targets, model_config(model), reduction="none")
        seq = token.new_zeros(sub["input_ids"].shape[0]).index_add(0, sub["row_of"], token * sub["in_completion"])
        out = {"seq": seq, "token": token}
        if keep:
            out.update(head=head, hidden=hidden, config=model_config(model))
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model: nn.Module, examples: list[PairExample], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None, generate: bool | None = None) -> dict[str, Any]:
        """The objective's loss, reward accuracy and margin, chosen/rejected log-probabilities, the per-token
        KL to the reference; on test splits also greedy generations scored against the chosen answers."""
        return self._evaluate(model, examples, batch_size, device, dtype, generate, False)[0]

    def evaluate_rows(self, model: nn.Module, examples: list[PairExample], batch_size: int, device: torch.device,
                      dtype: torch.dtype | None, generate: bool | None = None
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """`evaluate`'s metrics (the same computation) and a row per pair or completion (rows.py)."""
        out, found = self._evaluate(model, examples, batch_size, device, dtype, generate, True)
        return out, found or []

    @torch.no_grad()
    def _evaluate(self, model: nn.Module, examples: list[PairExample], batch_size: int, device: torch.device,
                  dtype: torch.dtype | None, generate: bool | None, keep_rows: bool
                  ) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
        was_training = model.training
        model.eval()
        tally = scoring.Tally(self.settings)
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            with autocast(device, dtype):
                s = self.pair_scores(model, batch, keep=True)
                loss = scoring.objective_loss(s, batch, self.settings)
                kl = self.token_kl(model, s, batch["main"]) if "ref" in s else None
            tally.add(s, batch, float(loss), len(idx), kl, row_order(examples, idx) if keep_rows else None)
        out = tally.metrics()
        found = example_rows(tally, examples) if keep_rows else None
        gen = [i for i, e in enumerate(examples) if e.reference is not None and e.prompt]
        if generate is None:
            generate = bool(gen) and all(examples[i].split in GENERATE_SPLITS for i in gen)
        if generate and gen:
            outputs = self.generate(model, [examples[i].prompt or [] for i in gen], batch_size, device, dtype)
            out.update(self._generation_report([examples[i] for i in gen], outputs,
                                               [found[i] for i in gen] if found else None))
        model.train(was_training)
        return out, found

    @torch.no_grad()
    def example_nll(self, model: nn.Module, examples: list[PairExample], batch_size: int, device: torch.device,
                    dtype: torch.dtype | None) -> tuple[np.ndarray, np.ndarray]:
        """Each pair's chosen answer (an unpaired completion: itself): its summed NLL over its tokens and their
        number — the membership score, as the instruction task's (the policy alone: no reference needed)."""
        was_training = model.training
        model.eval()
        sums, units = np.zeros(len(examples)), np.ones(len(examples))
        for idx in self.batches(examples, batch_size):
            batch = self.collate(examples, idx, device)
            sub = batch["main"]
            with autocast(device, dtype):
                seq = self.logps(model, sub)["seq"].float().cpu()
            tokens = torch.zeros(len(seq)).index_add(0, sub["row_of"].cpu(), sub["in_completion"].float().cpu())
            p, order = batch["pairs"], row_order(examples, idx)
            for k, i in enumerate(order):
                if k < p or k >= 2 * p:  # the chosen row of a pair, or an unpaired completion
                    sums[i], units[i] = -float(seq[k]), max(float(tokens[k]), 1.0)
        model.train(was_training)
        return sums, units

    def token_kl(self, model: nn.Module, s: dict[str, Any], sub: dict[str, Any],
                 chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: (sum, count) of KL(policy ‖ reference) of the next-token distributions at its completion
        tokens, exact over the vocabulary, a chunk of positions at a time."""
        keep = sub["in_completion"] > 0
        pol, ref = s["policy"], s["ref"]
        h, hr, row = pol["hidden"][keep], ref["hidden"][keep], sub["row_of"][keep]
        total = torch.zeros(sub["input_ids"].shape[0], device=h.device)
        for a in range(0, h.shape[0], chunk):
            lp = lm_logits(pol["head"], h[a:a + chunk], pol["config"]).log_softmax(-1)
            lr = self.reference.run(model, lambda m: lm_logits(ref["head"], hr[a:a + chunk], ref["config"])
                                    .log_softmax(-1))  # type: ignore[union-attr]
            total.index_add_(0, row[a:a + chunk], (lp.exp() * (lp - lr)).sum(-1).float())
        return total, torch.zeros_like(total).index_add_(0, row, torch.ones_like(row, dtype=total.dtype))

    # ------------------------------------------------------------------ per-example results (evaluation/)
    @classmethod
    def tally(cls, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        return rows_tally(rows)

    @classmethod
    def summarize(cls, sums: dict[str, Any]) -> dict[str, Any]:
        return rows_summary(sums)

    @classmethod
    def auto_slices(cls, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
        """Unpaired completions: by label (a pair's row has both sides)."""
        if not rows or any("desirable" not in r for r in rows):
            return {}
        return {"label": ["desirable" if r["desirable"] else "undesirable" for r in rows]}

    @classmethod
    def slice_metrics(cls, slicing: str, metrics: list[str]) -> list[str]:
        """Within one label the margin (desirable − undesirable) is undefined."""
        return [m for m in metrics if m != "reward_margin"] if slicing == "label" else metrics


def row_order(examples: list[PairExample], idx: list[int]) -> list[int]:
    """The example index of each main row of collate's batch of `idx`: pairs' chosen, their rejected, the rest."""
    pairs = [i for i in idx if examples[i].rejected is not None]
    return pairs + pairs + [i for i in idx if examples[i].rejected is None]


def completion_text(r: Record, column: str) -> str:
    """A completion: text, or (TRL's conversational layout) a list holding one assistant message."""
    value = r.fields.get(column)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) \
            and value[0].get("role") == "assistant":
        value = value[0].get("content")
    if not isinstance(value, str) or not value.strip():
        raise DataError(r.file, r.line, f"completion column '{column}' is {show(value)}, expected text",
                        "give the answer as text (or [{\"role\": \"assistant\", \"content\": ...}])")
    return value


def kto_label(r: Record, column: str) -> bool:
    """An unpaired completion's label: true/false (also 1/0, and "true"/"false" as a CSV cell spells them)."""
    value = r.fields.get(column)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    raise DataError(r.file, r.line, f"label column '{column}' is {show(value)}; an unpaired completion is "
                    "desirable (true) or not (false)", "write true or false, or point data.label at that column")


def kto_balance(s: Settings, records: list[Record]) -> list[str]:
    """A note when desirable and undesirable completions are weighted outside what the KTO paper advises
    (Eq. 8: λ_D·n_D / (λ_U·n_U) between 1 and 4/3); a pair counts one of each."""
    good = sum(1 for r in records if s.chosen in r.fields or r.fields.get(s.label) in (True, 1, "true"))
    bad = len(records) + sum(1 for r in records if s.chosen in r.fields) - good
    if not good or not bad:
        return []
    ratio = s.desirable_weight * good / (s.undesirable_weight * bad)
    if 1 <= ratio <= 4 / 3:
        return []
    low = bad * s.undesirable_weight / good
    return [f"KTO: {good} desirable and {bad} undesirable completions weigh {ratio:.2f} : 1 (the paper advises 1 to "
            f"4/3): set train.desirable_weight to {low:.2f}–{4 / 3 * low:.2f}"]


def mismatched(rows: list[Side], max_length: int) -> list[Side]:
    """KTO's KL rows: row i's context with row i-1's completion (the prompt cut from the left if too long)."""
    out = []
    for i, row in enumerate(rows):
        other = rows[i - 1]
        head, tail = row.ids[:row.start], other.ids[other.start:]
        head = head[max(0, len(head) + len(tail) - max_length):]
        ids = head + tail
        out.append(Side(ids, [IGNORE] * len(head) + tail, len(head)))
    return out
