"""`tuneforge export RUN [--merge]`: hand a run's model to the outside world.

Without --merge the run's model/ artifact is copied as is (a PEFT adapter, a tuneforge bottleneck
adapter, or a full model). With --merge the result is one plain Hugging Face model directory that
`AutoModelForSequenceClassification` / `AutoModelForCausalLM.from_pretrained` load without tuneforge
or PEFT: LoRA/DoRA updates are folded into the weights (QLoRA: into the de-quantized 4-bit weights,
which is exactly what the run computed with). The export is verified before it is kept: plain
transformers reloads it and its logits on probe texts must match the unmerged run's.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import TuneforgeError
from ..methods import get_method
from ..models import loading
from ..runs import reading
from ..tasks import task_class
from .inference import load_run

MARK = "tuneforge_export.json"
TOLERANCE = 1e-3  # max |Δlogit| between merged and unmerged; fp32 merges land around 1e-6
PROBES = ["The kettle arrived quickly and works perfectly.", "Broken on arrival, I want a refund.",
          "It is a lamp. It turns on.", "Explain in one sentence what fine-tuning is."]


def export_command(run_dir: Path, out_dir: Path | None, merge: bool) -> int:
    info = export_run(run_dir, out_dir, merge)
    print(f"exported {info['kind']} to {info['out']}")
    if "max_abs_diff" in info:
        print(f"verified: plain transformers loads it; max |logit difference| vs the run = "
              f"{info['max_abs_diff']:.2e} on {info['probes']} probe texts")
    return 0


def export_run(run_dir: Path, out_dir: Path | None = None, merge: bool = False) -> dict[str, Any]:
    reading.require_run(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "export"
    if out.exists() and any(out.iterdir()) and not (out / MARK).exists():
        raise TuneforgeError(f"{out} exists and is not an earlier export; choose another --out")
    meta = reading.read_meta(run_dir)
    method = get_method(meta["method"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        if merge:
            info = _merged(run_dir, method, meta, tmp)
        else:
            shutil.copytree(run_dir / "model", tmp, dirs_exist_ok=True)
            kind = "full model" if method.saves_full_model else f"{meta['method']} adapter (needs its base model)"
            info = {"kind": kind}
        info.update(out=str(out), method=meta["method"], merged=merge, run=str(run_dir))
        (tmp / MARK).write_text(json.dumps(info, indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return info


def _merged(run_dir: Path, method: Any, meta: dict[str, Any], out: Path) -> dict[str, Any]:
    """Merge, save in HF format, reload with plain transformers and compare against the unmerged run."""
    problem = method.merge_problem()
    if problem:  # before anything is loaded
        raise TuneforgeError(problem)
    cfg, _, model = load_run(run_dir)
    model.to("cpu").eval()
    tokenizer = loading.load_tokenizer(loading.ModelSource(cfg.model, run_dir / "model"))
    batch = tokenizer(PROBES, return_tensors="pt", padding=True)
    with torch.no_grad():
        before = model(**batch).logits.float()
        merged = method.merge(model).eval()
        merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    (out / "tuneforge.json").write_text(json.dumps({**meta, "method": "full", "merged_from": meta["method"]},
                                                   indent=2), encoding="utf-8")
    reloaded = _plain_load(out, task_class(cfg.task).auto_class)
    with torch.no_grad():
        after = reloaded(**batch).logits.float()
    diff = float((after - before).abs().max())
    if not diff <= TOLERANCE:
        raise TuneforgeError(f"the merged model predicts differently from the run (max |logit difference| "
                             f"{diff:.3g} > {TOLERANCE}); nothing was exported")
    return {"kind": "merged full model (Hugging Face format)", "max_abs_diff": diff, "probes": len(PROBES)}


def _plain_load(path: Path, auto_class: str) -> torch.nn.Module:
    """What a user without tuneforge does: transformers' Auto class (the task's), nothing else."""
    import transformers

    auto = getattr(transformers, auto_class)
    return auto.from_pretrained(str(path), local_files_only=True, torch_dtype=torch.float32).eval()
