"""Shared fixtures: tiny random models (seconds, not minutes) and small data files."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

# Runs register their base in the Hugging Face hub cache (models/basecache.py): tests use their own, never
# the user's. Set before anything imports huggingface_hub, which reads it once.
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="tuneforge-tests-hf-")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs `-n 2`), pin each worker to a core of its own.

    Training takes all the cores it is allowed (training/device.set_threads reads the affinity), so two workers
    would each run two threads on two cores, and oversubscribed OpenMP threads spin against each other. Pinned,
    every run a worker starts, in process or as a child process (the CLI, torchrun ranks), gets one core.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ...
    if not worker or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})
    os.environ["OMP_NUM_THREADS"] = "1"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from tuneforge.models import loading as models

    return models.load_tokenizer(models.resolve("minilm"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_tokenizer) -> Path:
    """A 2-layer, 32-wide random BERT with the real MiniLM tokenizer, saved like any HF model dir."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(str(path), safe_serialization=True)
    minilm_tokenizer.save_pretrained(str(path))
    return path


SENTIMENT_WORDS = {
    "positive": ["great", "love", "excellent", "perfect", "happy", "wonderful"],
    "negative": ["awful", "broken", "terrible", "refund", "hate", "useless"],
    "neutral": ["okay", "average", "fine", "arrived", "standard", "normal"],
}


def toy_rows(n: int, seed: int = 0) -> list[dict]:
    """Labelled toy reviews whose label is readable from the words (learnable in a few steps)."""
    import random

    rng = random.Random(seed)
    rows = []
    labels = sorted(SENTIMENT_WORDS)
    for i in range(n):
        label = labels[i % 3]
        words = rng.sample(SENTIMENT_WORDS[label], 3) + rng.sample(["the", "kettle", "was", "very", "it", "is"], 3)
        rng.shuffle(words)
        rows.append({"id": i, "text": " ".join(words) + f" #{i}", "label": label})
    return rows


@pytest.fixture
def toy_data(tmp_path) -> dict[str, Path]:
    return {"train": write_jsonl(tmp_path / "train.jsonl", toy_rows(60, 0)),
            "test": write_jsonl(tmp_path / "test.jsonl", toy_rows(30, 1))}


@pytest.fixture(scope="session")
def shipped_runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny finished LoRA classifier and LoRA instruction run (helpers_tiny.shipped_runs), shared by the
    tests of what leaves a run: portable model/, export, serve, tuneforge.load."""
    from helpers_tiny import shipped_runs as build

    return build(tmp_path_factory.mktemp("shipped"))
