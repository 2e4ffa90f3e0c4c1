"""GPU benchmark: a Llama-1.1B-shaped model, LoRA r=16 on all linear layers and full fine-tuning,
tuneforge's loop vs Hugging Face Trainer + PEFT, same data (random tokens), batch, steps and seed.

    python bench/gpu_llama.py --out bench/results/gpu.json          # on one H100/H200, ~4 minutes
    python bench/gpu_llama.py --shape tiny --steps 3 --warmup 2      # the same code on a CPU (tested)

Each case runs in a fresh subprocess (its own peak memory), with a time limit. Tokens/s counts the
timed steps only (after `--warmup` steps, which absorb compilation and allocator warm-up). MFU uses the
issue's formulas with N = all parameters except the input embedding: LoRA (4N + 12·L·d·T) FLOPs per token,
full (6N + 12·L·d·T), against 989 TFLOP/s (H100/H200 dense bf16).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SHAPES = {
    "llama1b": {"hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
                "intermediate_size": 5632, "vocab_size": 32000, "seq": 1024, "batch": 8},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 128, "vocab_size": 512, "seq": 64, "batch": 2},
}
# hfcompile: Trainer torch_compile=True; tfVARIANT: see run_tuneforge; tfprof: profile tuneforge's steps
CASES = ("hf_lora", "tf_lora", "hf_full", "tf_full", "hfcompile_lora")
VARIANTS = ("", "bf16", "graphs", "body", "prof")
PEAK_FLOPS = 989e12
LR = {"lora": 1e-4, "full": 1e-5}


def build_model(shape: dict[str, Any], device: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{k: v for k, v in shape.items() if k not in ("seq", "batch")},
                         max_position_embeddings=shape["seq"], tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM(config)  # fp32 master weights, as both stacks train them


def random_rows(shape: dict[str, Any], n: int) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(1)
    return torch.randint(3, shape["vocab_size"], (n, shape["seq"]), generator=g).tolist()


def flops_per_token(model: Any, shape: dict[str, Any], method: str) -> float:
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name and "lora_" not in name)
    attn = 12 * shape["num_hidden_layers"] * shape["hidden_size"] * shape["seq"]
    return (4 if method == "lora" else 6) * n + attn


# ------------------------------------------------------------------ the two stacks
def run_hf(shape: dict[str, Any], method: str, steps: int, warmup: int, device: Any,
           compile: bool = False) -> dict[str, Any]:
    """Stock Trainer + PEFT: fp32 weights with bf16 autocast (bf16=True), sdpa, fused AdamW (+ torch_compile)."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    model = build_model(shape, device)
    flops = flops_per_token(model, shape, method)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0,
                                                 target_modules="all-linear"))
    rows = random_rows(shape, shape["batch"] * (steps + warmup))
    data = [{"input_ids": torch.tensor(r), "labels": torch.tensor(r)} for r in rows]  # a list is a map-style Dataset
    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    args = TrainingArguments(output_dir="/tmp/tf_gpu_bench_hf", max_steps=steps + warmup, learning_rate=LR[method],
                             per_device_train_batch_size=shape["batch"], bf16=device.type == "cuda",
                             logging_steps=10 ** 6, save_strategy="no", report_to=[], seed=0,
                             use_cpu=device.type != "cuda", dataloader_num_workers=0, torch_compile=compile)
    Trainer(model=model, args=args, train_dataset=data, callbacks=[Clock()]).train()
    seconds = marks[-1] - marks[warmup - 1]
    return {"tokens_per_s": shape["batch"] * shape["seq"] * steps / seconds, "flops_per_token": flops}


class _Capture:
    """A RunLog that keeps the scalars in memory (fit logs the timed window's tokens/s).

    With a profiler it logs every step and advances the profiler's schedule at each one.
    """

    def __init__(self, profiler: Any = None) -> None:
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.profiler = profiler

    def scalars(self, step: int, epoch: float, split: str, values: dict[str, float]) -> None:
        self.rows.append({"step": step, "split": split, **values})
        if self.profiler is not None and split == "train":
            self.profiler.step()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def restart_at(self, step: int) -> None:  # never resumes
        pass


