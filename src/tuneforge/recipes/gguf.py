"""`tuneforge export RUN --format gguf`: a Llama-family instruction run as one GGUF file (llama.cpp, Ollama,
LM Studio), plus an Ollama Modelfile carrying the training chat template and system prompt.

The merged model is written with the `gguf` package's GGUFWriter and its tensor-name map for the llama
architecture (the names llama.cpp reads: token_embd, blk.N.attn_q, ...). Two things llama.cpp's own
converter does are done here too: q_proj/k_proj rows are permuted from Hugging Face's rotate-half layout to
the interleaved one GGUF expects (transformers permutes them back on load), and a tied lm_head is left out
(the runtime reuses token_embd). The tokenizer goes in as llama.cpp's `gpt2` byte-level BPE (tokens, types,
merges, special ids), with the run's chat template (system prompt built in).

Verified before it is kept: transformers loads the file back (`gguf_file=`), its tokenizer encodes the
probe prompts to the run's ids, and greedy generation gives the run's text for each of them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import TuneforgeError

ARCHITECTURES = ("llama", "mistral")  # Hugging Face model_type values written as GGUF's llama architecture
PROBES = ["How long is the warranty?", "What does error E3 mean?", "Explain in one sentence what fine-tuning is.",
          "Do you ship abroad?", "Hello!"]
TYPES = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}
FILE_TYPES = {"fp32": "ALL_F32", "fp16": "MOSTLY_F16", "bf16": "MOSTLY_BF16"}


def gguf_problem(task: Any, model: torch.nn.Module) -> str | None:
    """Why this run cannot be written as GGUF here (None: it can)."""
    if not task.generates:
        return ("GGUF export is for instruction runs (llama.cpp and Ollama serve generative models); export a "
                "classifier with --merge for transformers or vLLM")
    kind = getattr(model.config, "model_type", None)
    if kind not in ARCHITECTURES:
        return f"GGUF export writes Llama-family models (model_type {', '.join(ARCHITECTURES)}); this one is {kind}"
    if _rope(model.config).get("rope_type", "default") != "default":
        return "GGUF export does not write scaled RoPE yet; export with --merge for transformers or vLLM"
    tokenizer = task.tokenizer
    backend = json.loads(tokenizer.backend_tokenizer.to_str()) if hasattr(tokenizer, "backend_tokenizer") else {}
    if backend.get("model", {}).get("type") != "BPE" or "ByteLevel" not in json.dumps(backend.get("pre_tokenizer")):
        return "GGUF export writes byte-level BPE tokenizers (llama.cpp's gpt2 type); this tokenizer is not one"
    return None


def write_gguf(model: torch.nn.Module, task: Any, path: Path, dtype: str, pre: str | None) -> None:
    """The merged causal LM and the run's tokenizer as one GGUF file at `path`."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    heads, kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_name(path.stem)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_rope_freq_base(float(_rope(config).get("rope_theta") or getattr(config, "rope_theta", None) or 1e4))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(int(getattr(gguf.LlamaFileType, FILE_TYPES[dtype])))
    _tokenizer(writer, task, pre)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for name, tensor in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue  # the runtime reuses token_embd
        out = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if out is None:
            raise TuneforgeError(f"GGUF export: no GGUF name for tensor {name}; export with --merge instead")
        data = tensor.detach().float().cpu().numpy()
        if name.endswith("q_proj.weight"):
            data = _permute(data, heads, heads)
        elif name.endswith("k_proj.weight"):
            data = _permute(data, heads, kv)
        _add(writer, out, data, dtype if data.ndim > 1 else "fp32")  # norms stay float32, as llama.cpp keeps them
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _rope(config: Any) -> dict[str, Any]:
    """RoPE settings: transformers 5's rope_parameters, or the older rope_scaling (+ rope_theta)."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return dict(rope) if isinstance(rope, dict) else {}


def _permute(weights: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """Hugging Face's rotate-half q/k rows → GGUF's interleaved pairs (llama.cpp's convert_hf_to_gguf)."""
    if n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _add(writer: Any, name: str, data: np.ndarray, dtype: str) -> None:
    import gguf

    qtype = getattr(gguf.GGMLQuantizationType, TYPES[dtype])
    packed = gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)
    writer.add_tensor(name, packed, raw_shape=data.shape, raw_dtype=qtype)


