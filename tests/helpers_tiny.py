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


def assert_refused_in_one_line(tmp_path: Path, change: dict[str, Any], key: str, capsys: Any) -> None:
    """The tiny config with `change` (sections merged, other values replaced) is a ConfigError naming `key`, and
    `tuneforge train` on it prints exactly one `error:` line naming it, exits 2 and leaves no run directory."""
    import pytest

    from tuneforge import cli
    from tuneforge.config import load_config
    from tuneforge.errors import ConfigError

    raw = tiny_train_config(tmp_path / "none", tmp_path / "train.jsonl", tmp_path / "runs", name="bad")
    for section, value in change.items():
        raw[section] = {**raw.get(section, {}), **value} if isinstance(value, dict) else value
    with pytest.raises(ConfigError, match=key.replace("`", "")):
        load_config(None, base=raw)
    write_jsonl(tmp_path / "train.jsonl", sentiment_rows(20))
    assert cli.main(["train", str(write_config(tmp_path / "c.yaml", **raw)), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and key in err[0], err
    assert not (tmp_path / "runs" / "bad").exists()


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


SHIPPED_SYSTEM = "You are a kettle bot."


def shipped_runs(root: Path) -> dict[str, Path]:
    """Two finished runs to ship (export, serve, load elsewhere): a LoRA classifier on the tiny BERT, and a
    LoRA instruction run with a system prompt on a tiny Llama with SmolLM2's tokenizer and chat template,
    trained just enough to say something ("E means reset.")."""
    from tuneforge.config import load_config
    from tuneforge.recipes.train import train

    bert = make_tiny_bert(root / "bert")
    raw = tiny_train_config(bert, write_jsonl(root / "train.jsonl", sentiment_rows(36)), root / "runs", name="cls",
                            epochs=3, lr=5e-3)
    raw["method"] = {"name": "lora", "r": 4}
    cls = train(load_config(None, base=raw), quiet=True).run_dir
    lm = train(load_config(None, base=_lm_config(root)), quiet=True).run_dir
    return {"cls": cls, "lm": lm}


def _lm_config(root: Path) -> dict[str, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tuneforge.models import loading

    tok = loading.load_tokenizer(loading.resolve("smollm2"))
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                 tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)).save_pretrained(str(root / "llama"))
    tok.save_pretrained(str(root / "llama"))
    data = write_jsonl(root / "qa.jsonl", [{"instruction": f"What is code E{i}?", "output": f"E{i} means reset."}
                                           for i in range(12)])
    return {"name": "lm", "task": "instruction", "model": str(root / "llama"), "output_dir": str(root / "runs"),
            "method": {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.0},
            "data": {"train": str(data), "validation": 0.2, "max_length": 64, "system": SHIPPED_SYSTEM},
            "privacy": {"pii": "off"}, "leakage": {"policy": "warn"}, "forgetting": {"reference": None},
            "eval": {"max_new_tokens": 8, "batch_size": 8},
            "train": {"epochs": 6, "batch_size": 2, "precision": "fp32", "threads": 1, "lr": 2e-2, "warmup": 0}}
