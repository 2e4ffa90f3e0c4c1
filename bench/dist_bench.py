"""Benchmark: the classification bench case (all-MiniLM-L6-v2 LoRA, 3,000 reviews, 2 epochs, global batch 32)
on one machine's CPU cores, 1 process × N threads vs N processes × 1 thread under torchrun (DDP, gloo).

    python bench/dist_bench.py                 # N = 2; writes bench/results/dist_cpu.json
    python bench/dist_bench.py --epochs 1      # shorter, same comparison

Both runs see the same global batch (N processes at train.batch_size 32/N), so they take the same steps; the
rows are training seconds and real tokens/s from eval.json, and the final validation accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import HP, RESULTS, tuneforge_raw  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(config: Path, out: Path, name: str, processes: int, threads: int, batch: int) -> dict[str, Any]:
    cli = ["-m", "tuneforge.cli", "train", str(config), "--quiet", "--overwrite", f"name={name}",
           f"train.threads={threads}", f"train.batch_size={batch}"]
    launch = [] if processes == 1 else ["-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                                        "--master-addr=127.0.0.1", f"--master-port={free_port()}"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *launch, *cli], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-4000:]}")
    result = json.loads((out / name / "eval.json").read_text(encoding="utf-8"))
    training = result["training"]
    return {"processes": processes, "threads_per_process": threads, "batch_per_device": batch,
            "global_batch": batch * processes, "train_s": round(training["train_seconds"], 1),
            "tokens_per_s": round(training["tokens"] / training["train_seconds"], 1),
            "wall_s": round(time.perf_counter() - t0, 1),
            "val_accuracy": round(result["final"]["validation"]["accuracy"], 4),
            "strategy": result.get("distributed", {}).get("strategy", "single")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=HP["classification"]["epochs"])
    args = ap.parse_args()
    n, batch = args.processes, HP["classification"]["batch_size"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = tuneforge_raw("classification", "lora", Path(tmp))
        raw["train"]["epochs"] = args.epochs
        config = Path(tmp) / "bench.yaml"
        config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        for name, processes, threads in (("threads", 1, n), ("processes", n, 1)):
            row = train(config, Path(tmp), name, processes, threads, batch // processes)
            rows.append(row)
            print(f"{processes} process(es) x {threads} thread(s): train {row['train_s']:7.1f} s  "
                  f"{row['tokens_per_s']:8,.0f} tok/s  wall {row['wall_s']:7.1f} s  val acc {row['val_accuracy']}",
                  flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "cores": len(os.sched_getaffinity(0)), "epochs": args.epochs,
            "load_average_after": os.getloadavg()}
    (RESULTS / "dist_cpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
