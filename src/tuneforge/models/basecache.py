"""The base a run's adapter sits on, under a stable name every Hugging Face tool resolves.

An adapter directory names its base in adapter_config.json (`base_model_name_or_path` + `revision`), and
PEFT's Auto classes, `transformers.pipeline` and vLLM load whatever that names. A venv path (an embedded
model) or a folder holding only a GGUF cannot be that name, so every base is registered once in the
Hugging Face hub cache as `tuneforge/<name>` at a 40-hex revision derived from its content, laid out
exactly as a download would be (blobs/ + snapshots/<revision>/ of links to them): a commit-hash revision
found in the cache loads with no network call, offline or not.

- safetensors bases (the embedded MiniLM, any HF directory): their weight files become blobs (hard links
  where the file system allows, else copies), so registering costs almost nothing;
- GGUF bases (the embedded SmolLM2, any .gguf): the de-quantized float32 weights, exactly what training
  computed with, written once as model.safetensors; every later run reuses them;
- the task may change config.json (a classifier's id2label/label2id/num_labels): each variant is its own
  revision of a few hundred bytes, sharing the weight blobs.

The record (name, revision, where the base came from, its sha256) goes into tuneforge.json and the model
card, so the base can be rebuilt by hand on a machine without this cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .source import ModelSource, hub_cache
from .source import sha256 as _sha256

NAMESPACE = "tuneforge"
FORMAT = "tuneforge-base-v1"  # bump when what a revision holds changes
WEIGHT_SUFFIXES = (".safetensors",)
KEPT_JSON = ("config.json", "generation_config.json", "model.safetensors.index.json")
# Files transformers and PEFT look for beside a model; marked absent (.no_exist/, as huggingface_hub does
# after a 404) so that no lookup for them ever goes to the network.
ABSENT = ("adapter_config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer_config.json",
          "processor_config.json", "preprocessor_config.json", "chat_template.json", "chat_template.jinja",
          "custom_generate/generate.py", "pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5",
          "flax_model.msgpack", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "added_tokens.json",
          "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
          "video_preprocessor_config.json")
UPSTREAM = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}


@dataclass
class BaseRecord:
    """Where a run's base is: its stable name and revision, and what it was made from."""

    name: str                 # tuneforge/<slug>: what adapter_config.json names
    revision: str             # 40 hex digits
    source: str               # the config's `model:` (an embedded name, a directory, a .gguf file)
    upstream: str | None      # the Hugging Face model it is (the card's base_model), when known
    sha256: dict[str, str]    # source file -> sha256 (first 16 hex digits): the weights it was built from
    dequantized: bool         # a GGUF base: float32 weights de-quantized from the file
    cache: str                # the snapshot directory (this machine)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def register(model: str, source: ModelSource, config_updates: dict[str, Any] | None = None,
             extra: list[Path] | None = None, write: bool = True) -> BaseRecord:
    """Register the base of `model:` (found at `source`) in the hub cache, once; return its record.

    `extra`: files put beside the base as they are (the run's tokenizer and generation config:
    transformers.pipeline() loads both from an adapter's base, not from the adapter); `write=False`: only
    the record (a full model needs no base)."""
    updates = config_updates or {}
    digests = {p.name: _sha256(p) for p in _source_files(source)}
    extra_files = {p.name: p.read_bytes() for p in extra or []}
    made_by = _gguf_key(source) if source.gguf_file else None  # de-quantization depends on transformers
    key = json.dumps({"format": FORMAT, "files": digests, "config": updates, "gguf": made_by,
                      "extra": {n: hashlib.sha256(b).hexdigest() for n, b in extra_files.items()}},
                     sort_keys=True, default=str)
    revision = hashlib.sha1(key.encode()).hexdigest()
    # One repository per content (its name ends in the revision's first digits), its refs/main on that one
    # revision: transformers' own adapter loading (pipeline(), AutoModelFor*) asks for `main`, not the revision.
    slug = f"{_slug(model, source)}-{revision[:10]}"
    repo = hub_cache() / f"models--{NAMESPACE}--{slug}"
    snapshot = repo / "snapshots" / revision
    record = BaseRecord(f"{NAMESPACE}/{slug}", revision, model, UPSTREAM.get(model) or _upstream(source),
                        {k: v[:16] for k, v in digests.items()}, bool(source.gguf_file), str(snapshot) if write else "")
    if write and not (snapshot / "config.json").exists():
        _build(repo, snapshot, source, digests, updates, extra_files)
    return record


def _source_files(source: ModelSource) -> list[Path]:
    if source.gguf_file:
        return [source.path / source.gguf_file]
    return sorted(p for p in source.path.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in KEPT_JSON))


def _slug(model: str, source: ModelSource) -> str:
    if model in UPSTREAM:
        name = UPSTREAM[model].split("/")[-1] + (f"-{Path(source.gguf_file).suffixes[-2].lstrip('.')}"
                                                  if source.gguf_file and len(Path(source.gguf_file).suffixes) > 1
                                                  else "")
    else:
        name = Path(source.gguf_file).stem if source.gguf_file else source.path.resolve().name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:96] or "base"


