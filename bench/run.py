"""Benchmark: tuneforge vs Hugging Face Trainer + PEFT, same model, data, hyper-parameters and seed.

    python bench/run.py                     # every case: classification lora+full, instruction lora
    python bench/run.py --cases classification --methods lora

Each (case, tool, method) trains in a fresh subprocess so its peak RSS is its own. Prints a table with
the ratio tuneforge/baseline and writes bench/results/latest.json (rows: case, tool, method, wall_s,
tokens_per_s, peak_rss_mb, metric). Tokens are real tokens (no padding) × epochs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"
HP = {"classification": {"epochs": 2, "lr": 1e-3, "batch_size": 32, "max_length": 256, "r": 8, "alpha": 16},
      "instruction": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 512, "r": 8, "alpha": 16}}
FULL_LR = 5e-5


# ------------------------------------------------------------------ data
def make_data() -> dict[str, Path]:
    """Classification: 3,000 train + 300 validation reviews (short and long) from the example generator."""
    DATA.mkdir(parents=True, exist_ok=True)
    paths = {"train": DATA / "cls_train.jsonl", "validation": DATA / "cls_val.jsonl"}
    if all(p.exists() for p in paths.values()):
        return paths
    sys.path.insert(0, str(ROOT / "examples"))
    from random import Random

    import make_sentiment as ms

    taken: set[str] = set()
    train = ms.generate(Random(101), ms.PRODUCTS, 3000, "bench-train", taken, held_out=False, short_share=0.5)
    val = ms.generate(Random(102), ms.PRODUCTS, 300, "bench-val", taken, held_out=True, short_share=0.5)
    ms.write_jsonl(paths["train"], train)
    ms.write_jsonl(paths["validation"], val)
    return paths


def instruction_paths() -> dict[str, Path]:
    return {"train": ROOT / "examples/support-bot/train.jsonl", "validation": ROOT / "examples/support-bot/test.jsonl"}


# ------------------------------------------------------------------ one run (in a subprocess)
def tuneforge_raw(case: str, method: str, out: Path) -> dict[str, Any]:
    """The tuneforge config of one case (also used by dist_bench.py)."""
    hp = HP[case]
    paths = make_data() if case == "classification" else instruction_paths()
    lr = hp["lr"] if method == "lora" else FULL_LR
    raw = {"name": f"bench-{case}-{method}", "output_dir": str(out), "task": case,
           "model": "minilm" if case == "classification" else "smollm2",
           "method": {"name": method, "r": hp["r"], "alpha": hp["alpha"], "dropout": 0.0},
           "data": {"train": str(paths["train"]), "validation": str(paths["validation"]), "test": None,
                    "max_length": hp["max_length"]},
           "privacy": {"pii": "off"}, "leakage": {"policy": "warn"},
           "train": {"epochs": hp["epochs"], "lr": lr, "batch_size": hp["batch_size"], "warmup": 0.06,
                     "weight_decay": 0.01, "early_stopping": {"patience": None, "restore_best": False},
                     "log_every": 20, "seed": 0},
           "eval": {"base": False, "samples": 0}, "forgetting": {"reference": None}}
    return raw


def run_tuneforge(case: str, method: str, out: Path) -> dict[str, Any]:
    import tuneforge
    from tuneforge.config import load_config

    cfg = load_config(None, base=tuneforge_raw(case, method, out))
    t0 = time.perf_counter()
    result = tuneforge.train(cfg, overwrite=True, quiet=True).eval
    total = time.perf_counter() - t0
    training = result["training"]
    metric_name = "accuracy" if case == "classification" else "perplexity"
    return {"wall_s": training["train_seconds"], "total_s": round(total, 1), "tokens": training["tokens"],
            "metric_name": f"val_{metric_name}", "metric": result["final"]["validation"][metric_name]}


def run_hf(case: str, method: str, out: Path) -> dict[str, Any]:
    """The stock stack a savvy user writes: Trainer + PEFT, dynamic padding, bf16 where the CPU has it."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, DataCollatorForSeq2Seq,
                              DataCollatorWithPadding, Trainer, TrainingArguments)

    from tuneforge.models import loading as models
    from tuneforge.data.records import read_records
    from tuneforge.training.device import cpu_has_fast_bf16

    hp = HP[case]
    paths = make_data() if case == "classification" else instruction_paths()
    src = models.resolve("minilm" if case == "classification" else "smollm2")
    tok = models.load_tokenizer(src)
    train_rows = [r.fields for r in read_records(paths["train"])]
    val_rows = [r.fields for r in read_records(paths["validation"])]
    if case == "classification":
        labels = sorted({r["label"] for r in train_rows})
        enc = lambda rows: Dataset.from_list([{**tok(r["text"], truncation=True, max_length=hp["max_length"]),
                                               "labels": labels.index(r["label"])} for r in rows])
        model = models.load_classifier(src, labels)
        collator = DataCollatorWithPadding(tok)
        task_type = "SEQ_CLS"
    else:
        enc = lambda rows: Dataset.from_list([_hf_instruction_example(tok, r, hp["max_length"]) for r in rows])
        model = models.load_causal_lm(src)
        collator = DataCollatorForSeq2Seq(tok, padding=True)
        task_type = "CAUSAL_LM"
    train_ds, val_ds = enc(train_rows), enc(val_rows)
    lr = hp["lr"]
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=task_type, r=hp["r"], lora_alpha=hp["alpha"],
                                                 lora_dropout=0.0, target_modules="all-linear"))
    else:
        lr = FULL_LR
    args = TrainingArguments(output_dir=str(out / "hf"), num_train_epochs=hp["epochs"], learning_rate=lr,
                             per_device_train_batch_size=hp["batch_size"], per_device_eval_batch_size=64,
                             weight_decay=0.01, warmup_steps=0.06, lr_scheduler_type="linear", seed=0,
                             logging_steps=20, save_strategy="no", eval_strategy="epoch", report_to=[],
                             bf16=cpu_has_fast_bf16(), use_cpu=True, dataloader_num_workers=0)
    # Validation each epoch on both sides: tuneforge always validates (early stopping, diagnosis).
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds, data_collator=collator)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    tokens = sum(len(x) for x in train_ds["input_ids"]) * hp["epochs"]
    pred = trainer.predict(val_ds)
    if case == "classification":
        metric = float((np.argmax(pred.predictions, -1) == np.array(val_ds["labels"])).mean())
        name = "val_accuracy"
    else:
        metric, name = float(np.exp(pred.metrics["test_loss"])), "val_perplexity"
    return {"wall_s": round(wall, 2), "tokens": tokens, "metric_name": name, "metric": metric}


