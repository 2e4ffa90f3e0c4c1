"""A GGUF model, de-quantized once per machine: later loads read plain float32 safetensors.

Loading the embedded SmolLM2 from its GGUF cost every `train`, `advise`, `eval` and `chat` tens of seconds
(2 idle cores, 2026-12-01: the tokenizer's conversion from GGUF metadata 13.1 s, then the model 39.0 s — the
GGUF header parsed twice for the config, every tensor de-quantized, and this entry written; from the entry:
0.3 s + 0.3 s). What the first load makes — the float32 weights exactly
as training computes with them, the config without its GGUF quantization_config, the converted tokenizer — is
written here under a key of the GGUF file's sha256 and the transformers version (its de-quantizer), and every
later load reads that directory as an ordinary Hugging Face model (bitwise the same weights and token ids;
tested). The directory is built in a temporary one and renamed, so a crash or a concurrent run never leaves
half an entry where a load would find it; an entry that does not read is removed and rebuilt from the GGUF.

It lives in the Hugging Face hub cache this process uses (HF_HUB_CACHE / HF_HOME), beside the registered
bases of basecache.py, which links its weights from here instead of writing a second copy.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .source import ModelSource, hub_cache, sha256

DIR = "tuneforge-gguf"
DONE = "tuneforge-gguf.json"  # written last: an entry without it is incomplete
converted: dict[str, Any] = {}  # key -> the tokenizer this process converted from the GGUF (stored with the weights)


def key(src: ModelSource) -> str:
    """The entry's name: the GGUF file's content and the transformers version that de-quantizes it."""
    import transformers

    return hashlib.sha1(f"{sha256(src.path / str(src.gguf_file))} {transformers.__version__}".encode()).hexdigest()


def entry(src: ModelSource) -> Path:
    return hub_cache() / DIR / key(src)


def plain(src: ModelSource) -> ModelSource | None:
    """The de-quantized copy of a GGUF source as a plain model directory, or None while there is none."""
    where = entry(src)
    return ModelSource(src.name, where, None) if (where / DONE).is_file() else None


def discard(src: ModelSource) -> None:
    """Remove an entry that did not load (a truncated file, a disk error): the next load rebuilds it."""
    shutil.rmtree(entry(src), ignore_errors=True)


def store(src: ModelSource, model: Any, tokenizer: Any) -> None:
    """Write the de-quantized model and its tokenizer (best effort: a full disk only costs the speed-up)."""
    from safetensors import SafetensorError

    where = entry(src)
    if (where / DONE).is_file():
        return
    tmp: Path | None = None
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=where.parent, prefix=".tmp-"))
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / DONE).write_text(f'{{"gguf": "{src.path / str(src.gguf_file)}"}}\n', encoding="utf-8")
        try:
            tmp.rename(where)
        except OSError:  # another process stored it first: theirs is the same
            pass
    except (OSError, SafetensorError):  # a read-only or full cache: the next load de-quantizes again
        pass
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
