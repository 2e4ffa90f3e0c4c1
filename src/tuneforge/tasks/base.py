"""The Task interface every task implements, and the batching and padding helpers they share.

A task answers two kinds of question. Class-level ones need only the config (no data, no tokenizer):
which columns are scanned for PII, compared for leakage and used to stratify, which cross-checks the config
must pass, which metrics it reports (and in which direction each improves), what PEFT and plain
transformers call its model. Instance-level ones need the tokenizer and the training data: encoding,
batches, the loss, evaluation, prediction, the model with its head, and the forgetting guard's probe and
replay source. Everything outside tasks/ asks these; nothing there branches on a task's name.

A new task is one module with a Task subclass and one line in tasks/__init__.py's REGISTRY. It must
implement from_config, from_saved, load_model, encode, encode_unlabelled, collate, loss, evaluate, predict
and metadata, and set name, headline, primary_metric and metrics; everything else has a default here.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from ..config import Config
    from ..data.records import Record
    from ..data.reference import Reference
    from ..models.loading import ModelSource

BUCKET_CHUNK = 32  # length-sorted within chunks of this many batches: batches stay random across chunks


def batch_indices(lengths: Sequence[int], batch_size: int, shuffle: bool = False, seed: int = 0,
                  by_length: bool = True) -> list[list[int]]:
    """Index lists of `batch_size` examples. Length-bucketed (`by_length`): similar lengths share a batch,
    so little goes to padding. Seeded: the same (seed, lengths) always gives the same batches."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    if not by_length:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    chunk, batches = batch_size * BUCKET_CHUNK, []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def pad_right(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of shape (rows, longest row): each row left-aligned, `pad` after it, mask 1 on real tokens."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, row in enumerate(rows):
        ids[j, :len(row)] = torch.tensor(row)
        mask[j, :len(row)] = 1
    return ids, mask


def pad_id(tokenizer: Any) -> int:
    """The id padding is written with (0 when the tokenizer has none)."""
    return tokenizer.pad_token_id or 0


@dataclass
class EarlierRun:
    """A run a continued run builds on: its name, directory, and how its own task reads this model."""

    name: str
    run: str
    view: Callable[["Task"], "Task"]  # the earlier run's task → that task through this run's model


