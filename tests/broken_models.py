"""Broken copies of a model directory, as a user's disk holds them: truncated or garbage weights, GGUF junk,
a pickle torch's safe loader refuses, a directory without its vocabulary. Used by the bad-input matrix and
tests/test_models_broken.py; each function takes a good model directory and returns the broken model path.
"""
from __future__ import annotations

import os
import pickle
import random
import shutil
import struct
from pathlib import Path
from typing import Any, Callable


def broken_model(make: Callable[[Path, Path], Path], **cfg_keys: Any) -> Callable[[dict[str, Any], Path], None]:
    """A config mutation for the bad-input matrix: `model:` becomes a broken copy of the good model, made
    by `make(good, tmp / "broken-model")`; `cfg_keys` set other top-level keys (allow_pickle, say)."""

    def mutate(cfg: dict[str, Any], tmp: Path) -> None:
        cfg.update(model=str(make(Path(cfg["model"]), tmp / "broken-model")), **cfg_keys)

    return mutate


def copy_model(good: Path, to: Path) -> Path:
    shutil.copytree(good, to)
    return to


def truncated_safetensors(good: Path, to: Path) -> Path:
    """model.safetensors cut in half: what an interrupted copy or download leaves."""
    d = copy_model(good, to)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    return d


def garbage_safetensors_beside_bin(good: Path, to: Path) -> Path:
    """Garbage model.safetensors next to pickle weights (transformers reads the safetensors first)."""
    from helpers_tiny import make_tiny_bert

    d = make_tiny_bert(to, safe=False)
    (d / "model.safetensors").write_bytes(bytes(random.Random(0).getrandbits(8) for _ in range(4096)))
    return d


def garbage_gguf(good: Path, to: Path) -> Path:
    to.mkdir(parents=True, exist_ok=True)
    path = to / "model.gguf"
    path.write_bytes(b"<html>404 not found</html>\n" * 100)
    return path


def gguf_header_then_junk(good: Path, to: Path) -> Path:
    """The GGUF magic and version 3, then junk where the counts and metadata belong."""
    to.mkdir(parents=True, exist_ok=True)
    path = to / "model.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + bytes(random.Random(1).getrandbits(8) for _ in range(4096)))
    return path


class RunsCode:
    """Unpickling this calls os.system: what a malicious .bin carries. Loading must refuse, never run it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def pickle_that_runs_code(good: Path, to: Path) -> Path:
    """pytorch_model.bin holding a pickled os.system call (plain pickle, protocol 4); `to/PWNED` marks a run."""
    from helpers_tiny import make_tiny_bert

    d = make_tiny_bert(to, safe=False)
    (d / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": RunsCode(to / "PWNED")}, protocol=4))
    return d


def without_vocabulary(good: Path, to: Path) -> Path:
    """The model directory without tokenizer.json: it still loads, as a tokenizer of special tokens only."""
    d = copy_model(good, to)
    for name in ("tokenizer.json", "vocab.txt"):
        if (d / name).exists():
            os.remove(d / name)
    return d


def tokenizer_not_json(good: Path, to: Path) -> Path:
    d = copy_model(good, to)
    data = (d / "tokenizer.json").read_bytes()
    (d / "tokenizer.json").write_bytes(data[:1000])
    return d
