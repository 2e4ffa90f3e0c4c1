"""Where one training step's time and memory go: torch.profiler per-op breakdown of a tuneforge step on CPU.

    python bench/profile_step.py --case classification --method lora        # MiniLM, the bench's data
    python bench/profile_step.py --case instruction --method lora           # SmolLM2-135M, support-bot
    python bench/profile_step.py --case classification --method lora --set method.dropout=0.1 --top 25

The model, method, speed levers, batch and step are exactly what `tuneforge train` builds (recipes/train.py's
prepare + start, training/loop.py's accumulate + step); `--set key=value` overrides a config key (dotted).
After `--warmup` unprofiled steps it profiles `--steps` steps and prints, per op, its share of self CPU time
(robust to other jobs on the machine, unlike wall time). `--saved`: the MB one training forward keeps for its
backward pass, by dtype (autograd's saved tensors: exact, unlike RSS, and not moved by load).
`--off LEVER` turns a training/speed.py lever off, `--on LEVER` applies one on top (A/B); `--json PATH` writes the rows.
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


def _value(text: str) -> Any:
    """A JSON value (3, 1e-3, true, [..]) or else the text itself: `fp32` starts like `false` but is a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


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
        node[leaf] = _value(value)
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


def saved_for_backward(b: dict[str, Any]) -> dict[str, float]:
    """MB that one training forward keeps for its backward pass (autograd's saved tensors, each storage
    counted once, by dtype): exactly where activation memory goes, without a profiler, and not moved by load."""
    r = b["ready"]
    seen: dict[int, tuple[str, int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = (str(t.dtype).split(".")[-1], storage.nbytes())
        return t

    r.model.train()
    batch = b["task"].collate(b["train"], b["order"][0], r.device)
    from tuneforge.training.device import autocast

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(r.device, r.dtype):
        loss = b["task"].loss(r.model, batch)
    loss.backward()
    out: dict[str, float] = {}
    for dtype, nbytes in seen.values():
        out[dtype] = out.get(dtype, 0.0) + nbytes / 2 ** 20
    return {"total": sum(out.values()), **out, "tokens": float(batch["n_real"]) if "n_real" in batch else 0.0}


def profile(b: dict[str, Any], warmup: int, steps: int) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    r = b["ready"]
    r.model.train()
    for k in range(warmup):
        one_step(b, k)
    t0 = time.perf_counter()
    tokens = 0
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for k in range(warmup, warmup + steps):
            tokens += one_step(b, k)
    wall = time.perf_counter() - t0
    table = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in table) or 1
    rows = sorted(({"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000 / steps,
                    "share": e.self_cpu_time_total / total, "calls": e.count // steps} for e in table),
                  key=lambda x: -x["self_cpu_ms"])
    return {"wall_ms_per_step": wall * 1000 / steps, "tokens_per_step": tokens / steps,
            "self_cpu_ms_per_step": total / 1000 / steps, "ops": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="classification", choices=("classification", "short", "instruction"))
    ap.add_argument("--method", default="lora")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--off", action="append", default=[], metavar="LEVER",
                    help="a training/speed.py lever function to turn off for an A/B (e.g. lean_lora_inputs)")
    ap.add_argument("--on", action="append", default=[], metavar="LEVER",
                    help="a training/speed.py lever(model, dtype) to apply on top (e.g. lean_frozen_weights on CPU)")
    ap.add_argument("--saved", action="store_true", help="only the MB saved for backward by one forward")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    from tuneforge.training import speed

    for name in args.off:  # A/B: the lever does nothing (each returns how much it changed)
        setattr(speed, name, lambda *a, **k: 0)
    with tempfile.TemporaryDirectory() as tmp:
        b = build(args.case, args.method, args.set, Path(tmp) / "run")
        for name in args.on:
            b["notes"].append(f"--on {name}: {getattr(speed, name)(b['ready'].model, b['ready'].dtype)}")
        if args.saved:
            saved = saved_for_backward(b)
            print(f"{args.case} {args.method} {' '.join(args.set)} off={args.off} saved for backward: "
                  + ", ".join(f"{k} {v:,.1f}" for k, v in saved.items()))
            return
        out = profile(b, args.warmup, args.steps)
    out.update(case=args.case, method=args.method, overrides=args.set, off=args.off, on=args.on, notes=b["notes"])
    print(f"{args.case} {args.method} {' '.join(args.set)} off={args.off} on={args.on}: {out['wall_ms_per_step']:.0f} ms/step wall, "
          f"{out['self_cpu_ms_per_step']:.0f} ms self CPU, {out['tokens_per_step']:.0f} real tokens/step")
    print(f"{'op':<44}{'share':>7}{'ms/step':>9}{'calls':>7}")
    for row in out["ops"][:args.top]:
        print(f"{row['op'][:43]:<44}{row['share']:>7.1%}{row['self_cpu_ms']:>9.1f}{row['calls']:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