class Task(ABC):
    """One kind of job a model learns. See the module docstring for what a new task must provide."""

    name: ClassVar[str] = ""
    peft_task_type: ClassVar[str] = "SEQ_CLS"  # what PEFT calls it: SEQ_CLS, CAUSAL_LM, TOKEN_CLS, ...
    auto_class: ClassVar[str] = "AutoModelForSequenceClassification"  # how plain transformers loads model/
    headline: ClassVar[tuple[str, ...]] = ()  # the metrics summary tables show (CLI, report), in order
    primary_metric: ClassVar[str] = "loss"  # the one metric compare ranks and plots methods by
    curve_metric: ClassVar[str | None] = None  # the validation metric the report plots beside the loss
    # Every scalar `evaluate` computes on validation data, with the direction it improves in ("min"/"max"):
    # the early-stopping choices (as val_<name>) and what early_stopping.mode: auto follows.
    metrics: ClassVar[dict[str, str]] = {"loss": "min"}
    # Metrics measured from the model training started from (the base scores 0 or chance on them by
    # construction): a verdict does not count their paired test against the base as a gain or a cost.
    relative_to_start: ClassVar[tuple[str, ...]] = ()
    generates: ClassVar[bool] = False  # answers prompts (chat, predict --prompt) instead of labelling texts
    pipeline_tag: ClassVar[str] = "text-classification"  # what transformers.pipeline() and the Hub call the task
    objectives: ClassVar[tuple[str, ...]] = ()  # the losses train.objective may pick (first: the default)
    # evaluate = merge_shards of evaluate_shard over parts of a split: a distributed run evaluates a share of
    # the examples on each process and gathers the parts (False: every process evaluates the whole split)
    shards_evaluation: ClassVar[bool] = False
    # Which keys of a split's metrics hold lists of examples the report shows (each a list of dicts), and
    # the section title for each; any other list of dicts the report finds is shown under its own key.
    showcase: ClassVar[dict[str, str]] = {"samples": "Sample outputs"}
    # The fields of a shown example (and of a prediction row) that hold the model's output: the report puts
    # the base model's output for the same example beside them.
    output_fields: ClassVar[tuple[str, ...]] = ()
    # privacy.dp (training/dp.py): the task's `private_loss` is a mean of per-example losses, computed with
    # every trainable layer seeing batch-first inputs, so Opacus's per-example gradients are each example's own
    supports_dp: ClassVar[bool] = False
    plants_canaries: ClassVar[bool] = False  # privacy.canaries: secrets planted in its records are completions
    has_head: ClassVar[bool] = False  # a separate output head (head_modules) that train.head_epochs can train alone
    pools: ClassVar[bool] = False  # one output per sequence read off one token, which train.pooling can change
    # The per-example column of `tally` that is 1 where the prediction is right (McNemar's test between two
    # models uses it); None: compare models with the paired bootstrap only.
    correct_column: ClassVar[str | None] = None
    calibratable: ClassVar[bool] = False  # `scores` are logits that temperature scaling (eval.calibrate) fits

    notes: list[str]  # what encoding found worth telling (truncation, ...), for the run log
    edited_modules: tuple[str, ...] = ()  # base modules edit_start changed (their names)

    # ------------------------------------------------------------------ the config's questions
    @classmethod
    def pii_columns(cls, cfg: "Config") -> list[str]:
        """Columns scanned for PII: every text the model sees and every text a run writes out."""
        return [cfg.data.text]

    @classmethod
    def leakage_columns(cls, cfg: "Config") -> list[str]:
        """Columns compared for leakage between splits: the inputs."""
        return [cfg.data.text]

    @classmethod
    def stratify_column(cls, cfg: "Config") -> str | None:
        """The column splits, folds and compare's subsets are stratified by (None: not stratified)."""
        return None

    @classmethod
    def config_problems(cls, cfg: "Config") -> list[str]:
        """This task's cross-checks of the config (run before anything is read), one message each."""
        return []

    @classmethod
    def normalize_records(cls, cfg: "Config", records: list["Record"]) -> list["Record"]:
        """The records in the one layout this task trains on, before vetting, so that the PII scan, redaction
        and the leakage check read the text the model will read (default: as read)."""
        return records

    @classmethod
    def after_redaction(cls, cfg: "Config", fields: dict[str, Any],
                        edits: dict[tuple[Any, ...], list[tuple[int, int, int, int]]]
                        ) -> tuple[dict[str, Any], dict[str, int]]:
        """A redacted record's fields made consistent with its redacted text. `edits` maps each redacted field
        path (("text",), ("messages", 2, "content")) to its replacements (start, end, new start, new end), in
        order. Returns the fields and counts for the audit (default: unchanged, nothing counted)."""
        return fields, {}

    @classmethod
    def privacy_notice(cls, cfg: "Config") -> str | None:
        """What the data audit says first when this task's data is a sensitive kind (None: nothing)."""
        return None

    @classmethod
    def input_layouts(cls, cfg: "Config", labelled: bool) -> tuple[dict[str, list[str]], list[str]]:
        """The column layouts a data file for eval/predict may have ({layout: columns, leading one first})
        and the order they are tried in; a record must hold every column of the first layout whose
        leading column it has."""
        return {"text": [cfg.data.text] + ([cfg.data.label] if labelled else [])}, ["text"]

    @classmethod
    def head_modules(cls, model: nn.Module) -> list[str] | None:
        """The task head's module names, trained fully next to an adapter (method.modules_to_save: auto)."""
        return None

    @classmethod
    def overfit_advice(cls, cfg: "Config | None") -> list[str]:
        """Task-specific advice when a run overfits (after the method's)."""
        return []

    @classmethod
    def curve_signals(cls, train: list[dict[str, Any]], val: list[dict[str, Any]],
                      results: dict[str, Any]) -> dict[str, list[str]]:
        """Evidence only this task's metrics show, by diagnosis label (overfitting, underfitting, unstable):
        `train`/`val` are the logged metrics.jsonl rows, `results` what eval.json will hold."""
        return {}

    # ------------------------------------------------------------------ building
    @classmethod
    @abstractmethod
    def from_config(cls, cfg: "Config", tokenizer: Any, train_records: list["Record"]) -> "Task":
        """The task for training: settings from the config, anything data-derived (labels) from train."""

    @classmethod
    @abstractmethod
    def from_saved(cls, cfg: "Config", tokenizer: Any, meta: dict[str, Any]) -> "Task":
        """The task of a finished run, from its config and model/tuneforge.json (`metadata()` as saved)."""

    @abstractmethod
    def metadata(self) -> dict[str, Any]:
        """What model/tuneforge.json must hold to rebuild this task (from_saved) at inference time."""

    # ------------------------------------------------------------------ what model/ carries for other tools
    def base_config(self) -> dict[str, Any]:
        """What the base's config.json must say for plain transformers to rebuild this task's model on it
        (a classifier: its label names and count); {} when the base's own config does."""
        return {}

    def generation_config(self) -> dict[str, Any] | None:
        """generation_config.json for model/ (stop ids, length), or None for a task that does not generate."""
        return None

    def portable_chat_template(self) -> str | None:
        """The chat template saved with the tokenizer in model/ (None: the tokenizer's own, as it is)."""
        return None

    def intended_use(self, cfg: "Config") -> str:
        """One paragraph for the model card: what the model does and what it was not made for."""
        return (f"Trained by tuneforge for one job ({self.name}) on the data listed below; check the metrics on "
                "data like yours before relying on it.")

    # ------------------------------------------------------------------ the model
    @abstractmethod
    def load_model(self, cfg: "Config", source: "ModelSource", method: Any) -> nn.Module:
        """The pretrained model with this task's head (fresh weights if method.scratch)."""

    def edit_start(self, model: nn.Module, cfg: "Config") -> nn.Module:
        """The base model as a run starts from it (not a saved run's model, which holds its edits already):
        what the config changes in its architecture (train.pooling). Changed modules' names go to
        `edited_modules`, which a PEFT adapter saves whole."""
        return model

    def prepare_model(self, model: nn.Module) -> str | None:
        """Once, after the method is applied and before compilation; returns a line for the run log."""
        return None

    def use_reference(self, model: nn.Module, method: Any, start: Callable[[], nn.Module]) -> str | None:
        """Once the method is applied (training) or a run is loaded for evaluation: keep what computes the
        model training started from — `method.adapters_off(model)`, or `start()`, a frozen copy of it —
        if this task compares with it (preference objectives). Returns a line for the run log."""
        return None

    def earlier_runs(self) -> list[EarlierRun]:
        """The runs this one continues (init_from), whose tasks the forgetting guard must keep."""
        return []

    def continue_model(self, model: nn.Module, cfg: "Config") -> nn.Module:
        """The starting model of a continued run, from the earlier run's (merged) model."""
        from ..errors import TuneforgeError

        raise TuneforgeError(f"`init_from` cannot continue a {self.name} run")

    # ------------------------------------------------------------------ data and the loop
    @abstractmethod
    def encode(self, records: list["Record"], split: str = "train") -> list[Any]:
        """Labelled records → examples (DataError naming file:line for anything the task cannot learn)."""

    @abstractmethod
    def encode_unlabelled(self, records: list["Record"]) -> list[Any]:
        """Records to predict on → examples."""

    def batches(self, examples: list[Any], batch_size: int, shuffle: bool = False,
                seed: int = 0) -> list[list[int]]:
        """Index lists per batch, length-bucketed by each example's `ids`."""
        return batch_indices([len(e.ids) for e in examples], batch_size, shuffle, seed)

    @abstractmethod
    def collate(self, examples: list[Any], idx: list[int], device: torch.device) -> dict[str, Any]:
        """The batch of examples[idx] as tensors on `device` (and `n_real`, its real tokens, on the CPU)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's mean loss (a scalar tensor that backpropagates)."""

    def private_loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's loss as the mean over its examples of each one's own loss (privacy.dp; supports_dp)."""
        return self.loss(model, batch)

    @staticmethod
    def tokens(batch: dict[str, Any]) -> torch.Tensor:
        """Real (non-padding) tokens of a collated batch, for tokens/s."""
        return batch["n_real"]

    @staticmethod
    def loss_units(batch: dict[str, Any]) -> int | None:
        """What `loss` averages over in this batch, when it is not its examples (e.g. supervised tokens): a
        distributed run weights each rank's loss by its share of these, summed over the ranks (None: examples)."""
        return None

    # ------------------------------------------------------------------ results
    @abstractmethod
    def evaluate(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        """Loss and every metric on `examples` (the model left in train mode if it was)."""

    @abstractmethod
    def predict(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
                dtype: torch.dtype | None) -> list[dict[str, Any]]:
        """One JSON-ready row per example, in input order."""

    def evaluate_shard(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
                       dtype: torch.dtype | None) -> Any:
        """What `merge_shards` needs of one contiguous part of a split: per-example results, small and
        picklable (a task that sets shards_evaluation implements both)."""
        raise NotImplementedError(f"{type(self).__name__} evaluates whole splits only")

    def merge_shards(self, shards: list[Any], examples: list[Any]) -> dict[str, Any]:
        """evaluate's metrics on `examples` from its parts' `evaluate_shard` results, in order."""
        raise NotImplementedError(f"{type(self).__name__} evaluates whole splits only")

    # ------------------------------------------------------------------ the forgetting guard's questions
    def forgetting_probe(self, ref: "Reference", cfg: "Config", device: torch.device,
                         dtype: torch.dtype | None) -> Any | None:
        """What the guard measures before and after training on the reference text (None: nothing)."""
        return None

    def replay_source(self, ref: "Reference | None", cfg: "Config") -> tuple[Any, list[Any]] | None:
        """(task, examples) replay mixes in and the EWC Fisher is computed on, from the reference text
        (None: this task has no use for it; a continued run replays its earlier tasks instead)."""
        return None

    # ------------------------------------------------------------------ per-example results (evaluation/)
    # What confidence intervals, paired tests, slices, calibration and the report read. A task without
    # per-example rows still trains and evaluates; its numbers just come without intervals.
    def evaluate_rows(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
                      dtype: torch.dtype | None) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
        """`evaluate`'s metrics and one JSON-ready row per example (predictions/<split>.jsonl), each with
        "where" (file:line) and "length" (input tokens) besides what `tally` reads; None: no rows."""
        return self.evaluate(model, examples, batch_size, device, dtype), None

    def example_nll(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
                    dtype: torch.dtype | None) -> tuple[Any, Any] | None:
        """(summed loss, loss units) of each example as numpy arrays: the memorization audit's scores
        (evaluation/memorization.py; the mean is sum / units). None: the audit has nothing to score."""
        return None

    def evaluate_and_score(self, model: nn.Module, examples: list[Any], scored: int, batch_size: int,
                           device: torch.device, dtype: torch.dtype | None) -> tuple[dict[str, Any], Any]:
        """`evaluate`'s metrics on `examples` and `example_nll` of examples[:scored] (the final train probe and
        the audit's members), from one pass where the task can: the audit's scores must come out as
        example_nll's own (default: the two passes)."""
        return (self.evaluate(model, examples, batch_size, device, dtype),
                self.example_nll(model, examples[:scored], batch_size, device, dtype))

    def evaluate_rows_embedded(self, model: nn.Module, examples: list[Any], batch_size: int,
                               device: torch.device, dtype: torch.dtype | None
                               ) -> tuple[dict[str, Any], list[dict[str, Any]] | None, Any | None]:
        """`evaluate_rows` and `embed`'s features of the same examples, from one forward where the task can
        (the base evaluation and the linear probe read the same sets through the same model); None: no
        features taken, the probe embeds them itself."""
        return (*self.evaluate_rows(model, examples, batch_size, device, dtype), None)

    @classmethod
    def tally(cls, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Per-example additive columns ({name: (n,) array}) whose sums `summarize` turns into the metrics."""
        return None

    @classmethod
    def summarize(cls, sums: dict[str, Any]) -> dict[str, Any]:
        """Metric values from column sums; every sum may carry a leading resample axis (numpy broadcasting)."""
        return {}

    @classmethod
    def auto_slices(cls, rows: list[dict[str, Any]]) -> dict[str, list[str]]:
        """Task-defined slices of the examples (e.g. by true label): slice name -> one value per row."""
        return {}

    @classmethod
    def slice_metrics(cls, slicing: str, metrics: list[str]) -> list[str]:
        """The metrics that mean something within one slice of `slicing` (default: all of them)."""
        return metrics

    @classmethod
    def scores(cls, rows: list[dict[str, Any]]) -> Any | None:
        """evaluation.calibration.Scores (class names, 0/1 truth, logits) for calibration and PR curves."""
        return None

    @classmethod
    def direction(cls, metric: str) -> str:
        """"min" or "max": how `metric` improves (declared in `metrics`, else by its name)."""
        if metric in cls.metrics:
            return cls.metrics[metric]
        return "min" if any(w in metric for w in ("loss", "perplexity", "error", "mse", "mae")) else "max"

    def set_temperature(self, temperature: float) -> None:
        """Scale logits by 1/temperature in `predict` (eval.calibrate); saved by `metadata`."""

    def embed(self, model: nn.Module, examples: list[Any], batch_size: int, device: torch.device,
              dtype: torch.dtype | None) -> Any | None:
        """(n, d) numpy features of the frozen model for a linear probe baseline (None: no such baseline)."""
        return None

    def probe_labels(self, examples: list[Any]) -> Any | None:
        """(n,) integer classes of labelled examples, for a cross-validated linear probe on `embed`'s features
        (`tuneforge advise`); None: this task has no such probe."""
        return None

    def baselines(self, model: nn.Module, train: list[Any], eval_sets: dict[str, list[Any]], batch_size: int,
                  device: torch.device, dtype: torch.dtype | None, features: dict[str, Any] | None = None
                  ) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """{baseline name: {split: rows}}: simple predictors to beat, scored like the model (evaluation/).
        `model` None (scratch): no pretrained features, so no baseline that reads them. `features`: eval sets' `embed` features of `model` already taken (evaluate_rows_embedded)."""
        return {}
