"""The base model's evaluation and the baselines, cached per machine: a rerun of the same model on the same data
(another learning rate, more epochs, `--overwrite`) does not evaluate the untouched start again.

The key is what those numbers are a function of, read from the objects rather than from config names:
- every tensor of the model as it stands before the first step: the pretrained weights, the method's fresh
  adapters and the task's freshly initialised head (another seed, method or label set is another key);
- the encoded examples of the evaluated splits and of the training split (the linear probe is fitted on it);
- the autocast dtype and the `eval` settings (batch size, generation length, ...);
- the versions of torch and transformers, and tuneforge's own source files (any change to the code that
  computes the numbers is a new key, also without a version bump).
Entries are JSON files under hub_cache()/tuneforge-evals/ (written atomically); one that cannot be read is
recomputed, and a cache that cannot be written only costs the speed-up. The key costs 0.07-0.13 s on MiniLM and
0.4-0.7 s on SmolLM2 (measured on 2 idle cores, weights and examples hashed), against the 6.4 s the sentiment
example's base evaluation and baselines take as a run's first forwards (bf16, 2 idle cores; 4.7-4.8 s warm).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import TuneforgeError
from ..models.source import hub_cache
from ..runs.rundir import atomic_write_json

PACKAGE = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over tuneforge's own .py files (names and bytes), once per process."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def key(model: torch.nn.Module, splits: dict[str, list[Any]], eval_cfg: Any, dtype: torch.dtype | None) -> str | None:
    """The cache key of evaluating `model` on `splits` (name -> encoded examples); None: not cacheable (examples
    that do not pickle)."""
    import transformers

    h = hashlib.sha256()
    for part in (code_digest(), torch.__version__, transformers.__version__, str(dtype),
                 json.dumps(dataclasses.asdict(eval_cfg), sort_keys=True, default=str)):
        h.update(part.encode())
    for name, tensor in model.state_dict().items():
        if isinstance(tensor, torch.Tensor):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    try:
        h.update(pickle.dumps(sorted(splits.items()), protocol=4))
    except (pickle.PicklingError, TypeError, AttributeError):
        return None
    return h.hexdigest()


def _path(digest: str) -> Path:
    return hub_cache() / "tuneforge-evals" / f"{digest}.json"


def read(digest: str | None) -> dict[str, Any] | None:
    """The cached entry ({"base", "base_rows", "baselines"}), or None (absent, unreadable, or no key)."""
    if digest is None:
        return None
    try:
        found = json.loads(_path(digest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and {"base", "base_rows", "baselines"} <= found.keys() else None


def write(digest: str | None, entry: dict[str, Any]) -> None:
    """Store `entry` under `digest` (atomically); a cache that cannot be written is skipped silently."""
    if digest is None:
        return
    path = _path(digest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, entry)
    except (OSError, TuneforgeError):  # read-only or full: the run goes on, only uncached
        return