def _tokenizer(writer: Any, task: Any, pre: str | None) -> None:
    import gguf

    tok = task.tokenizer
    backend = json.loads(tok.backend_tokenizer.to_str())
    tokens = tok.convert_ids_to_tokens(list(range(len(tok))))
    special = set(tok.all_special_ids) | {i for i, t in tok.added_tokens_decoder.items() if t.special}
    added = set(tok.added_tokens_decoder)
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.USER_DEFINED if i in added
             else gguf.TokenType.NORMAL for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre or "default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for kind, value in (("bos", tok.bos_token_id), ("eos", task.stop_ids[0]), ("unk", tok.unk_token_id),
                        ("pad", tok.pad_token_id)):
        if value is not None:
            getattr(writer, {"bos": "add_bos_token_id", "eos": "add_eos_token_id", "unk": "add_unk_token_id",
                             "pad": "add_pad_token_id"}[kind])(int(value))
    writer.add_add_bos_token(bool(getattr(tok, "add_bos_token", False)))
    writer.add_chat_template(task.portable_chat_template())


def source_pre(cfg: Any) -> str | None:
    """The GGUF pre-tokenizer name of the run's base when it was a GGUF file (llama.cpp's name for it)."""
    import gguf

    from ..models import loading

    src = loading.resolve(cfg.model)
    if not src.gguf_file:
        return None
    field = gguf.GGUFReader(str(src.path / src.gguf_file)).fields.get("tokenizer.ggml.pre")
    return str(field.contents()) if field is not None else None


def verify(path: Path, task: Any, expected: list[str], device: torch.device) -> list[str]:
    """Load the GGUF back with plain transformers and check its tokenizer and greedy text against the run's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..evaluation.generation import greedy

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, torch_dtype=torch.float32)
    model.eval()
    got = []
    for prompt, want in zip(PROBES, expected):
        ours = task.prompt_ids([{"role": "user", "content": prompt}])
        theirs = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=True)
        theirs = theirs["input_ids"] if isinstance(theirs, dict) or hasattr(theirs, "keys") else theirs
        if list(theirs) != list(ours):
            raise TuneforgeError(f"the GGUF's tokenizer encodes the prompt {prompt!r} differently from the run's; "
                                 "nothing was exported")
        (new,) = greedy(model, [ours], task.max_new_tokens, device, None, task.stop_ids[0], task.stop_ids)
        text = task.decode_reply(new)
        if text != want:
            raise TuneforgeError(f"the GGUF model answers {prompt!r} with {text[:80]!r}, the run with {want[:80]!r}; "
                                 "nothing was exported (with --dtype fp16/bf16, try fp32)")
        got.append(text)
    return got


SENTINELS = {"system": "\x00SYSTEM\x00", "user": "\x00PROMPT\x00", "assistant": "\x00RESPONSE\x00"}
GO = {"system": "{{ .System }}", "user": "{{ .Prompt }}", "assistant": "{{ .Response }}"}


def modelfile(gguf_name: str, task: Any) -> str:
    """An Ollama Modelfile: the GGUF, the training chat template (rendered from the Jinja template into
    Ollama's Go template), the run's system prompt and its stop tokens."""
    render = task.render
    sys_msg, user, reply = ({"role": r, "content": SENTINELS[r]} for r in ("system", "user", "assistant"))
    full = render([sys_msg, user, reply], False)
    system_block = render([sys_msg], False)
    if not full.startswith(system_block):
        raise TuneforgeError("the chat template renders a system turn that later turns change; no Modelfile written")
    rest = full[len(system_block):]
    without = render([user, reply], False)
    default = without[:-len(rest)] if rest and without.endswith(rest) else ""
    template = "{{ if .System }}" + system_block + "{{ else }}" + default + "{{ end }}" + rest
    for role, mark in SENTINELS.items():
        template = template.replace(mark, GO[role])
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    if task.fmt.system:
        lines.append(f'SYSTEM """{task.fmt.system}"""')
    for token in task.tokenizer.convert_ids_to_tokens(task.stop_ids):
        lines.append(f'PARAMETER stop "{token}"')
    return "\n".join(lines) + "\n"