class _StubTokenizer:
    """Random token ids need no vocabulary: just the ids the task reads."""

    pad_token_id, eos_token_id, chat_template, all_special_tokens = 0, 2, None, []

    @staticmethod
    def get_added_vocab() -> dict[str, int]:
        return {}


def run_tuneforge(shape: dict[str, Any], method_name: str, steps: int, warmup: int, device: Any,
                  variant: str = "", profile: bool = False) -> dict[str, Any]:
    """tuneforge's own method, speed levers, task (packing, chunked cross-entropy) and loop.

    Variants measured against the default: bf16 (the whole frozen base in bf16, embeddings and norms too,
    so the residual stream runs in bf16), graphs (CUDA graphs per compiled block), body (one compiled body).
    """
    from tuneforge.config import EarlyStoppingConfig, MethodConfig, TrainConfig
    from tuneforge.methods import get_method
    from tuneforge.models.anatomy import body_and_head
    from tuneforge.tasks.instruction.formatting import FALLBACK_TEMPLATE, Formatting
    from tuneforge.tasks.instruction.lm import IGNORE
    from tuneforge.tasks.instruction.task import Example, InstructionTask
    from tuneforge.training.device import autocast_dtype
    from tuneforge.training.loop import fit
    from tuneforge.training.speed import lean_frozen_weights, optimize_for_training

    model = build_model(shape, device)
    flops = flops_per_token(model, shape, method_name)
    method = get_method(method_name)
    model = method.apply(model, MethodConfig(name=method_name, r=16, alpha=32, dropout=0.0, targets="all-linear"),
                         "instruction")
    dtype = autocast_dtype("auto", device)
    fmt = Formatting(FALLBACK_TEMPLATE, "fallback", format="text", max_length=shape["seq"])
    task = InstructionTask(_StubTokenizer(), fmt, packing=True)
    task.prepare_model(model)  # the packing probe's tiny shapes run before compilation, not after
    compiled = device.type == "cuda" and variant not in ("graphs", "body")
    notes = optimize_for_training(model, method, device, dtype, "blocks" if compiled else "none")
    if variant == "bf16":  # embeddings and norms too: the residual stream runs in bf16
        notes.append(f"bench: {lean_frozen_weights(model, dtype, everything=True) / 2 ** 20:,.0f} MiB more in bf16")
    if variant == "graphs":  # CUDA graphs around each compiled block (no launch gaps inside a block)
        from tuneforge.training.speed import compile_blocks

        notes.append(f"bench: torch.compile(mode='reduce-overhead') on {compile_blocks(model, 'reduce-overhead')} blocks")
    elif variant == "body":  # one graph for the whole transformer body instead of one per block
        body_and_head(model)[0].compile()
        notes.append("bench: torch.compile on the whole body")
    train = [Example(r, [IGNORE] + r[1:], f"random:{i}") for i, r in
             enumerate(random_rows(shape, shape["batch"] * (steps + warmup)))]
    cfg = TrainConfig(epochs=1, max_steps=steps + warmup, lr=LR[method_name], batch_size=shape["batch"],
                      warmup=0.0, log_every=warmup, early_stopping=EarlyStoppingConfig(patience=None))
    if profile:
        return profile_fit(lambda log: fit(model, task, train, [], cfg, log, device, dtype), cfg, warmup,
                           shape["batch"] * shape["seq"])
    log = _Capture()
    fit(model, task, train, [], cfg, log, device, dtype)  # type: ignore[arg-type]
    timed = [r for r in log.rows if r["split"] == "train"][-1]  # the window after the warm-up steps
    return {"tokens_per_s": timed["tokens_per_s"], "flops_per_token": flops, "notes": notes,
            "final_loss": timed["loss"]}


