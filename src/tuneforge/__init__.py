"""tuneforge: fine-tune pretrained language models for one job and find out honestly whether it worked.

Python API (mirrors the CLI; every function has typed results):

    import tuneforge
    out = tuneforge.train("examples/sentiment.yaml", overrides=["train.epochs=1"])   # TrainOutcome
    model = tuneforge.load(out.run_dir)              # TunedModel: loaded once, kept
    model.predict(["great kettle"])                  # [Classification(text, label, probs)]
    model.evaluate("examples/sentiment/test.jsonl")  # Evaluation: ["accuracy"], ...
    bot = tuneforge.load("runs/support-bot")
    bot.generate("How long is the warranty?")        # Reply(text, finish_reason, prompt_tokens, ...)
    tuneforge.scan(["data/train.jsonl", "data/test.jsonl"])     # the PII + leakage audit
    tuneforge.export("runs/sentiment", merge=True, dtype="bf16")  # ExportResult
    tuneforge.compare("examples/sentiment.yaml", ["full", "lora"], sizes=[200])
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .version import __version__  # noqa: F401  (tuneforge.__version__)

if TYPE_CHECKING:
    from .config import Config
    from .recipes.export import ExportResult
    from .recipes.inference import Classification, Evaluation, Reply, TunedModel
    from .recipes.train import TrainOutcome

__all__ = ["train", "load", "evaluate", "predict", "scan", "export", "compare", "__version__"]


def train(config: "str | Path | Config", overrides: Sequence[str] | None = None, overwrite: bool = False,
          quiet: bool = False) -> "TrainOutcome":
    """Vet the data, fine-tune and evaluate per a YAML config (or a Config); writes the run directory.

    `overrides` are dotted `key=value` strings as on the command line. Returns TrainOutcome(run_dir, eval)
    with eval.json's content. Raises TuneforgeError (ConfigError, DataError) for a user mistake, with
    nothing written."""
    from .config import Config, load_config
    from .recipes.train import train as _train

    cfg = config if isinstance(config, Config) else load_config(config, list(overrides or []))
    return _train(cfg, overwrite=overwrite, quiet=quiet)


def load(run: str | Path) -> "TunedModel":
    """A finished run, loaded once: `.predict()`, `.classify()`, `.generate()`, `.stream()`, `.evaluate()`."""
    from .recipes.inference import load as _load

    return _load(run)


def evaluate(run: str | Path, data: str | Path) -> "Evaluation":
    """Metrics of a finished run on a data file with the columns it was trained on (loads the run once)."""
    return load(run).evaluate(data)


def predict(run: str | Path, texts: str | Sequence[str]) -> "list[Classification] | list[Reply]":
    """One prediction per text: a Classification (label and probabilities) or a Reply (generated text)."""
    return load(run).predict(texts)


def scan(data: str | Path | Sequence[str | Path], config: str | Path | None = None,
         columns: Sequence[str] | None = None) -> dict[str, Any]:
    """The PII and leakage audit of data files (the first is train) without training: data_audit.json's
    content (`pii`, `leakage`, `splits`), never a raw value. `config` takes files and columns from a config."""
    from .recipes.scan import scan as _scan

    paths = [str(data)] if isinstance(data, (str, Path)) else [str(p) for p in data]
    return _scan(paths if not config else [], str(config) if config else None, list(columns) if columns else None)


def export(run: str | Path, out: str | Path | None = None, merge: bool = False, dtype: str = "fp32",
           format: str = "hf") -> "ExportResult":
    """A run's model for the outside world: its model/ as is, `merge=True` a plain transformers model with
    adapters folded in (`dtype`: fp32, bf16 or fp16), `format="gguf"` a GGUF file + Ollama Modelfile
    (Llama-family instruction runs). Verified before it is kept."""
    from .recipes.export import export_run

    return export_run(Path(run), Path(out) if out else None, merge=merge, dtype=dtype, fmt=format)


def compare(config: str | Path, methods: Sequence[str], sizes: Sequence[int] = (),
            overrides: Sequence[str] | None = None, overwrite: bool = False) -> list[dict[str, Any]]:
    """Train the config's task under each method (and training-set size); returns compare.json's rows
    (method, size, trainable parameters, memory, time, the primary metric) and writes compare.md + plots."""
    from .config import load_config
    from .recipes.compare import compare as _compare

    cfg = load_config(config, list(overrides or []))
    return _compare(cfg, list(dict.fromkeys(methods)), sorted(set(sizes)), overwrite=overwrite)
