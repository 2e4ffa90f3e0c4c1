"""tuneforge: fine-tune pretrained language models for one job and find out honestly whether it worked.

Python API (mirrors the CLI):
    tuneforge.train("examples/sentiment.yaml", overrides=["train.epochs=1"])
    tuneforge.evaluate("runs/sentiment", "examples/sentiment/test.jsonl")
    tuneforge.predict("runs/sentiment", ["great kettle"])
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .version import __version__  # noqa: F401  (tuneforge.__version__)


def train(config: "str | Path | Any", overrides: list[str] | None = None, overwrite: bool = False,
          quiet: bool = False) -> Any:
    """Train from a YAML path or a Config; returns TrainOutcome(run_dir, eval)."""
    from .config import Config, load_config
    from .recipes.train import train as _train

    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    return _train(cfg, overwrite=overwrite, quiet=quiet)


def evaluate(run: str | Path, data: str) -> dict[str, Any]:
    """Metrics of a finished run on a new data file with the columns it was trained on."""
    from .recipes.inference import evaluate_run

    return evaluate_run(Path(run), data)


def predict(run: str | Path, texts: list[str]) -> list[dict[str, Any]]:
    """One prediction row per text (a label and probabilities, or a generated response)."""
    from .recipes.inference import predict_run

    return predict_run(Path(run), texts=texts)
