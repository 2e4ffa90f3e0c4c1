#!/usr/bin/env python3
"""Check `tuneforge advise`'s memory estimate against the peak that compare measures (issue 21).

For each method: advise's estimate (recipes/advise.py `method_row`, in this process), then a real training run
of the same config in a fresh process, measured exactly as `tuneforge compare` measures it
(recipes/compare.py `run_isolated`: the child's VmHWM minus RSS after imports and a warm-up data pass). Both see the
same data: the LONGEST records of the config's training set (so every batch is as wide as the largest one the
estimate is made for), a few optimizer steps, no base evaluation, no baselines, no test split.

    PYTHONPATH=src python bench/advise_check.py examples/sentiment.yaml --methods full,lora,qlora,adapter
    PYTHONPATH=src python bench/advise_check.py examples/support-bot.yaml --records 32 --steps 3

Writes bench/results/advise_<name>.json and prints estimate / measured / ratio per method.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def longest_subset(cfg, records: int, out: Path) -> Path:
    from tuneforge.data.records import read_records
    from tuneforge.recipes.compare import write_records
    from tuneforge.tasks import task_class

    recs = read_records(cfg.data.train)
    cols = task_class(cfg.task).pii_columns(cfg)
    size = lambda r: sum(len(json.dumps(r.fields.get(c, ""))) for c in cols)  # noqa: E731
    return write_records(out / "train.jsonl", sorted(recs, key=size, reverse=True)[:records])


def check(config: str, methods: list[str], records: int, steps: int, overrides: list[str]) -> list[dict]:
    from tuneforge.config import load_config, to_dict
    from tuneforge.recipes import advise
    from tuneforge.recipes.compare import run_isolated
    from tuneforge.recipes.train import prepare
    from tuneforge.training.device import autocast_dtype, pick_device

    base = load_config(config, overrides)
    work = Path(tempfile.mkdtemp(prefix="advise-check-"))
    raw = to_dict(base)
    raw["data"].update(train=str(longest_subset(base, records, work)), test=None, validation=0.25, limit=None)
    raw["eval"].update(base=False, baselines=False)
    raw["forgetting"]["reference"] = None
    raw["train"].update(max_steps=steps, eval_every=None)
    raw.update(output_dir=str(work), resume=False)
    rows = []
    for m in methods:
        raw["method"]["name"] = m
        raw["name"] = f"check-{m}"
        cfg = load_config(None, base=raw)
        prep = prepare(advise.report_only(cfg))
        device = pick_device()
        est = advise.method_row(prep, m, device, autocast_dtype(cfg.train.precision, device),
                                advise.measured_curves(cfg), len(prep.encoded["train"]), 2)  # 2: as advise calibrates
        measured = run_isolated(advise.derived(cfg, m, 10 ** 6), work)  # 10**6: no extra epochs for tiny sets
        row = {"method": m, "estimate_mb": est["cpu_peak_mb"], "measured_mb": measured["peak_mem_mb"],
               "calibration_rss_mb": est["rss_growth_mb"],  # in cpu_peak_mb (the tensor sum is its floor)
               "ratio": round(est["cpu_peak_mb"] / max(measured["peak_mem_mb"], 1e-9), 3),
               "parts_mb": {k: est[k] for k in ("weights_mb", "load_mb", "gradients_mb", "optimizer_mb",
                                                 "activations_mb")},
               "batch": est["batch_shape"], "gpu_peak_mb": est["gpu_peak_mb"]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--methods", default="full,lora,qlora,adapter")
    ap.add_argument("--records", type=int, default=96, help="longest training records used")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps of each measured run")
    args = ap.parse_args()
    rows = check(args.config, args.methods.split(","), args.records, args.steps, args.overrides)
    out = ROOT / "bench" / "results" / f"advise_{Path(args.config).stem}.json"
    out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
