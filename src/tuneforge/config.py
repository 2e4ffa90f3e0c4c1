"""The config: a tree of typed dataclasses loaded from YAML plus dotted CLI overrides.

Validation walks the whole tree and reports every problem at once, each naming the key, the bad
value and the fix. Key names are the contract with users (DESIGN.md): add keys freely, rename none.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .configpaths import absolute_paths, relative_paths, resolve_paths
from .confighead import head_problems
from .configprivacy import privacy_problems
from .configtypes import coerce, out_of_range
from .errors import ConfigError, clip, show
from .methods import NAMES as METHOD_NAMES
from .safeyaml import YamlRefused, safe_load
from .tasks import DEFAULT as DEFAULT_TASK
from .tasks import NAMES as TASK_NAMES
from .tasks import objective_problems

# The names the config accepts are the registries' (tasks/__init__.py, methods/__init__.py): one list each.
TaskName = Literal[TASK_NAMES]  # type: ignore[valid-type]
MethodName = Literal[METHOD_NAMES]  # type: ignore[valid-type]


def _f(default: Any = dataclasses.MISSING, *, lo: float | None = None, hi: float | None = None,
       doc: str = "", factory: Any = None) -> Any:
    """A dataclass field with an allowed range and a one-line description for the README."""
    meta = {"lo": lo, "hi": hi, "doc": doc}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class MethodConfig:
    name: MethodName = _f("lora", doc="how the model is trained")
    r: int = _f(8, lo=1, hi=4096, doc="LoRA rank")
    alpha: float = _f(16.0, lo=0, doc="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = _f(0.1, lo=0, hi=0.99, doc="dropout on the LoRA/adapter input")
    targets: Union[str, list[str]] = _f("auto", doc="auto | all-linear | list of module names")
    rslora: bool = _f(False, doc="rank-stabilized scaling alpha / sqrt(r)")
    modules_to_save: Union[str, list[str]] = _f("auto", doc="extra fully trained modules (auto: the task head)")
    reduction: int = _f(16, lo=1, doc="adapter bottleneck reduction factor")
    adapter_style: Literal["houlsby", "pfeiffer"] = _f("houlsby", doc="where bottleneck adapters go")
    layers: int = _f(2, lo=0, doc="freeze: number of top layers trained")


@dataclass
class DataConfig:
    train: str = _f("", doc="training data file (JSONL, CSV, Parquet, or HF dataset dir)")
    validation: Union[str, float, None] = _f(0.1, doc="a file, or a fraction split off train")
    test: Union[str, float, None] = _f(None, doc="a file, or a fraction split off train")
    text: str = _f("text", doc="column holding the input text")
    label: str = _f("label", doc="column holding the label (classification; preference: KTO's true/false)")
    group: Union[str, None] = _f(None, doc="records sharing this column's value never straddle splits")
    max_length: int = _f(256, lo=8, hi=131072, doc="tokens per example; longer ones are truncated")
    format: Literal["auto", "pairs", "chat", "text"] = _f("auto", doc="instruction data layout")
    prompt: str = _f("instruction", doc="instruction: prompt column")
    input: str = _f("input", doc="instruction: optional extra input column")
    response: str = _f("output", doc="instruction: response column")
    messages: str = _f("messages", doc="instruction: chat messages column")
    system: Union[str, None] = _f(None, doc="instruction: system prompt added to every example")
    train_on_inputs: bool = _f(False, doc="instruction: also compute loss on prompt tokens")
    packing: Union[bool, Literal["auto"]] = _f(
        "auto", doc="instruction: true packs examples into shared rows (no padding), false pads length-bucketed "
                    "batches; auto packs only where the attention kernel takes packed rows at no cost (flash)")
    limit: Union[int, None] = _f(None, lo=1, doc="read only the first N records of `data.train`; "
                                 "validation/test fractions are split off them")
    spans: str = _f("spans", doc="token_classification: column of character-offset entities "
                    "[{start, end, label}] in data.text")
    tokens: str = _f("tokens", doc="token_classification: column of words (with data.tags), instead of text + spans")
    tags: str = _f("tags", doc="token_classification: column of one BIO or IOBES tag per word of data.tokens")
    schema: Union[str, None] = _f(None, doc="instruction: a JSON Schema file the responses must satisfy; eval "
                                  "reports JSON validity, schema validity and field-level P/R/F1")
    chosen: str = _f("chosen", doc="preference: the preferred completion column")
    rejected: str = _f("rejected", doc="preference: the dispreferred completion column")
    completion: str = _f("completion",
                         doc="preference: an unpaired completion column (KTO: data.label marks it desirable)")


@dataclass
class DPConfig:
    epsilon: Union[float, None] = _f(None, lo=0, doc="differentially private training (DP-SGD, Opacus) to this "
                                     "privacy budget ε (null: off, no guarantee); e.g. 8")
    delta: Union[float, Literal["auto"]] = _f("auto", lo=0, hi=1, doc="the guarantee's δ (auto: 1 / (10 × "
                                              "training examples))")
    max_grad_norm: float = _f(1.0, lo=0, doc="each example's gradient is clipped to this L2 norm before noise")
    accountant: Literal["prv", "rdp"] = _f("prv", doc="Opacus privacy accountant that turns noise, sampling rate "
                                           "and steps into ε")


@dataclass
class PrivacyConfig:
    pii: Literal["off", "warn", "redact", "block"] = _f("redact", doc="what to do with PII found in the data")
    dp: DPConfig = _f(factory=DPConfig)
    canaries: int = _f(0, lo=0, hi=1000, doc="instruction: plant this many random secrets in the training data "
                       "before vetting and measure their exposure after training (only hashes are stored)")
    canary_repeats: int = _f(4, lo=1, hi=100, doc="copies of each canary planted")


@dataclass
class LeakageConfig:
    policy: Literal["warn", "drop", "fail"] = _f("fail", doc="what to do when validation/test overlap train")
    threshold: float = _f(0.8, lo=0.0, hi=1.0, doc="near-duplicate Jaccard threshold")
    ngram: int = _f(13, lo=3, hi=64, doc="n-gram overlap length (words)")
    shingle: int = _f(1, lo=1, hi=13, doc="near-duplicate shingles: 1 = word multiset (catches 1-3 word edits), "
                      "5 = word 5-grams (order-aware, misses edits)")
    ngram_share: float = _f(0.2, lo=0.0, hi=1.0, doc="n-gram overlap counts as a leak when this share of a "
                            "record's n-grams is in the other split (0: any shared n-gram, as lm-eval-harness)")


@dataclass
class EarlyStoppingConfig:
    patience: Union[int, None] = _f(2, lo=1, doc="evaluations without improvement before stopping (null: off)")
    metric: str = _f("val_loss", doc="val_loss or val_<metric>, e.g. val_f1_macro")
    mode: Literal["auto", "min", "max"] = _f("auto", doc="auto: min for losses, max otherwise")
    min_delta: float = _f(0.0, lo=0.0, doc="smallest change that counts as improvement")
    restore_best: bool = _f(True, doc="reload the best weights at the end")


@dataclass
class TrainConfig:
    epochs: float = _f(3.0, lo=0, hi=10000, doc="passes over the training data")
    max_steps: Union[int, None] = _f(None, lo=1, doc="stop after this many optimizer steps")
    lr: float = _f(5.0e-4, lo=0, hi=10, doc="peak learning rate")
    batch_size: int = _f(32, lo=1, hi=65536, doc="examples per micro-batch")
    grad_accum: int = _f(1, lo=1, hi=4096, doc="micro-batches per optimizer step")
    weight_decay: float = _f(0.01, lo=0, hi=10, doc="AdamW weight decay (not on biases/norms)")
    warmup: float = _f(0.06, lo=0, doc="warmup: fraction of steps if < 1, else a step count")
    scheduler: Literal["linear", "cosine", "constant"] = _f("linear", doc="decay after warmup")
    max_grad_norm: Union[float, None] = _f(1.0, lo=0, doc="gradient clipping (null: off)")
    label_smoothing: float = _f(0.0, lo=0, hi=0.99, doc="classification label smoothing")
    model_dropout: Union[float, None] = _f(None, lo=0, hi=0.99,
                                           doc="the model's own hidden/attention dropout (null: keep the model's)")
    pooling: Literal["model", "mean"] = _f("model", doc="what a sequence head reads: model (the model's own: BERT's "
                                           "pooled [CLS], a decoder's last token) or mean (that token made a "
                                           "uniform mean over the text by its last attention layer)")
    head_epochs: float = _f(0.0, lo=0, doc="train only the task head for this many epochs first, then all the "
                            "method trains (linear probing, then fine-tuning; classification, regression and "
                            "token-classification heads)")
    eval_every: Union[int, None] = _f(None, lo=1, doc="evaluate every N steps (null: each epoch)")
    log_every: int = _f(10, lo=1, doc="log training loss every N steps")
    checkpoint_every: Union[int, None] = _f(None, lo=1, doc="checkpoint every N steps (and each epoch end)")
    keep_checkpoints: int = _f(2, lo=1, doc="newest checkpoints kept (the best is kept too)")
    early_stopping: EarlyStoppingConfig = _f(factory=EarlyStoppingConfig)
    seed: int = _f(0, lo=0, doc="seed for splits, shuffling and initialization")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _f(
        "auto", doc="auto: bf16 autocast where fast (CUDA; CPUs with AMX-BF16 or AVX512-BF16)")
    threads: Union[int, None] = _f(None, lo=1, doc="CPU threads (null: all cores)")
    compile: Literal["auto", "blocks", "graphs", "none"] = _f(
        "auto", doc="torch.compile each transformer block (auto: on CUDA only; compiling costs minutes on a CPU); "
                    "graphs: also CUDA graphs per block (+6-10% on an H200; one graph per batch width)")
    nan_policy: Literal["stop", "skip"] = _f("stop", doc="on NaN/inf loss: stop, or skip the batch")
    max_skips: int = _f(10, lo=0, doc="most batches skipped under nan_policy: skip")
    objective: Union[Literal["dpo", "ipo", "orpo", "kto"], None] = _f(
        None, doc="preference: the loss (null: dpo); dpo/ipo/kto compare with a reference model, orpo needs none")
    beta: float = _f(0.1, lo=0, doc="preference: DPO/IPO/KTO pull toward the reference (higher: stays closer)")
    orpo_lambda: float = _f(0.1, lo=0, doc="preference: ORPO's weight of the odds-ratio term beside the NLL")
    rpo_alpha: float = _f(0.0, lo=0, doc="preference: DPO/IPO plus this weight times the chosen answers' NLL "
                                        "(RPO; keeps what the supervised run taught while learning the preference)")
    desirable_weight: float = _f(1.0, lo=0, doc="preference: KTO weight of desirable completions")
    undesirable_weight: float = _f(1.0, lo=0, doc="preference: KTO weight of undesirable completions")
    distributed: Literal["auto", "ddp", "fsdp"] = _f(
        "auto", doc="under torchrun/accelerate launch: ddp (a model copy per device) or fsdp (FSDP2 shards "
                    "weights, gradients and optimizer state); auto: ddp for parameter-efficient methods and for "
                    "full fine-tuning that fits one device, else fsdp")


@dataclass
class ForgettingConfig:
    reference: Union[str, None] = _f("builtin", doc="builtin, a file of texts/prompts, or null (off)")
    replay: float = _f(0.0, lo=0, hi=0.9, doc="fraction of each batch drawn from reference data")
    ewc: float = _f(0.0, lo=0, doc="EWC strength lambda")
    l2_to_base: float = _f(0.0, lo=0, doc="L2 pull toward the base weights")
    threshold: float = _f(0.1, lo=0, doc="relative change flagged as forgetting")
    samples: int = _f(64, lo=1, doc="reference texts/prompts used by the forgetting probe")
    fisher_samples: int = _f(256, lo=1, doc="examples of the earlier task/reference used for the EWC Fisher")


@dataclass
class EvalConfig:
    base: bool = _f(True, doc="also evaluate the model before fine-tuning")
    max_new_tokens: int = _f(64, lo=1, hi=8192, doc="instruction: generation length")
    samples: int = _f(5, lo=0, doc="examples kept in eval.json and the report (instruction: sample generations; "
                      "classification: the most confident mistakes; token_classification: mistakes)")
    # 32, not 64: on 2 CPU cores (bf16) evaluating 512 sentiment reviews took 1.40-1.55 s at 32 against 1.69-1.80 s
    # at 64 on MiniLM, and 192 on SmolLM2 4.7-5.2 s against 6.5-8.3 s (16: within noise of 32); raise it on a GPU
    batch_size: int = _f(32, lo=1, doc="evaluation batch size (on a GPU, larger is faster)")
    bootstrap: int = _f(1000, lo=0, hi=100000, doc="bootstrap resamples for the 95% intervals and paired tests "
                        "(0: none)")
    slices: list[str] = _f(factory=list, doc="record columns whose values the test metrics are also broken down "
                           "by (besides the automatic slices: true label, input length, source file)")
    calibrate: bool = _f(False, doc="classification: fit a temperature on validation; predict applies it")
    baselines: bool = _f(True, doc="classification: also score the majority class and a linear probe on the "
                         "frozen base embeddings")
    audit: bool = _f(True, doc="memorization audit after training: loss-threshold membership inference on train "
                     "vs held-out examples (and canary exposure with privacy.canaries)")


@dataclass
class Config:
    name: str = _f("", doc="run directory name: <output_dir>/<name>")
    task: TaskName = _f(DEFAULT_TASK, doc="what the model learns")
    model: str = _f("minilm", doc="embedded name (minilm | smollm2), HF directory, or .gguf file")
    output_dir: str = _f("runs", doc="where run directories go")
    resume: Union[bool, Literal["auto"]] = _f(False, doc="continue from the newest complete checkpoint")
    allow_pickle: bool = _f(False, doc="allow loading pickle (.bin/.pt) weights with weights_only=True")
    init_from: Union[str, None] = _f(None, doc="continue from a finished run: a classification run (its task "
                                                "keeps its head and becomes the task forgetting is measured on), or "
                                                "for instruction/preference a language-model run (its merged model)")
    method: MethodConfig = _f(factory=MethodConfig)
    data: DataConfig = _f(factory=DataConfig)
    privacy: PrivacyConfig = _f(factory=PrivacyConfig)
    leakage: LeakageConfig = _f(factory=LeakageConfig)
    train: TrainConfig = _f(factory=TrainConfig)
    forgetting: ForgettingConfig = _f(factory=ForgettingConfig)
    eval: EvalConfig = _f(factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


# ---------------------------------------------------------------- loading and validation

# Everything a config file (or an override) can make large is bounded; a real config is a few KB.
MAX_CONFIG_BYTES = 1 << 20    # a bigger "config" is a mistake (a data file passed as the config?)
MAX_PROBLEMS = 20             # problems listed at once (a file of 20,000 unknown keys needs no 20,000 lines)

# Names users bring from HF TrainingArguments, PEFT and Axolotl configs → ours.
ALIASES = {
    "learning_rate": "lr", "num_epochs": "epochs", "num_train_epochs": "epochs", "micro_batch_size": "batch_size",
    "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
    "warmup_ratio": "warmup", "warmup_steps": "warmup", "lr_scheduler": "scheduler",
    "lr_scheduler_type": "scheduler", "max_grad_norm": "max_grad_norm", "lora_r": "r", "lora_alpha": "alpha",
    "lora_dropout": "dropout", "target_modules": "targets", "lora_target_modules": "targets",
    "max_seq_length": "max_length", "sequence_len": "max_length", "max_len": "max_length",
    "use_rslora": "rslora", "eval_steps": "eval_every", "save_steps": "checkpoint_every",
    "logging_steps": "log_every", "text_column": "text", "label_column": "label", "cutoff_len": "max_length",
}


def load_config(path: str | Path | None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> Config:
    """YAML file (or `base` dict) + `a.b=value` overrides → validated Config, or ConfigError with all problems."""
    raw: dict[str, Any] = dict(base or {})
    problems: list[str] = []
    if path is not None:
        raw = resolve_paths(_read_yaml(Path(path)), Path(path).parent)
        raw.setdefault("name", Path(path).stem)
    raw.pop("_provenance", None)  # a run's own config.yaml re-runs as is: its provenance is a record, not a key
    for item in overrides or []:
        _apply_override(raw, item, problems)
    raw = resolve_paths(raw, Path.cwd())  # paths given on the command line are the working directory's
    cfg = _build(Config, raw, "", problems)
    if not problems:
        problems += _cross_checks(cfg)
    if len(problems) > MAX_PROBLEMS:
        problems = problems[:MAX_PROBLEMS] + [f"... and {len(problems) - MAX_PROBLEMS:,} more problems"]
    if problems:
        raise ConfigError(problems)
    return cfg


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError([f"config file {path} not found (check the path)"])
    if path.is_dir():
        raise ConfigError([f"config {path} is a directory (pass a .yaml file)"])
    with open(path, "rb") as f:  # bounded: the path may be a huge file or a device that never ends
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB, not a config (a config is a few KB; "
                           "data files go in data.train)"])
    try:
        raw = safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text (re-save it as UTF-8)"]) from None
    except YamlRefused as e:
        raise ConfigError([f"{path}:{e.line}: {e.problem}" if e.line else f"{path}: {e.problem}"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError([f"{where}: malformed YAML ({clip(str(getattr(e, 'problem', e)))}); "
                           "check indentation and quoting"]) from None
    if raw is None:
        raise ConfigError([f"{path}: config is empty (start from examples/sentiment.yaml)"])
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}"])
    return raw


def _apply_override(raw: dict[str, Any], item: str, problems: list[str]) -> None:
    if "=" not in item:
        problems.append(f"override '{clip(item)}' is not key=value (e.g. train.lr=3e-4)")
        return
    key, _, text = item.partition("=")
    if len(text) > MAX_CONFIG_BYTES:
        problems.append(f"override `{clip(key)}`: the value is larger than {MAX_CONFIG_BYTES >> 20} MiB")
        return
    try:
        value = safe_load(text) if text.strip() else ""
    except YamlRefused as e:
        problems.append(f"override `{clip(key)}`: {e.problem}")
        return
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str, problems: list[str]) -> Any:
    """Build dataclass `cls` from `raw`, appending a message per problem instead of stopping."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"`{prefix.rstrip('.')}` must be a mapping of keys, got {show(raw)}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}{clip(str(key))}"
        if key not in fields:
            problems.append(f"unknown key `{name}`{_hint(str(key), prefix, fields)}")
            continue
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            values[key] = _build(typ, value, f"{name}.", problems)
            continue
        ok, coerced, expected = coerce(value, typ)
        if not ok:
            problems.append(f"`{name}` = {show(value)} is not {expected}")
            continue
        meta = fields[key].metadata
        bad = out_of_range(coerced, meta.get("lo"), meta.get("hi"))
        if bad:
            problems.append(f"`{name}` = {show(value)} {bad}")
            continue
        values[key] = coerced
    return cls(**values)


