"""The memorization audit on a provoked memorizer, with and without differential privacy (issue #20).

A tiny random-init Llama (MiniLM tokenizer, chat template) is fully fine-tuned for many epochs on ~120
support-bot records with 4 canaries planted 3 times each, once without DP and once with
`privacy.dp.epsilon=8`. Printed per run, from its eval.json `audit` / `train` / `privacy` sections: training
seconds (and the command's wall time), loss-threshold membership ROC AUC and TPR at 1% FPR over train vs
~120 held-out test records, mean loss train/test, each canary's exposure (of log2(128) = 7 bits), how many
canaries greedy decoding reproduced, and ε spent. Issue #20's criterion: no DP AUC >= 0.8 and high exposure;
ε = 8 AUC <= 0.6 and exposure near chance (~1 bit).

Held-out records come from test.jsonl plus unused train.jsonl records; a candidate whose question is a near
duplicate (word Jaccard >= 0.6) of a training question is skipped, so tuneforge's leakage check passes.
The answers, though, repeat by design (20 facts, 60 reply texts), so most held-out answers are also in train.
"reproduced": greedy decoding of the canary's prompt holds the secret as the tokenizer writes it back (MiniLM's
uncased WordPiece decodes "x@y.org" as "x @ y. org"; memorization.reproduces).
Defaults (measured 2026): hidden 64, 2 layers, lr 2e-3, batch 8; DP batch 32 (expected, Poisson), lr 2e-3.

    taskset -c 1 .venv/bin/python bench/memorizer.py --work runs/memorizer               # both runs + table
    taskset -c 1 .venv/bin/python bench/memorizer.py --work /tmp/m --epochs 2 --runs nodp  # smoke test
    taskset -c 1 .venv/bin/python bench/memorizer.py --work runs/memorizer --table-only
"""
from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "support-bot"
sys.path.insert(0, str(ROOT / "tests"))  # helpers_tiny: the tests' tiny Llama (MiniLM tokenizer, chat template)

from helpers_tiny import make_tiny_llama  # noqa: E402


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(len(a | b), 1)


def write_data(directory: Path, n_train: int, n_test: int, seed: int = 0) -> tuple[Path, Path]:
    """train.jsonl (n_train records, validation is split off it) and test.jsonl (n_test held-out records)."""
    def read(name: str) -> list[dict[str, Any]]:
        rows = [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line]
        return [{"instruction": r["instruction"], "output": r["output"]} for r in rows]

    pool, test_pool = read("train.jsonl"), read("test.jsonl")
    random.Random(seed).shuffle(pool)
    train, rest = pool[:n_train], pool[n_train:]
    seen = [_words(r["instruction"]) for r in train]
    test = [r for r in test_pool + rest
            if max(_jaccard(_words(r["instruction"]), s) for s in seen) < 0.6][:n_test]
    paths = directory / "train.jsonl", directory / "test.jsonl"
    for path, rows in zip(paths, (train, test)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths


def write_config(work: Path, model: Path, train: Path, test: Path, a: argparse.Namespace) -> Path:
    cfg = {"name": "mem-nodp", "task": "instruction", "model": str(model), "output_dir": str(work / "runs"),
           "method": {"name": "full"},
           "data": {"train": str(train), "validation": 0.1, "test": str(test), "max_length": 96, "packing": False},
           "privacy": {"pii": "off", "canaries": 4, "canary_repeats": 3},
           "leakage": {"policy": "warn"}, "forgetting": {"reference": None},
           "eval": {"base": False, "max_new_tokens": 32, "batch_size": 64, "samples": 3, "bootstrap": 0},
           "train": {"epochs": a.epochs, "lr": a.lr, "batch_size": a.batch, "warmup": 0.05, "weight_decay": 0.0,
                     "early_stopping": {"patience": None}, "precision": "fp32", "threads": 1, "seed": 0,
                     "log_every": 50}}
    path = work / "memorizer.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


RUNS = {"nodp": ["name=mem-nodp"],
        "dp": ["name=mem-dp", "privacy.dp.epsilon=8"]}


def train(config: Path, run: str, a: argparse.Namespace) -> float:
    """`tuneforge train` for one run (inherits this process's CPU affinity); its wall seconds."""
    extra = [f"train.batch_size={a.dp_batch}", f"train.lr={a.dp_lr}"] if run == "dp" else []
    cmd = [str(Path(sys.executable).parent / "tuneforge"), "train", str(config), *RUNS[run], *extra,
           "--overwrite", "--quiet"]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    (config.parent / "runs" / RUNS[run][0].split("=")[1] / "bench_wall.txt").write_text(f"{wall:.1f}\n")
    return wall


def row(run_dir: Path) -> list[str]:
    ev = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    m, c = ev["audit"]["membership"], ev["audit"].get("canaries") or {}
    wall = run_dir / "bench_wall.txt"
    priv = ev.get("privacy") or {}
    eps = f"{priv['epsilon']:.3f}" if priv.get("dp") else "none"
    return [run_dir.name, f"{ev['training']['train_seconds']:.0f}",
            wall.read_text().strip() if wall.exists() else "?", f"{m['members']}/{m['non_members']}",
            f"{m['auc']:.3f}", f"{m['tpr_at_1pct_fpr']:.3f}",
            f"{m['mean_loss_members']:.2f} / {m['mean_loss_non_members']:.2f}",
            ", ".join(f"{e['exposure']:.2f}" for e in c.get("each", [])) + f" (mean {c.get('mean_exposure')})",
            f"{c.get('reproduced')} of {c.get('planted')}", eps]


def table(runs: Path) -> None:
    head = ["run", "train s", "wall s", "train/test n", "AUC", "TPR@1%FPR", "loss train / test",
            "canary exposure (of 7.0)", "reproduced", "ε spent"]
    lines = [row(d) for d in sorted(runs.iterdir()) if (d / "eval.json").exists()]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for line in lines:
        print("| " + " | ".join(line) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("runs/memorizer"))
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--train", type=int, default=133, help="records in train.jsonl (10%% become validation)")
    p.add_argument("--test", type=int, default=120)
    p.add_argument("--epochs", type=float, default=30)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dp-batch", type=int, default=32)
    p.add_argument("--dp-lr", type=float, default=2e-3)
    p.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=["nodp", "dp"])
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args()
    if not a.table_only:
        a.work.mkdir(parents=True, exist_ok=True)
        model = make_tiny_llama(a.work / f"llama-h{a.hidden}-l{a.layers}", hidden=a.hidden, layers=a.layers)
        config = write_config(a.work, model, *write_data(a.work, a.train, a.test), a)
        for run in a.runs:
            print(f"{run}: {train(config, run, a):.0f} s wall", flush=True)
    table(a.work / "runs")


if __name__ == "__main__":
    main()
