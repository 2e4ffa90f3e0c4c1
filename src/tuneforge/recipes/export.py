"""`tuneforge export RUN [--merge] [--dtype fp32|bf16|fp16] [--format hf|gguf]`: hand a run's model to the
outside world.

Without --merge the run's model/ artifact is copied as is (a PEFT adapter, a tuneforge bottleneck adapter,
or a full model). With --merge the result is one plain Hugging Face model directory that
`AutoModelForSequenceClassification` / `AutoModelForCausalLM.from_pretrained` load without tuneforge or PEFT:
LoRA/DoRA updates are folded into the weights (QLoRA: into the de-quantized 4-bit weights, which is exactly
what the run computed with), saved in `--dtype` (bf16/fp16 halve the size), with the tokenizer (chat
template and system prompt), generation_config.json and a model card. `--format gguf` writes a Llama-family
instruction run as one GGUF file and an Ollama Modelfile (recipes/gguf.py). Every export is verified before
it is kept: plain transformers reloads it and it must predict what the run predicts (fp32: every logit
within 1e-3; bf16/fp16: the same labels or next tokens; GGUF: the same greedy text for five prompts).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import TuneforgeError
from ..methods import get_method
from ..runs import card, reading
from . import gguf
from .inference import load_run

MARK = "tuneforge_export.json"
TOLERANCE = 1e-3  # max |Δlogit| between merged and unmerged; fp32 merges land around 1e-6
PROBES = ["The kettle arrived quickly and works perfectly.", "Broken on arrival, I want a refund.",
          "It is a lamp. It turns on.", "Explain in one sentence what fine-tuning is."]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FORMATS = ("hf", "gguf")


@dataclass
class ExportResult:
    """What `export` wrote and how it was checked."""

    out: str
    kind: str
    method: str
    merged: bool
    run: str
    dtype: str = "fp32"
    format: str = "hf"
    bytes: int = 0                       # the weights written (model.safetensors or the .gguf file)
    max_abs_diff: float | None = None    # merged: max |logit difference| against the run on the probe texts
    probes: int = 0
    files: list[str] = field(default_factory=list)


def export_command(run_dir: Path, out_dir: Path | None, merge: bool, dtype: str = "fp32", fmt: str = "hf") -> int:
    info = export_run(run_dir, out_dir, merge, dtype, fmt)
    print(f"exported {info.kind} to {info.out} ({info.bytes / 2 ** 20:.1f} MiB of weights)")
    if info.format == "gguf":
        print(f"verified: transformers loads the GGUF (gguf_file=) and answers {info.probes} prompts with the "
              f"run's greedy text; Ollama: cd {info.out} && ollama create {Path(info.run).name} -f Modelfile")
    elif info.max_abs_diff is not None:
        print(f"verified: plain transformers loads it; max |logit difference| vs the run = "
              f"{info.max_abs_diff:.2e} on {info.probes} probe texts")
    return 0


def export_run(run_dir: Path, out_dir: Path | None = None, merge: bool = False, dtype: str = "fp32",
               fmt: str = "hf") -> ExportResult:
    if dtype not in DTYPES:
        raise TuneforgeError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    if fmt not in FORMATS:
        raise TuneforgeError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if dtype != "fp32" and not merge and fmt == "hf":
        raise TuneforgeError(f"--dtype {dtype} needs --merge (the unmerged export copies model/ as it is)")
    reading.require_run(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "export"
    if out.exists() and any(out.iterdir()) and not (out / MARK).exists():
        raise TuneforgeError(f"{out} exists and is not an earlier export; choose another --out")
    meta = reading.read_meta(run_dir)
    method = get_method(meta["method"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        if fmt == "gguf":
            info = _gguf(run_dir, method, dtype, tmp)
        elif merge:
            info = _merged(run_dir, method, meta, dtype, tmp)
        else:
            shutil.copytree(run_dir / "model", tmp, dirs_exist_ok=True)
            kind = "full model" if method.saves_full_model else f"{meta['method']} adapter (needs its base model)"
            info = {"kind": kind, "bytes": _weights_bytes(tmp)}
        result = ExportResult(out=str(out), method=meta["method"], merged=merge or fmt == "gguf", run=str(run_dir),
                              dtype=dtype, format=fmt, files=sorted(p.name for p in tmp.iterdir()), **info)
        (tmp / MARK).write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return result


def _merged(run_dir: Path, method: Any, meta: dict[str, Any], dtype: str, out: Path) -> dict[str, Any]:
    """Merge, save in HF format (in `dtype`), reload with plain transformers and compare with the unmerged run."""
    problem = method.merge_problem()
    if problem:  # before anything is loaded
        raise TuneforgeError(problem)
    cfg, task, model = load_run(run_dir)
    model.to("cpu").eval()
    tokenizer = task.tokenizer
    batch = tokenizer(PROBES, return_tensors="pt", padding=True)
    with torch.no_grad():
        before = model(**batch).logits.float()
        merged = method.merge(model).eval().to(DTYPES[dtype])
        merged.save_pretrained(str(out), safe_serialization=True)
    for name in ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model"):
        if (run_dir / "model" / name).is_file():  # the run's tokenizer as saved: its template, system prompt
            shutil.copyfile(run_dir / "model" / name, out / name)
    (out / "tuneforge.json").write_text(json.dumps({**meta, "method": "full", "merged_from": meta["method"],
                                                    "dtype": dtype}, indent=2), encoding="utf-8")
    (out / "README.md").write_text(_card(run_dir, cfg, task, method, meta, f"merged, {dtype}"), encoding="utf-8")
    reloaded = _plain_load(out, task.auto_class, DTYPES[dtype])
    with torch.no_grad():
        after = reloaded(**batch).logits.float()
    diff = float((after - before).abs().max())
    same = bool((after[:, -1].argmax(-1) == before[:, -1].argmax(-1)).all()) if after.ndim == 3 else \
        bool((after.argmax(-1) == before.argmax(-1)).all())
    if (dtype == "fp32" and not diff <= TOLERANCE) or not same:
        raise TuneforgeError(f"the merged model predicts differently from the run (max |logit difference| "
                             f"{diff:.3g}{'' if same else ', and a different label or next token'}); nothing was "
                             "exported" + (" (try --dtype fp32)" if dtype != "fp32" else ""))
    return {"kind": f"merged full model (Hugging Face format, {dtype})", "max_abs_diff": diff, "probes": len(PROBES),
            "bytes": _weights_bytes(out)}


def _gguf(run_dir: Path, method: Any, dtype: str, out: Path) -> dict[str, Any]:
    """The run's replies to the probe prompts, then merge, write the GGUF + Modelfile and verify them."""
    problem = method.merge_problem()
    if problem:
        raise TuneforgeError(problem)
    cfg, task, model = load_run(run_dir)
    model.to("cpu").eval()
    problem = gguf.gguf_problem(task, getattr(model, "get_base_model", lambda: model)())
    if problem:
        raise TuneforgeError(problem)
    device = torch.device("cpu")
    expected = task.generate(model, [task.prompt_ids([{"role": "user", "content": p}]) for p in gguf.PROBES],
                             len(gguf.PROBES), device, None)
    merged = method.merge(model).eval()
    path = out / f"{cfg.name}-{dtype}.gguf"
    gguf.write_gguf(merged, task, path, dtype, gguf.source_pre(cfg))
    gguf.verify(path, task, expected, device)
    (out / "Modelfile").write_text(gguf.modelfile(path.name, task), encoding="utf-8")
    return {"kind": f"GGUF ({dtype}) + Ollama Modelfile", "probes": len(gguf.PROBES), "bytes": path.stat().st_size}


def _card(run_dir: Path, cfg: Any, task: Any, method: Any, meta: dict[str, Any], merged: str) -> str:
    results = reading.read_eval(run_dir) if (run_dir / "eval.json").is_file() else {}
    audit = json.loads((run_dir / "data_audit.json").read_text(encoding="utf-8")) \
        if (run_dir / "data_audit.json").is_file() else {}
    return card.render(cfg, task, method, results, audit, meta.get("base") or {"source": cfg.model}, merged=merged)


def _weights_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.glob("*.safetensors"))


def _plain_load(path: Path, auto_class: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """What a user without tuneforge does: transformers' Auto class (the task's), nothing else."""
    import transformers

    auto = getattr(transformers, auto_class)
    return auto.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype).eval()