def _hint(key: str, prefix: str, fields: dict[str, Any]) -> str:
    """"; did you mean `train.lr`?" for a misspelt key, or an alias other tools use (Axolotl, LLaMA-Factory, HF
    TrainingArguments), also when it sits in another section (flat `learning_rate` at the top level)."""
    alias = ALIASES.get(key)
    if alias in fields:
        return f"; did you mean `{prefix}{alias}`?"
    if alias:
        homes = [k for k, _, _ in reference_rows() if k.rsplit(".", 1)[-1] == alias]
        if homes:
            return f"; did you mean `{homes[0]}`?"
    close = difflib.get_close_matches(clip(key), list(fields), n=1)
    return f"; did you mean `{prefix}{close[0]}`?" if close else f" (known: {', '.join(fields)})"


def _cross_checks(cfg: Config) -> list[str]:
    """Problems that involve more than one key."""
    problems = []
    if not cfg.name:
        problems.append("`name` is empty; set a run name, e.g. name: sentiment-lora")
    elif "/" in cfg.name or "\x00" in cfg.name or cfg.name in (".", ".."):
        problems.append(f"`name` = {show(cfg.name)} must be a plain directory name (no '/')")
    if "\x00" in cfg.output_dir:
        problems.append(f"`output_dir` = {show(cfg.output_dir)} contains a NUL character; set a plain path")
    if not cfg.data.train:
        problems.append("`data.train` is missing; set it to a training data file")
    if cfg.train.epochs == 0 and cfg.train.max_steps is None:  # the loop would still run one step
        problems.append("`train.epochs` = 0 trains nothing; set train.epochs above 0 (e.g. 3) or set train.max_steps")
    problems += _fraction_checks(cfg)
    problems += head_problems(cfg)  # confighead.py: train.head_epochs and train.pooling
    problems += _forgetting_checks(cfg)
    problems += objective_problems(cfg.task, cfg.train.objective)  # the tasks' own losses
    problems += privacy_problems(cfg)  # configprivacy.py: what privacy.dp and canaries refuse
    return problems


