"""Benchmark: tuneforge vs Hugging Face Trainer + PEFT, same model, data, hyper-parameters and seed.

    python bench/run.py                     # every case: classification + short lora+full, instruction lora
    python bench/run.py --cases short --methods lora
    python bench/run.py --quick             # a few minutes: small slices of the same data, one epoch

Cases: classification (mixed short and long reviews), short (short-text classification: 5-15-word reviews),
instruction (SmolLM2 on support-bot). Peers: `hf_peft` (stock Trainer + PEFT, fp32), `hf_peft_bf16` (the same
with `bf16=True`, CPU autocast, what a tuning guide recommends) and, for instruction, `trl_sft_bf16` (TRL's
SFTTrainer + PEFT, bf16, completion-only loss, gradient checkpointing off: its fastest setting).
Each (case, tool, method) trains in a fresh subprocess so its peak RSS is its own. Prints a table with
the speed-up against the best (fastest) peer row and writes bench/results/latest.json (rows: case, tool,
method, wall_s, tokens_per_s, peak_rss_mb, metric). Tokens are real tokens (no padding) × epochs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"
HP = {"classification": {"epochs": 2, "lr": 1e-3, "batch_size": 32, "max_length": 256, "r": 8, "alpha": 16},
      "short": {"epochs": 1, "lr": 1e-3, "batch_size": 32, "max_length": 64, "r": 8, "alpha": 16},
      "instruction": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 512, "r": 8, "alpha": 16}}
FULL_LR = 5e-5
PEERS = {"classification": ("hf_peft", "hf_peft_bf16"), "short": ("hf_peft", "hf_peft_bf16"),
         "instruction": ("hf_peft", "hf_peft_bf16", "trl_sft_bf16")}
QUICK = {"train": 256, "validation": 96, "instruction_train": 48, "instruction_validation": 16}


def quick() -> bool:
    """`--quick` (passed to the children as TF_BENCH_QUICK=1): small slices of the data, one epoch."""
    return os.environ.get("TF_BENCH_QUICK") == "1"


def epochs(case: str) -> int:
    return 1 if quick() else HP[case]["epochs"]


# ------------------------------------------------------------------ data
def make_data(case: str = "classification") -> dict[str, Path]:
    """3,000 train + 300 validation reviews from the example generator: `classification` half short, half
    long; `short` all short (5-15 words, ~13 tokens). `--quick`: the first rows of the same files."""
    DATA.mkdir(parents=True, exist_ok=True)
    stem, share = ("cls", 0.5) if case == "classification" else ("short", 1.0)
    paths = {"train": DATA / f"{stem}_train.jsonl", "validation": DATA / f"{stem}_val.jsonl"}
    if not all(p.exists() for p in paths.values()):
        sys.path.insert(0, str(ROOT / "examples"))
        from random import Random

        import make_sentiment as ms

        taken: set[str] = set()
        train = ms.generate(Random(101), ms.PRODUCTS, 3000, "bench-train", taken, held_out=False, short_share=share)
        val = ms.generate(Random(102), ms.PRODUCTS, 300, "bench-val", taken, held_out=True, short_share=share)
        ms.write_jsonl(paths["train"], train)
        ms.write_jsonl(paths["validation"], val)
    return quick_slices(paths, "") if quick() else paths


def quick_slices(paths: dict[str, Path], prefix: str) -> dict[str, Path]:
    """The first QUICK[...] lines of each split, written next to the data once."""
    out = {}
    for split, path in paths.items():
        target = DATA / f"quick_{path.parent.name}_{path.name}"
        if not target.exists():
            DATA.mkdir(parents=True, exist_ok=True)
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            target.write_text("".join(lines[:QUICK[prefix + split]]), encoding="utf-8")
        out[split] = target
    return out


def case_paths(case: str) -> dict[str, Path]:
    if case != "instruction":
        return make_data(case)
    paths = {"train": ROOT / "examples/support-bot/train.jsonl", "validation": ROOT / "examples/support-bot/test.jsonl"}
    return quick_slices(paths, "instruction_") if quick() else paths


# ------------------------------------------------------------------ one run (in a subprocess)
def tuneforge_raw(case: str, method: str, out: Path) -> dict[str, Any]:
    """The tuneforge config of one case (also used by dist_bench.py)."""
    hp = HP[case]
    paths = case_paths(case)
    lr = hp["lr"] if method == "lora" else FULL_LR
    task = "instruction" if case == "instruction" else "classification"
    raw = {"name": f"bench-{case}-{method}", "output_dir": str(out), "task": task,
           "model": "minilm" if task == "classification" else "smollm2",
           "method": {"name": method, "r": hp["r"], "alpha": hp["alpha"], "dropout": 0.0},
           "data": {"train": str(paths["train"]), "validation": str(paths["validation"]), "test": None,
                    "max_length": hp["max_length"]},
           "privacy": {"pii": "off"}, "leakage": {"policy": "warn"},
           "train": {"epochs": epochs(case), "lr": lr, "batch_size": hp["batch_size"], "warmup": 0.06,
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
    metric_name = "perplexity" if case == "instruction" else "accuracy"
    return {"wall_s": training["train_seconds"], "total_s": round(total, 1), "tokens": training["tokens"],
            "metric_name": f"val_{metric_name}", "metric": result["final"]["validation"][metric_name]}


def run_hf(case: str, method: str, out: Path, bf16: bool = False) -> dict[str, Any]:
    """Trainer + PEFT, dynamic padding; `bf16`: `bf16=True` (CPU autocast), the tuning guides' advice."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, Trainer

    model, tok, train_ds, val_ds, task_type = _hf_inputs(case)
    if case == "instruction":
        collator = DataCollatorForSeq2Seq(tok, padding=True)
    else:
        collator = DataCollatorWithPadding(tok)
    model = _hf_lora(model, case, method, task_type)
    # Validation each epoch on both sides: tuneforge always validates (early stopping, diagnosis).
    trainer = Trainer(model=model, args=_hf_args(case, method, out, bf16), train_dataset=train_ds,
                      eval_dataset=val_ds, data_collator=collator)
    return _hf_train(trainer, case, train_ds, val_ds)


