"""model/README.md: the model card, in the Hugging Face format (YAML metadata, then Markdown), written with
the run so that whoever gets the model directory gets its story too.

What it holds: the base model (stable name, revision, where it came from, its hash), the method and the
share of parameters it trained, the data files (sha256, size, records per split), the vetting summary (PII
found and what was done with it, counted by type; leakage found and what was done), the hyperparameters,
base vs fine-tuned metrics, the diagnosis and the forgetting measurement, the intended use, and how to load
it with PEFT, transformers and vLLM. It never holds a raw value from the data: counts, types, file names
and hashes only (the audit it is built from holds no values either).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

HYPERPARAMETERS = {"train": ("epochs", "max_steps", "lr", "batch_size", "grad_accum", "weight_decay", "warmup",
                             "scheduler", "max_grad_norm", "label_smoothing", "precision", "pooling", "seed"),
                   "data": ("max_length", "system", "train_on_inputs", "packing"),
                   "forgetting": ("replay", "ewc", "l2_to_base")}


def render(cfg: Any, task: Any, method: Any, results: dict[str, Any], audit: dict[str, Any],
           base: dict[str, Any], merged: str | None = None) -> str:
    """The whole card as text; `merged` ("merged, bf16"): the card of a merged export of the run."""
    sections = [_metadata(cfg, task, method, results, base, merged), f"# {cfg.name}" + (f" ({merged})" if merged
                                                                                      else "") + "\n",
                f"A {_what(task, method)} fine-tuned with [tuneforge](https://pypi.org/project/tuneforge/) from "
                f"{_base_line(base)}.\n",
                "## Intended use\n\n" + task.intended_use(cfg) + "\n",
                _base_section(base), _method_section(method, results, merged), _data_section(cfg, audit),
                _vetting_section(audit), _privacy_section(results), _hyper_section(cfg, method), _metrics_section(task, results),
                _diagnosis_section(results), _loading_section(cfg, task, method, base, merged)]
    return "\n".join(s for s in sections if s)


def _what(task: Any, method: Any) -> str:
    kind = "text classifier" if not task.generates else "instruction-following language model"
    return f"{kind} ({method.name})"


def _base_line(base: dict[str, Any]) -> str:
    if not base.get("name"):
        return str(base.get("source"))
    upstream = f" (a copy of `{base['upstream']}`)" if base.get("upstream") else ""
    return f"`{base['source']}`{upstream}"


def _metadata(cfg: Any, task: Any, method: Any, results: dict[str, Any], base: dict[str, Any],
              merged: str | None) -> str:
    meta: dict[str, Any] = {"base_model": base.get("upstream") or base.get("name") or str(base.get("source")),
                            "library_name": "peft" if method.peft_format and not merged else "transformers",
                            "pipeline_tag": task.pipeline_tag,
                            "tags": ["tuneforge", method.name, cfg.task] + (["gguf-base"] if base.get("dequantized")
                                                                          else [])}
    metrics = [{"type": k, "value": round(float(v), 4), "name": f"{split} {k}"}
               for split, m in results.get("final", {}).items() if split != "train"
               for k, v in m.items() if k in task.headline and isinstance(v, (int, float))]
    if metrics:
        meta["model-index"] = [{"name": cfg.name, "results": [{"task": {"type": task.pipeline_tag},
                                                               "dataset": {"name": cfg.name, "type": "local"},
                                                               "metrics": metrics}]}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _base_section(base: dict[str, Any]) -> str:
    if not base.get("name"):
        return f"## Base model\n\n{base.get('source')}: only tuneforge rebuilds it (`tuneforge.load(run)`).\n"
    rows = [("stable name", f"`{base['name']}`"), ("revision", f"`{base['revision']}`"),
            ("made from", f"`{base['source']}`" + (" (de-quantized to float32 from the GGUF file)"
                                                    if base.get("dequantized") else "")),
            ("upstream model", f"`{base['upstream']}`" if base.get("upstream") else "—")]
    rows += [(f"sha256 of {f}", f"`{h}`…") for f, h in base.get("sha256", {}).items()]
    return "## Base model\n\n" + _table(["", ""], rows) + (
        "\nThe stable name resolves in the Hugging Face cache of the machine that trained it (tuneforge "
        "registers it there once); elsewhere, rebuild it from the file above or load the base yourself and "
        "apply the adapter with `PeftModel.from_pretrained(base, \"model\")`.\n")


def _method_section(method: Any, results: dict[str, Any], merged: str | None = None) -> str:
    t = results.get("training", {})
    share = 100 * t.get("trainable_params", 0) / max(t.get("total_params", 1), 1)
    artifact = "a full model" if method.saves_full_model else ("a PEFT adapter" if method.peft_format else
                                                               "tuneforge bottleneck adapters (tuneforge loads them)")
    if merged:
        artifact = f"the full model with the update folded into its weights ({merged})"
    return (f"## Method\n\n`{method.name}`: {t.get('trainable_params', 0):,} of {t.get('total_params', 0):,} "
            f"parameters trained ({share:.2f}%); this directory holds {artifact}. Trained {t.get('steps', 0)} "
            f"steps ({t.get('epochs', 0)} epochs, {t.get('train_seconds', 0):.0f} s, "
            f"{t.get('tokens_per_s', 0):,.0f} tokens/s){'; stopped: ' + t['stop_reason'] if t.get('stop_reason') else ''}.\n")


def data_files(cfg: Any) -> list[tuple[str, str, str, int]]:
    """(split, file name, sha256 prefix, bytes) for every data file the config names."""
    out = []
    for split in ("train", "validation", "test"):
        spec = getattr(cfg.data, split)
        if isinstance(spec, str) and Path(spec).is_file():
            data = Path(spec).read_bytes()
            out.append((split, Path(spec).name, hashlib.sha256(data).hexdigest()[:16], len(data)))
    return out


def _data_section(cfg: Any, audit: dict[str, Any]) -> str:
    rows = [(split, f"`{name}`", f"`{digest}`", f"{size:,}") for split, name, digest, size in data_files(cfg)]
    fractions = [f"{s} is {100 * getattr(cfg.data, s):.0f}% of train, split off with seed {cfg.train.seed}"
                 for s in ("validation", "test") if isinstance(getattr(cfg.data, s), float)]
    sizes = ", ".join(f"{name} {n:,}" for name, n in audit.get("splits", {}).items())
    return ("## Training data\n\n" + _table(["split", "file", "sha256 (first 16)", "bytes"], rows)
            + f"\nRecords after vetting: {sizes}." + (" " + "; ".join(fractions) + "." if fractions else "") + "\n")


def _vetting_section(audit: dict[str, Any]) -> str:
    pii, leak = audit.get("pii", {}), audit.get("leakage", {})
    if pii.get("mode") == "off":
        lines = ["- PII: not scanned (`privacy.pii: off`)."]
    else:
        done = {"redact": "redacted (replaced by typed placeholders such as `<EMAIL_1>` before training)",
                "warn": "kept (warn)", "block": "blocked"}.get(pii.get("mode"), pii.get("mode"))
        types = ", ".join(f"{t} {n:,}" for t, n in pii.get("by_type", {}).items()) or "none"
        lines = [f"- PII (`privacy.pii: {pii.get('mode')}`): {pii.get('total', 0):,} value(s) found in "
                 f"{pii.get('records_with_pii', 0):,} of {pii.get('records_scanned', 0):,} records, {done}. "
                 f"By type: {types}."]
    kinds = ", ".join(f"{k} {n:,}" for k, n in leak.get("by_kind", {}).items() if n) or "none"
    dropped = ", ".join(f"{n:,} from {s}" for s, n in (leak.get("dropped") or {}).items())
    action = {"drop": f"dropped ({dropped or 'nothing to drop'})", "warn": "kept (warn)",
              "fail": "none found (a leak would have stopped the run)"}.get(leak.get("policy"), leak.get("policy"))
    lines.append(f"- Leakage between splits (`leakage.policy: {leak.get('policy')}`): {leak.get('cross_split', 0):,} "
                 f"pair(s) across splits, {leak.get('within_split', 0):,} duplicate(s) within ({kinds}); {action}.")
    for t in leak.get("templates", []):
        lines.append(f"- A {t['words']}-word template shared by {100 * t['share']:.0f}% of `{t['column']}` was set "
                     "aside before the near-duplicate and n-gram checks.")
    return "## Data vetting\n\n" + "\n".join(lines) + "\n"


def _hyper_section(cfg: Any, method: Any) -> str:
    rows = []
    for section, keys in {"method": ("name",) + method.config_keys, **HYPERPARAMETERS}.items():
        values = getattr(cfg, section)
        for key in keys:
            value = getattr(values, key)
            if value is not None and value != "":
                rows.append((f"`{section}.{key}`", f"`{value}`"))
    return "## Hyperparameters\n\n" + _table(["key", "value"], rows)


def _privacy_section(results: dict[str, Any]) -> str:
    """The differential-privacy guarantee, or plainly none, and the memorization audit (hashes, scores only)."""
    if "privacy" not in results:
        return ""
    from ..evaluation.memorization import audit_lines, guarantee_lines

    lines = [f"- {line}" for line in guarantee_lines(results["privacy"])]
    if "audit" in results:
        lines += [f"- {line.strip()}" for line in audit_lines(results["audit"])]
    return "## Privacy\n\n" + "\n".join(lines) + "\n"


def _metrics_section(task: Any, results: dict[str, Any]) -> str:
    keys = list(task.headline) + ["loss"]
    rows = []
    for stage, label in (("base", "base (before fine-tuning)"), ("final", "fine-tuned")):
        for split, m in results.get(stage, {}).items():
            if split != "train":
                rows.append((label, split) + tuple(f"{m[k]:.4f}" if isinstance(m.get(k), (int, float)) else "—"
                                                   for k in keys))
    if not rows:
        return ""
    return "## Results\n\n" + _table(["model", "split"] + keys, rows)


def _diagnosis_section(results: dict[str, Any]) -> str:
    out = []
    diag = results.get("diagnosis")
    if diag:
        out.append(f"**Diagnosis: {diag['label']}.**\n")
        out += [f"- {e}" for e in diag.get("evidence", [])]
        out += [f"- advice: {a}" for a in diag.get("advice", [])]
    forgetting = results.get("forgetting")
    if forgetting:
        flagged = "flagged as forgetting" if forgetting.get("flagged") else "within the threshold"
        out.append(f"\n**Forgetting** ({forgetting['metric']} on reference text the model must keep): "
                   f"{forgetting['before']:.4g} before → {forgetting['after']:.4g} after "
                   f"({100 * forgetting['relative_change']:+.1f}%), {flagged}.")
    else:
        out.append("\n**Forgetting**: not measured (`forgetting.reference: null`).")
    return "## Diagnosis and forgetting\n\n" + "\n".join(out) + "\n"


def _loading_section(cfg: Any, task: Any, method: Any, base: dict[str, Any], merged: str | None = None) -> str:
    if merged:
        return _merged_loading(cfg, task)
    peft_class = task.auto_class.replace("AutoModel", "AutoPeftModel")
    blocks = []
    if method.peft_format and base.get("name"):
        blocks.append(f"PEFT:\n\n```python\nfrom peft import {peft_class}\nfrom transformers import AutoTokenizer\n\n"
                      f"model = {peft_class}.from_pretrained(\"model\")   # this directory\n"
                      "tokenizer = AutoTokenizer.from_pretrained(\"model\")\n```")
    if method.peft_format or method.saves_full_model:
        call = ('pipe("How long is the warranty?")' if task.generates else 'pipe("great kettle", top_k=None)')
        blocks.append(f"transformers:\n\n```python\nfrom transformers import pipeline\n\npipe = pipeline("
                      f"\"{task.pipeline_tag}\", model=\"model\")\nprint({call})\n```")
    if task.generates and method.peft_format and base.get("name"):
        blocks.append(f"vLLM (the adapter on its base):\n\n```bash\nvllm serve {base['name']} --revision "
                      f"{base['revision']} --enable-lora --lora-modules {cfg.name}=./model\n```")
    elif task.generates:
        blocks.append("vLLM:\n\n```bash\nvllm serve ./model\n```")
    else:
        blocks.append(f"vLLM (a merged copy: `tuneforge export runs/{cfg.name} --merge`):\n\n```python\n"
                      f"from vllm import LLM\n\nllm = LLM(model=\"runs/{cfg.name}/export\", task=\"classify\")\n"
                      "print(llm.classify([\"great kettle\"]))\n```")
    blocks.append(f"tuneforge (the exact formatting of training, served over an OpenAI-compatible API):\n\n"
                  f"```bash\ntuneforge predict runs/{cfg.name} --{'prompt' if task.generates else 'text'} \"...\"\n"
                  f"tuneforge serve runs/{cfg.name}\n```")
    return "## How to load it\n\n" + "\n\n".join(blocks) + "\n"


def _merged_loading(cfg: Any, task: Any) -> str:
    call = ('pipe("How long is the warranty?")' if task.generates else 'pipe("great kettle", top_k=None)')
    vllm = ("```bash\nvllm serve ./export\n```" if task.generates else
            "```python\nfrom vllm import LLM\n\nprint(LLM(model=\"export\", task=\"classify\").classify([\"great kettle\"]))\n```")
    return ("## How to load it\n\ntransformers (no PEFT needed):\n\n```python\nfrom transformers import "
            f"{task.auto_class}, pipeline\n\nmodel = {task.auto_class}.from_pretrained(\"export\")   # this directory\n"
            f"pipe = pipeline(\"{task.pipeline_tag}\", model=\"export\")\nprint({call})\n```\n\nvLLM:\n\n{vllm}\n")


def _table(header: list[str], rows: list[tuple[Any, ...]]) -> str:
    if not rows:
        return "(none)\n"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