def _fraction_checks(cfg: Config) -> list[str]:
    """Each split fraction in (0, 1); only then their sum (one problem reported once, not twice)."""
    problems = []
    for split in ("validation", "test"):
        v = getattr(cfg.data, split)
        if isinstance(v, float) and not 0 < v < 1:
            problems.append(f"`data.{split}` = {v:g} must be a fraction between 0 and 1 (e.g. 0.1), or a file")
    fractions = [v for v in (cfg.data.validation, cfg.data.test) if isinstance(v, float)]
    if not problems and sum(fractions) >= 0.9:
        problems.append("`data.validation` + `data.test` fractions leave under 10% for training; lower them")
    return problems


def _forgetting_checks(cfg: Config) -> list[str]:
    """Continued runs and what protects earlier data (checked before any run directory exists); the task
    adds its own checks (which tasks continue, what replay/EWC protect)."""
    from .methods import method_class
    from .tasks import task_class

    problems = []
    if cfg.init_from and method_class(cfg.method.name).scratch:
        problems.append("`init_from` with method.name: scratch would throw the earlier weights away; "
                        "pick another method")
    return problems + task_class(cfg.task).config_problems(cfg)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Config, extra: dict[str, Any] | None = None, relative_to: Path | None = None) -> str:
    """The config as YAML (+ `_provenance`); `relative_to`: paths relative to that directory (a run's own)."""
    data = to_dict(cfg) if relative_to is None else relative_paths(to_dict(cfg), relative_to)
    if extra:
        # the absolute paths too: a run directory copied elsewhere still finds its model and data
        data["_provenance"] = {**extra, "paths": absolute_paths(to_dict(cfg))} if relative_to else extra
    return yaml.safe_dump(data, sort_keys=False)


def reference_rows(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, description) for every leaf key — the README's config reference is built from this."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows += reference_rows(hints[f.name], key + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((key, repr(default), f.metadata.get("doc", "")))
    return rows