def run_trl(case: str, method: str, out: Path) -> dict[str, Any]:
    """TRL's SFTTrainer + PEFT with bf16: conversational prompt/completion rows (completion-only loss),
    no packing (padded batches, as its default), gradient checkpointing off (TRL turns it on by default;
    off is faster, and the peer should be its fastest)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from tuneforge.data.records import read_records
    from tuneforge.models import loading as models

    hp = HP[case]
    paths = case_paths(case)
    src = models.resolve("smollm2")
    tok = models.load_tokenizer(src)
    conv = lambda rows: Dataset.from_list([{"prompt": [{"role": "user", "content": r["instruction"]}],
                                            "completion": [{"role": "assistant", "content": r["output"]}]}
                                           for r in rows])
    train_ds = conv([r.fields for r in read_records(paths["train"])])
    val_ds = conv([r.fields for r in read_records(paths["validation"])])
    args = SFTConfig(**_hf_arg_values(case, method, out, True), max_length=hp["max_length"], packing=False,
                     gradient_checkpointing=False, completion_only_loss=True)
    trainer = SFTTrainer(model=models.load_causal_lm(src), args=args, train_dataset=train_ds, eval_dataset=val_ds,
                         processing_class=tok, peft_config=_lora_config(case, method, "CAUSAL_LM"))
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"]) * epochs(case)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    loss = trainer.evaluate()["eval_loss"]
    return {"wall_s": round(wall, 2), "tokens": tokens, "metric_name": "val_perplexity", "metric": float(np.exp(loss))}


def _hf_inputs(case: str) -> tuple[Any, Any, Any, Any, str]:
    """(model, tokenizer, train dataset, validation dataset, PEFT task type) for the Trainer rows."""
    from datasets import Dataset

    from tuneforge.data.records import read_records
    from tuneforge.models import loading as models

    hp = HP[case]
    paths = case_paths(case)
    src = models.resolve("smollm2" if case == "instruction" else "minilm")
    tok = models.load_tokenizer(src)
    train_rows = [r.fields for r in read_records(paths["train"])]
    val_rows = [r.fields for r in read_records(paths["validation"])]
    if case == "instruction":
        enc = lambda rows: Dataset.from_list([_hf_instruction_example(tok, r, hp["max_length"]) for r in rows])
        return models.load_causal_lm(src), tok, enc(train_rows), enc(val_rows), "CAUSAL_LM"
    labels = sorted({r["label"] for r in train_rows})
    enc = lambda rows: Dataset.from_list([{**tok(r["text"], truncation=True, max_length=hp["max_length"]),
                                           "labels": labels.index(r["label"])} for r in rows])
    return models.load_classifier(src, labels), tok, enc(train_rows), enc(val_rows), "SEQ_CLS"


def _lora_config(case: str, method: str, task_type: str) -> Any:
    from peft import LoraConfig

    hp = HP[case]
    return LoraConfig(task_type=task_type, r=hp["r"], lora_alpha=hp["alpha"], lora_dropout=0.0,
                      target_modules="all-linear") if method == "lora" else None


def _hf_lora(model: Any, case: str, method: str, task_type: str) -> Any:
    from peft import get_peft_model

    return get_peft_model(model, _lora_config(case, method, task_type)) if method == "lora" else model


def _hf_arg_values(case: str, method: str, out: Path, bf16: bool) -> dict[str, Any]:
    hp = HP[case]
    return dict(output_dir=str(out / "hf"), num_train_epochs=epochs(case),
                learning_rate=hp["lr"] if method == "lora" else FULL_LR,
                per_device_train_batch_size=hp["batch_size"], per_device_eval_batch_size=64,
                weight_decay=0.01, warmup_steps=0.06, lr_scheduler_type="linear", seed=0,
                logging_steps=20, save_strategy="no", eval_strategy="epoch", report_to=[],
                bf16=bf16, use_cpu=True, dataloader_num_workers=0)


def _hf_args(case: str, method: str, out: Path, bf16: bool) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(**_hf_arg_values(case, method, out, bf16))


def _hf_train(trainer: Any, case: str, train_ds: Any, val_ds: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    tokens = sum(len(x) for x in train_ds["input_ids"]) * epochs(case)
    pred = trainer.predict(val_ds)
    if case == "instruction":
        metric, name = float(np.exp(pred.metrics["test_loss"])), "val_perplexity"
    else:
        metric = float((np.argmax(pred.predictions, -1) == np.array(val_ds["labels"])).mean())
        name = "val_accuracy"
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
    from tuneforge.training.memory import peak_rss

    with tempfile.TemporaryDirectory() as tmp:
        runner = {"tuneforge": run_tuneforge, "hf_peft": run_hf, "trl_sft_bf16": run_trl,
                  "hf_peft_bf16": lambda c, m, o: run_hf(c, m, o, bf16=True)}[tool]
        row = runner(case, method, Path(tmp))
    row["peak_rss_mb"] = round(peak_rss() / 2 ** 20, 1)  # VmHWM: ru_maxrss would carry the driver's RSS over
    print("BENCH_ROW " + json.dumps(row))


# ------------------------------------------------------------------ driver
def run_one(case: str, tool: str, method: str, quick_run: bool = False) -> dict[str, Any]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TF_BENCH_QUICK": "1" if quick_run else "0"}
    proc = subprocess.run([sys.executable, __file__, "--child", case, tool, method], capture_output=True,
                          text=True, env=env)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("BENCH_ROW ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{case}/{tool}/{method} failed:\n{proc.stderr[-4000:]}")
    row = json.loads(lines[-1][len("BENCH_ROW "):])
    row["tokens_per_s"] = round(row["tokens"] / max(row["wall_s"], 1e-9), 1)
    return {"case": case, "tool": tool, "method": method, "load_avg": round(os.getloadavg()[0], 2), **row}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="classification,short,instruction")
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--tools", default="", help="comma-separated subset of the peers and tuneforge (default all)")
    ap.add_argument("--quick", action="store_true", help="small slices of the data, one epoch: checks it runs")
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
            for tool in (*PEERS[case], "tuneforge"):
                if args.tools and tool not in args.tools.split(","):
                    continue
                row = run_one(case, tool, method, args.quick)
                rows.append(row)
                print(f"{case:<15}{method:<6}{tool:<13} wall {row['wall_s']:8.1f}s  {row['tokens_per_s']:10,.0f} tok/s"
                      f"  rss {row['peak_rss_mb']:8.0f} MB  {row['metric_name']} {row['metric']:.4f}"
                      f"  (load {row['load_avg']})", flush=True)
    print_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version(), "quick": args.quick}
    name = "quick" if args.quick else "latest"
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / f"{name}_meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def best_peer(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    """The fastest peer row of the same case and method: the one a ratio is read against."""
    peers = [b for b in rows if b["case"] == row["case"] and b["method"] == row["method"] and b["tool"] != "tuneforge"]
    return min(peers, key=lambda b: b["wall_s"], default=None)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'case':<15}{'method':<7}{'tool':<14}{'wall_s':>8}{'tok/s':>10}{'rss_MB':>8}{'metric':>9}"
          f"{'vs best peer':>14}")
    for r in rows:
        base = best_peer(rows, r)
        speed = f"{base['wall_s'] / r['wall_s']:.2f}x ({base['tool']})" if base and r["tool"] == "tuneforge" else ""
        print(f"{r['case']:<15}{r['method']:<7}{r['tool']:<14}{r['wall_s']:>8.1f}{r['tokens_per_s']:>10,.0f}"
              f"{r['peak_rss_mb']:>8.0f}{r['metric']:>9.4f}  {speed}")


if __name__ == "__main__":
    main()