def _hf_instruction_example(tok: Any, row: dict[str, Any], max_length: int) -> dict[str, Any]:
    """Chat template, loss on the response only (what TRL's completion-only collator does)."""
    prompt = tok.apply_chat_template([{"role": "user", "content": row["instruction"]}], tokenize=False,
                                     add_generation_prompt=True)
    full = tok.apply_chat_template([{"role": "user", "content": row["instruction"]},
                                    {"role": "assistant", "content": row["output"]}], tokenize=False)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = tok(full, add_special_tokens=False)["input_ids"][:max_length]
    labels = [-100] * min(len(p_ids), len(ids)) + ids[len(p_ids):]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def child(case: str, tool: str, method: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        row = (run_tuneforge if tool == "tuneforge" else run_hf)(case, method, Path(tmp))
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print("BENCH_ROW " + json.dumps(row))


# ------------------------------------------------------------------ driver
def run_one(case: str, tool: str, method: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", case, tool, method], capture_output=True,
                          text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    lines = [l for l in proc.stdout.splitlines() if l.startswith("BENCH_ROW ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{case}/{tool}/{method} failed:\n{proc.stderr[-4000:]}")
    row = json.loads(lines[-1][len("BENCH_ROW "):])
    row["tokens_per_s"] = round(row["tokens"] / max(row["wall_s"], 1e-9), 1)
    return {"case": case, "tool": tool, "method": method, **row}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="classification,instruction")
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--child", nargs=3, metavar=("CASE", "TOOL", "METHOD"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    rows = []
    for case in args.cases.split(","):
        for method in args.methods.split(","):
            if case == "instruction" and method == "full":
                continue  # issue scope: instruction LoRA only
            for tool in ("hf_peft", "tuneforge"):
                row = run_one(case, tool, method)
                rows.append(row)
                print(f"{case:<15}{method:<6}{tool:<10} wall {row['wall_s']:8.1f}s  {row['tokens_per_s']:10,.0f} tok/s"
                      f"  rss {row['peak_rss_mb']:8.0f} MB  {row['metric_name']} {row['metric']:.4f}", flush=True)
    print_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version()}
    (RESULTS / "latest.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "latest_meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'case':<15}{'method':<7}{'tool':<11}{'wall_s':>8}{'tok/s':>10}{'rss_MB':>8}{'metric':>9}{'speedup':>9}")
    for r in rows:
        base = next((b for b in rows if b["case"] == r["case"] and b["method"] == r["method"]
                     and b["tool"] == "hf_peft"), None)
        speed = f"{base['wall_s'] / r['wall_s']:.2f}x" if base and r["tool"] == "tuneforge" else ""
        print(f"{r['case']:<15}{r['method']:<7}{r['tool']:<11}{r['wall_s']:>8.1f}{r['tokens_per_s']:>10,.0f}"
              f"{r['peak_rss_mb']:>8.0f}{r['metric']:>9.4f}{speed:>9}")


if __name__ == "__main__":
    main()