def profile_fit(run: Any, cfg: Any, warmup: int, tokens_per_step: int, active: int = 3) -> dict[str, Any]:
    """Profile `active` steps after the warm-up: the 25 rows with the most GPU time per step, and each
    step's wall time. Rows are ops and kernels alike (an aten op's row includes its kernels' time), so
    they do not add up to the step."""
    from torch.profiler import ProfilerActivity, profile, schedule

    cfg.log_every = 1
    cfg.max_steps = warmup + active + 1
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                 schedule=schedule(wait=warmup, warmup=0, active=active)) as prof:
        log = _Capture(prof)
        run(log)
    step_ms = [1e3 * tokens_per_step / r["tokens_per_s"] for r in log.rows if r["split"] == "train"]
    self_time = lambda e: getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0))  # noqa: E731
    top = sorted((e for e in prof.key_averages() if self_time(e) > 0), key=self_time, reverse=True)[:25]
    lines = [f"{self_time(e) / 1e3 / active:9.2f} ms/step {e.count // active:6d}x  {e.key[:110]}" for e in top]
    return {"profile": lines, "step_ms": [round(t, 1) for t in step_ms],
            "tokens_per_s": 0.0, "flops_per_token": 0.0, "note": "profiled: tokens/s not comparable"}


def child(case: str, shape_name: str, steps: int, warmup: int) -> dict[str, Any]:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = SHAPES[shape_name]
    import peft
    import transformers

    tool, method = case.split("_")
    if tool.startswith("tf") and tool[2:] not in VARIANTS:
        raise SystemExit(f"unknown case {case}: tuneforge variants are {', '.join('tf' + v for v in VARIANTS)}")
    if tool.startswith("tf"):
        row = run_tuneforge(shape, method, steps, warmup, device, variant=tool[2:], profile=tool == "tfprof")
    else:
        row = run_hf(shape, method, steps, warmup, device, compile=tool == "hfcompile")
    row.update(case=case, tool="tuneforge" if tool.startswith("tf") else "hf_peft" + ("_compile" if tool == "hfcompile" else ""),
               method=method, shape=shape_name, device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               versions=f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    if device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
        row["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2 ** 30, 2)
        row["mfu"] = round(row["tokens_per_s"] * row["flops_per_token"] / PEAK_FLOPS, 3)
    row["tokens_per_s"] = round(row["tokens_per_s"], 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama1b", choices=sorted(SHAPES))
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps per case")
    ap.add_argument("--warmup", type=int, default=6, help="untimed steps first (compilation, allocator)")
    ap.add_argument("--timeout", type=int, default=150, help="seconds per case")
    ap.add_argument("--out", default="bench/results/gpu.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("GPU_ROW " + json.dumps(child(args.child, args.shape, args.steps, args.warmup)), flush=True)
        return
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for case in args.cases.split(","):
        cmd = [sys.executable, __file__, "--child", case, "--shape", args.shape, "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            lines = [l for l in proc.stdout.splitlines() if l.startswith("GPU_ROW ")]
            row = json.loads(lines[-1][8:]) if lines else {"case": case, "error": proc.stderr[-3000:]}
        except subprocess.TimeoutExpired:
            row = {"case": case, "error": f"timed out after {args.timeout}s"}
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        out.write_text(json.dumps(rows, indent=2) + "\n")  # after every case: a later failure loses nothing
    print_table(rows)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'case':<16}{'tok/s':>10}{'MFU':>7}{'peak GiB':>10}{'vs HF':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['case']:<16} failed: {r['error'].strip().splitlines()[-1] if r['error'].strip() else '?'}")
            continue
        base = next((b for b in rows if b.get("case") == f"hf_{r['method']}" and "error" not in b), None)
        ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base and r["tool"] == "tuneforge" else ""
        print(f"{r['case']:<16}{r['tokens_per_s']:>10,.0f}{r.get('mfu', 0):>7.3f}{r.get('peak_mem_gib', 0):>10.2f}"
              f"{ratio:>8}")


if __name__ == "__main__":
    main()
