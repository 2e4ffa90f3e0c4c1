"""Where a model's files are (ModelSource), and the two file facts several model modules need: the Hugging Face
hub cache this process uses, and a file's sha256 (memoized per process by path, size and mtime)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ModelSource:
    """Where a model's files are: a directory, and the GGUF file inside it if the model is GGUF."""

    name: str
    path: Path
    gguf_file: str | None = None


def hub_cache() -> Path:
    """The Hugging Face hub cache this process uses (HF_HUB_CACHE / HF_HOME, as huggingface_hub reads them)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def sha256(path: Path, memo: dict[tuple[str, int, int], str] = {}) -> str:  # noqa: B006 (a per-process memo)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in memo:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
        memo[key] = digest.hexdigest()
    return memo[key]
