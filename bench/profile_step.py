"""Where one training step's time and memory go: torch.profiler per-op breakdown of a tuneforge step on CPU.

    python bench/profile_step.py --case classification --method lora        # MiniLM, the bench's data
    python bench/profile_step.py --case instruction --method lora           # SmolLM2-135M, support-bot
    python bench/profile_step.py --case classification --method lora --set method.dropout=0.1 --top 25

The model, method, speed levers, batch and step are exactly what `tuneforge train` builds (recipes/train.py's
prepare + start, training/loop.py's accumulate + step); `--set key=value` overrides a config key (dotted).
After `--warmup` unprofiled steps it profiles `--steps` steps and prints, per op, its share of self CPU time
(robust to other jobs on the machine, unlike wall time) and the peak of bytes allocated by tensors during the
profiled steps (the profiler's allocation events summed in order: exact, unlike RSS, and not moved by load).
`--json PATH` writes the rows.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import torch  # noqa: E402

from run import tuneforge_raw  # noqa: E402


def build(case: str, method: str, overrides: list[str], out: Path) -> dict[str, Any]:
    """The model, task, batches and optimizer tuneforge's train recipe would start training with."""
    from tuneforge.config import load_config
    from tuneforge.methods import get_method
    from tuneforge.recipes.train import prepare, start
    from tuneforge.training.loop import make_optimizer
    from tuneforge.training.runlog import RunLog

    raw = tuneforge_raw(case, method, out)
    for item in overrides:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = json.loads(value) if value[:1] in "0123456789-[{tfn\"" else value
    cfg = load_config(None, base=raw)
    log = RunLog(None, quiet=True)
    prep = prepare(cfg, log)
    ready = start(prep, get_method(cfg.method.name), log)
    params = [(n, p) for n, p in ready.model.named_parameters() if p.requires_grad]
    order = prep.task.batches(prep.encoded["train"], cfg.train.batch_size, shuffle=True, seed=0)
    return {"cfg": cfg, "task": prep.task, "train": prep.encoded["train"], "ready": ready, "params": params,
            "optimizer": make_optimizer(params, cfg.train), "order": order, "notes": log.notes}


def one_step(b: dict[str, Any], k: int) -> int:
    """One optimizer step exactly as the loop takes it (clip, one sync, AdamW); returns its real tokens."""
    from tuneforge.training.loop import accumulate

    r = b["ready"]
    loss, tokens = accumulate(r.model, b["task"], b["train"], [b["order"][k % len(b["order"])]], r.device,
                              r.dtype, None)
    norm = torch.nn.utils.clip_grad_norm_([p for _, p in b["params"]], 1.0)
    torch.stack([loss, norm.to(loss)]).tolist()
    b["optimizer"].step()
    b["optimizer"].zero_grad(set_to_none=True)
    return tokens


def peak_allocated(prof: Any) -> tuple[int, int]:
    """(peak bytes held by tensors allocated during the profiled steps, bytes still held at the end)."""
    events = [(e.time_range.start, e.cpu_memory_usage) for e in prof.events() if e.name == "[memory]"]
    held = peak = 0
    for _, nbytes in sorted(events):
        held += nbytes
        peak = max(peak, held)
    return peak, held


def profile(b: dict[str, Any], warmup: int, steps: int) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    r = b["ready"]
    r.model.train()
    for k in range(warmup):
        one_step(b, k)
    t0 = time.perf_counter()
    tokens = 0
    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for k in range(warmup, warmup + steps):
            tokens += one_step(b, k)
    wall = time.perf_counter() - t0
    table = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in table) or 1
    rows = sorted(({"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000 / steps,
                    "share": e.self_cpu_time_total / total, "calls": e.count // steps} for e in table),
                  key=lambda x: -x["self_cpu_ms"])
    peak, _ = peak_allocated(prof)
    return {"wall_ms_per_step": wall * 1000 / steps, "tokens_per_step": tokens / steps,
            "self_cpu_ms_per_step": total / 1000 / steps, "peak_alloc_mb": peak / 2 ** 20, "ops": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="classification", choices=("classification", "short", "instruction"))
    ap.add_argument("--method", default="lora")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        b = build(args.case, args.method, args.set, Path(tmp) / "run")
        out = profile(b, args.warmup, args.steps)
    out.update(case=args.case, method=args.method, overrides=args.set, notes=b["notes"])
    print(f"{args.case} {args.method} {' '.join(args.set)}: {out['wall_ms_per_step']:.0f} ms/step wall, "
          f"{out['self_cpu_ms_per_step']:.0f} ms self CPU, {out['tokens_per_step']:.0f} real tokens/step, "
          f"peak allocated {out['peak_alloc_mb']:.0f} MB")
    print(f"{'op':<44}{'share':>7}{'ms/step':>9}{'calls':>7}")
    for row in out["ops"][:args.top]:
        print(f"{row['op'][:43]:<44}{row['share']:>7.1%}{row['self_cpu_ms']:>9.1f}{row['calls']:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