def _upstream(source: ModelSource) -> str | None:
    """The hub id a directory came from, when it is a hub cache snapshot (models--org--name/snapshots/x)."""
    parts = source.path.resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--"):].replace("--", "/")
    return None


def _build(repo: Path, snapshot: Path, source: ModelSource, digests: dict[str, str], updates: dict[str, Any],
           extra_files: dict[str, bytes]) -> None:
    """Write blobs and the snapshot in a temporary directory, then rename it into place (a crash or a
    concurrent run never leaves a half snapshot where transformers would find it)."""
    blobs = repo / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    (repo / "snapshots").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=repo / "snapshots", prefix=".tmp-"))
    try:
        files = _dequantized(source, blobs, digests) if source.gguf_file else \
            {p.name: _blob_from(p, blobs, digests[p.name]) for p in _source_files(source) if p.suffix != ".json"}
        config = _config(source, blobs)
        config.update(updates)
        files["config.json"] = _blob_bytes(json.dumps(config, indent=2, sort_keys=True).encode(), blobs)
        for name in ("generation_config.json", "model.safetensors.index.json"):
            if not source.gguf_file and (source.path / name).is_file():
                files[name] = _blob_bytes((source.path / name).read_bytes(), blobs)
        files.update({name: _blob_bytes(data, blobs) for name, data in extra_files.items()})
        for name, blob in files.items():
            os.symlink(os.path.relpath(blob, tmp), tmp / name)
        absent = repo / ".no_exist" / snapshot.name
        absent.mkdir(parents=True, exist_ok=True)
        for name in ABSENT:
            if name not in files:
                (absent / name).parent.mkdir(parents=True, exist_ok=True)
                (absent / name).touch()
        try:
            tmp.rename(snapshot)
        except OSError:  # another process registered it first: theirs is identical
            if not (snapshot / "config.json").exists():
                raise
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(snapshot.name, encoding="utf-8")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _blob_from(path: Path, blobs: Path, digest: str) -> Path:
    """A blob holding `path`'s bytes: a hard link where possible (no space), else a copy."""
    blob = blobs / digest
    if not blob.exists():
        part = blobs / f".{digest}.part"
        try:
            os.link(path, part)
        except OSError:
            shutil.copyfile(path, part)
        part.replace(blob)
    return blob


def _blob_bytes(data: bytes, blobs: Path) -> Path:
    blob = blobs / hashlib.sha256(data).hexdigest()
    if not blob.exists():
        part = blobs / f".{blob.name}.part"
        part.write_bytes(data)
        part.replace(blob)
    return blob


def _config(source: ModelSource, blobs: Path) -> dict[str, Any]:
    if source.gguf_file:  # written beside the de-quantized weights
        return json.loads((blobs / f"gguf-{_gguf_key(source)}.config.json").read_text(encoding="utf-8"))
    return json.loads((source.path / "config.json").read_text(encoding="utf-8"))


def _gguf_key(source: ModelSource) -> str:
    from . import ggufcache

    return ggufcache.key(source)


def _dequantized(source: ModelSource, blobs: Path, digests: dict[str, str]) -> dict[str, Path]:
    """{model.safetensors: blob} of the GGUF's weights de-quantized to float32, as training loads them
    (loading.load_causal_lm); written once per GGUF file and transformers version."""
    key = _gguf_key(source)
    weights, config = blobs / f"gguf-{key}.safetensors", blobs / f"gguf-{key}.config.json"
    for done in sorted(blobs.parent.parent.glob(f"models--{NAMESPACE}--*/blobs/gguf-{key}.config.json")):
        if not config.exists() and done.with_name(weights.name).exists():  # another variant of this base made them
            _blob_from(done.with_name(weights.name), blobs, weights.name)
            _blob_from(done, blobs, config.name)
    if not (weights.exists() and config.exists()):
        config.write_text(json.dumps(_dequantize_into(source, weights), indent=2, sort_keys=True), encoding="utf-8")
    return {"model.safetensors": weights}


def _dequantize_into(source: ModelSource, weights: Path) -> dict[str, Any]:
    """Put the GGUF's float32 weights at `weights` and return their config.json: a hard link to ggufcache's
    entry (made by the first load on this machine, or by loading now), else saved from a model loaded here."""
    from . import ggufcache
    from .loading import load_causal_lm

    made = ggufcache.plain(source)
    model = load_causal_lm(source) if made is None else None  # the load writes the entry
    made = made or ggufcache.plain(source)
    if made is not None:  # the same bytes: no second copy where the file system allows a link
        _blob_from(made.path / "model.safetensors", weights.parent, weights.name)
        saved = json.loads((made.path / "config.json").read_text(encoding="utf-8"))
    else:  # the entry could not be written (a read-only or full cache)
        with tempfile.TemporaryDirectory(dir=weights.parent) as out:
            model.save_pretrained(out, safe_serialization=True)
            saved = json.loads((Path(out) / "config.json").read_text(encoding="utf-8"))
            Path(out, "model.safetensors").replace(weights)
    saved.pop("quantization_config", None)
    return saved

