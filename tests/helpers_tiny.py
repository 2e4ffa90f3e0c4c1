"""Tiny random models and small data files for tests: built in seconds, no network, any test may import them.

    from helpers_tiny import make_tiny_bert, make_tiny_llama, write_jsonl, sentiment_rows, write_config
"""
from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

import yaml

SENTIMENT_WORDS = {
    "positive": ["great", "love", "excellent", "perfect", "happy", "wonderful"],
    "negative": ["awful", "broken", "terrible", "refund", "hate", "useless"],
    "neutral": ["okay", "average", "fine", "arrived", "standard", "normal"],
}
FILLER = ["the", "kettle", "was", "very", "it", "is", "lamp", "really"]


@functools.lru_cache(maxsize=1)
def minilm_tokenizer() -> Any:
    """The embedded MiniLM (BERT WordPiece) tokenizer: real vocabulary, loads from local disk."""
    from tuneforge.models import loading as models

    return models.load_tokenizer(models.resolve("minilm"))


def make_tiny_bert(directory: Path, seed: int = 0, hidden: int = 32, layers: int = 2, safe: bool = True) -> Path:
    """A random 2-layer, 32-wide BERT plus the MiniLM tokenizer, saved like any HF model directory.

    `safe=False` saves pickle weights (pytorch_model.bin), for tests of the pickle refusal.
    """
    import torch
    from transformers import BertConfig, BertModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = minilm_tokenizer()
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128)
    model = BertModel(config)
    if safe:
        model.save_pretrained(str(directory), safe_serialization=True)
    else:  # what an old checkpoint looks like; transformers 5 no longer writes these itself
        config.save_pretrained(str(directory))
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
    tok.save_pretrained(str(directory))
    return directory


def make_tiny_llama(directory: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random 2-layer Llama with the MiniLM tokenizer and a minimal chat template, for causal-LM tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = minilm_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(str(directory), safe_serialization=True)
    tok.save_pretrained(str(directory))
    # A chat template and eos so chat/instruction code paths work; the tokenizer itself is BERT's.
    cfg_path = directory / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    tok_cfg.update({"eos_token": "[SEP]", "bos_token": "[CLS]", "chat_template": CHAT_TEMPLATE})
    cfg_path.write_text(json.dumps(tok_cfg, indent=2), encoding="utf-8")
    return directory


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} [SEP] {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sentiment_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Labelled toy reviews whose label is readable from the words (learnable in a few steps)."""
    rng = random.Random(seed)
    labels = sorted(SENTIMENT_WORDS)
    rows = []
    for i in range(n):
        label = labels[i % 3]
        words = rng.sample(SENTIMENT_WORDS[label], 3) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"id": f"s{seed}-{i}", "text": " ".join(words) + f" item{seed}x{i}", "label": label})
    return rows


def write_config(path: Path, **sections: Any) -> Path:
    """A YAML config from keyword sections, e.g. write_config(p, name="x", train={"epochs": 1})."""
    path = Path(path)
    path.write_text(yaml.safe_dump(sections, sort_keys=False), encoding="utf-8")
    return path


def tiny_train_config(model_dir: Path, train_file: Path, out_dir: Path, name: str = "tiny",
                      **train: Any) -> dict[str, Any]:
    """A fast, deterministic classification config for the tiny BERT (fp32, 1 thread, no base eval)."""
    return {
        "name": name, "task": "classification", "model": str(model_dir), "output_dir": str(out_dir),
        "method": {"name": "full"},
        "data": {"train": str(train_file), "validation": 0.2, "max_length": 32},
        "privacy": {"pii": "off"}, "leakage": {"policy": "warn"},
        "forgetting": {"reference": None},
        "eval": {"base": False, "batch_size": 32},
        "train": {"epochs": 2, "batch_size": 4, "lr": 1e-3, "precision": "fp32", "threads": 1, "seed": 0,
                  "log_every": 1, "warmup": 0.0, **train},
    }
