"""`tuneforge compare`: the same task under several methods (and training-set sizes), side by side.

Every (method, size) pair is an ordinary run of the train recipe (recipes/train.py) on a derived config, written to
runs/NAME/compare/METHOD-SIZE, so each can be inspected, evaluated or exported like any other run.
All runs share one validation and one test split (carved once, written to compare/data/), and the
training subsets are stratified by label and nested (the 200-example set contains the 50).

Fairness choices, all recorded in compare.md:
- learning rate: methods of the config's own family (parameter-efficient vs. full-weight) keep its
  train.lr; the other family gets its conventional rate (Method.default_lr), since LoRA's 1e-3 wrecks full
  fine-tuning and full fine-tuning's 1e-4 barely moves LoRA. `train.lr=...` on the command line
  applies to every method.
- steps: a small subset gets more epochs so that every run takes at least MIN_STEPS optimizer steps, and
  parameter-efficient methods at least PEFT_MIN_STEPS: their small low-rank or bottleneck updates need more
  steps to converge (measured on examples/sentiment, 200 examples: LoRA 0.627 test accuracy after 42 steps,
  0.923 after 154; adapter 0.350 → 0.937), and the training-time column shows what that costs. Runs with
  many epochs are validated about EVALS times instead of after every epoch.
- memory: each run trains in a fresh Python process. On CPU, peak_mem_mb is that process's peak
  resident memory (VmHWM, kernel-tracked) minus its resident memory just before training began
  (after importing torch, transformers and peft and one warm-up pass over the data), so it counts
  loading the model, gradients, optimizer state, activations and evaluation. On CUDA it is
  torch.cuda.max_memory_allocated. cpu_s (CPU seconds of that process) is reported beside wall time
  because wall time grows when other work shares the cores.
- a rerun without --overwrite reuses finished runs whose config is unchanged (an interrupted
  comparison resumes); --overwrite starts from scratch.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, dump_yaml, load_config, to_dict
from ..data.records import Record
from ..data.splits import load_splits, stratified_order
from ..errors import TuneforgeError
from ..methods import NAMES as METHODS
from ..methods import method_class
from ..methods.base import PARAMETER_EFFICIENT
from ..runs import reading
from ..runs.rundir import atomic_write_json, atomic_write_text
from ..tasks import task_class

MIN_STEPS = 40         # full-weight methods (full, freeze, scratch)
PEFT_MIN_STEPS = 150   # parameter-efficient methods (lora, dora, qlora, adapter; see the module docstring)
EVALS = 8              # validations per run when it has more epochs than this


@dataclass
class DataPlan:
    """The files every derived run reads: one training subset per size, shared validation and test."""

    train: dict[int, Path]
    validation: str | None
    test: str | None
    available: int


# ------------------------------------------------------------------ entry points

def compare_command(config_path: str, methods_csv: str, sizes_csv: str, overrides: list[str],
                    overwrite: bool = False) -> int:
    cfg = load_config(config_path, overrides)
    methods = parse_methods(methods_csv)
    sizes = parse_sizes(sizes_csv)
    keep_lr = any(o.strip().startswith("train.lr=") for o in overrides)
    rows = compare(cfg, methods, sizes, overwrite=overwrite, keep_lr=keep_lr)
    print(markdown_table(rows))
    print(f"\nwrote {cfg.run_dir / 'compare.json'}, compare.md and plots")
    return 1 if any(r.get("error") for r in rows) else 0


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise TuneforgeError(f"--methods: unknown {', '.join(unknown) or '(none given)'}; "
                             f"choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in (text or "").split(",") if s.strip()]
    except ValueError:
        raise TuneforgeError(f"--sizes {text!r}: give comma-separated whole numbers, e.g. 50,200,800") from None
    if any(s < 1 for s in sizes):
        raise TuneforgeError(f"--sizes {text!r}: sizes must be at least 1")
    return sorted(set(sizes))


def compare(cfg: Config, methods: list[str], sizes: list[int], overwrite: bool = False, isolate: bool = True,
            keep_lr: bool = False, min_steps: int | None = None) -> list[dict[str, Any]]:
    """Train every (method, size), then write compare.json, compare.md and the plots into cfg.run_dir."""
    root = cfg.run_dir
    work = root / "compare"
    if overwrite and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    plan = write_subsets(cfg, sizes, work / "data")
    rows: list[dict[str, Any]] = []
    # Size-major: an interrupted comparison still holds every method at the smaller sizes.
    jobs = [(m, n) for n in sorted(plan.train) for m in methods]
    for i, (method, size) in enumerate(jobs, start=1):
        sub = derive(cfg, method, size, plan, work, keep_lr, min_steps)
        measured = finished(sub, work) if isolate else None
        print(f"[{i}/{len(jobs)}] {method} on {size} examples (lr {sub.train.lr:g}, {sub.train.epochs:g} epochs)"
              + (": reusing the finished run with this exact config" if measured else ""), file=sys.stderr, flush=True)
        try:
            measured = measured or (run_isolated(sub, work) if isolate else run_inline(sub))
            rows.append(make_row(sub, method, size, measured))
        except TuneforgeError as e:  # one failing method must not throw away the others' results
            print(f"  {method}-{size} failed: {e}", file=sys.stderr)
            rows.append({"method": method, "size": size, "error": str(e)})
        write_json(root / "compare.json", rows)  # after every run: progress survives an interruption
    write_report(root, rows, cfg, keep_lr, min_steps)
    return rows


# ------------------------------------------------------------------ data

def write_subsets(cfg: Config, sizes: list[int], out: Path) -> DataPlan:
    """Carve validation/test once (as `train` would), then write one stratified training file per size."""
    label = task_class(cfg.task).stratify_column(cfg)
    splits = load_splits(cfg.data.train, cfg.data.validation, cfg.data.test, label, cfg.data.group,
                         cfg.train.seed, cfg.data.limit)  # data.limit cuts the records read, as in train
    train = splits["train"]
    out.mkdir(parents=True, exist_ok=True)
    shared = {}
    for name in ("validation", "test"):
        spec = getattr(cfg.data, name)
        if isinstance(spec, str):
            shared[name] = str(Path(spec).resolve())
        elif name in splits:
            shared[name] = str(write_records(out / f"{name}.jsonl", splits[name]).resolve())
        else:
            shared[name] = None
    wanted = sizes or [len(train)]
    order = stratified_order(train, label, cfg.train.seed)
    files = {}
    for size in sorted({min(s, len(train)) for s in wanted}):
        files[size] = write_records(out / f"train-{size}.jsonl", [train[i] for i in order[:size]]).resolve()
    if any(s > len(train) for s in wanted):
        print(f"note: only {len(train)} training records after carving validation/test; larger sizes use all",
              file=sys.stderr)
    return DataPlan(files, shared["validation"], shared["test"], len(train))


def write_records(path: Path, records: list[Record]) -> Path:
    path.write_text("".join(json.dumps(r.fields, ensure_ascii=False, default=str) + "\n" for r in records),
                    encoding="utf-8")
    return path


def derive(cfg: Config, method: str, size: int, plan: DataPlan, work: Path, keep_lr: bool,
           min_steps: int | None = None) -> Config:
    """The config of one comparison run (see the module docstring for the lr and step rules)."""
    raw = to_dict(cfg)
    raw.update(name=f"{method}-{size}", output_dir=str(work), resume=False)
    raw["method"]["name"] = method
    raw["data"].update(train=str(plan.train[size]), validation=plan.validation, test=plan.test, limit=None)
    raw["eval"]["base"] = False  # the base model's score is the same for every method; skip the cost
    kind = method_class(method)
    if not keep_lr and kind.family != method_class(cfg.method.name).family:
        raw["train"]["lr"] = kind.default_lr
    t = cfg.train
    if not t.max_steps:
        steps_per_epoch = math.ceil(math.ceil(size / t.batch_size) / t.grad_accum)
        floor = min_steps if min_steps is not None else \
            PEFT_MIN_STEPS if kind.family == PARAMETER_EFFICIENT else MIN_STEPS
        epochs = max(t.epochs, math.ceil(floor / steps_per_epoch))
        raw["train"]["epochs"] = epochs
        if not t.eval_every and epochs > EVALS:  # validating after each of 75 tiny epochs would dominate
            raw["train"]["eval_every"] = math.ceil(epochs * steps_per_epoch / EVALS)
    return load_config(None, base=raw)


# ------------------------------------------------------------------ running and measuring

def finished(cfg: Config, work: Path) -> dict[str, Any] | None:
    """The measurements of an earlier run with exactly this config, if it finished (a rerun resumes)."""
    configs = work / "configs"
    cfg_path, result_path = configs / f"{cfg.name}.yaml", configs / f"{cfg.name}.result.json"
    if (cfg_path.exists() and result_path.exists() and (cfg.run_dir / "eval.json").exists()
            and cfg_path.read_text(encoding="utf-8") == dump_yaml(cfg) and _same_data(cfg)):
        return json.loads(result_path.read_text(encoding="utf-8"))
    return None


def _same_data(cfg: Config) -> bool:
    """The run's recorded data hashes match the files now (the subsets are rewritten from the source data)."""
    return reading.recorded_hashes(cfg.run_dir) == reading.data_hashes(cfg)


def run_isolated(cfg: Config, work: Path) -> dict[str, Any]:
    """Train in a fresh Python process and read its memory figures (see `_child_main`)."""
    configs = work / "configs"
    configs.mkdir(exist_ok=True)
    cfg_path, result_path, log_path = (configs / f"{cfg.name}{ext}" for ext in (".yaml", ".result.json", ".log"))
    result_path.unlink(missing_ok=True)
    cfg_path.write_text(dump_yaml(cfg), encoding="utf-8")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run([sys.executable, "-m", "tuneforge.recipes.compare", str(cfg_path), str(result_path)],
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise TuneforgeError(f"training exited with {proc.returncode}: {' | '.join(tail)} (full log: {log_path})")
    return json.loads(result_path.read_text(encoding="utf-8"))


def run_inline(cfg: Config) -> dict[str, Any]:
    """Train in this process; memory is sampled every 10 ms (approximate: it can miss short spikes)."""
    import psutil

    from .train import train

    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    cuda = _cuda_reset()
    sampler.start()
    t0 = time.perf_counter()
    try:
        train(cfg, overwrite=True, quiet=True)
    finally:
        done.set()
        sampler.join()
    return _measurement(before, max(peak[0], proc.memory_info().rss), cuda, time.perf_counter() - t0,
                        "sampled RSS growth (in-process, every 10 ms)")


def _cuda_reset() -> bool:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return True
    return False


def _measurement(before: int, peak: int, cuda: bool, wall: float, how: str) -> dict[str, Any]:
    mib = 2 ** 20
    out = {"rss_before_mb": round(before / mib, 1), "peak_rss_mb": round(peak / mib, 1),
           "peak_mem_mb": round((peak - before) / mib, 1), "memory_measure": how, "wall_s": round(wall, 1)}
    if cuda:
        import torch

        out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / mib, 1)
        out["memory_measure"] = "torch.cuda.max_memory_allocated"
    return out


def _child_main(cfg_path: str, result_path: str) -> int:
    """One comparison run in a fresh process: peak RSS minus RSS just before training.

    The baseline is taken after importing the libraries and one warm-up pass over the data (read, PII
    scan, leakage check, tokenize: identical for every method), so the growth is what the method costs:
    the model, its gradients and optimizer state, activations and evaluation.
    """
    import resource

    import psutil
    import yaml

    from ..models.loading import quiet_transformers

    quiet_transformers()  # before peft, which imports bitsandbytes
    import peft  # noqa: F401  (every method's baseline holds the same libraries)

    from ..training.memory import peak_rss, reset_peak_rss
    from .train import prepare, train

    cfg = load_config(None, base=yaml.safe_load(Path(cfg_path).read_text(encoding="utf-8")))
    prepare(cfg)
    reset_peak_rss()  # the warm-up's own transient peak is not the method's
    before = psutil.Process().memory_info().rss
    cuda = _cuda_reset()
    t0 = time.perf_counter()
    train(cfg, overwrite=True, quiet=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = _measurement(before, peak_rss(), cuda, time.perf_counter() - t0,
                          "peak RSS growth (VmHWM of a fresh process minus RSS after imports and a warm-up data pass)")
    # CPU seconds of the whole process: unlike wall time, not inflated when others share the cores
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


def make_row(cfg: Config, method: str, size: int, measured: dict[str, Any]) -> dict[str, Any]:
    results = reading.read_eval(cfg.run_dir)
    t = results["training"]
    final = results["final"]
    split = "test" if "test" in final else "validation"
    name = task_class(cfg.task).primary_metric
    return {"method": method, "size": size, "trainable_params": t["trainable_params"],
            "total_params": t["total_params"],
            "trainable_pct": round(100 * t["trainable_params"] / max(t["total_params"], 1), 3),
            "peak_mem_mb": measured["peak_mem_mb"], "train_s": t["train_seconds"], "tokens_per_s": t["tokens_per_s"],
            "metric_name": name, "metric": final.get(split, {}).get(name), "metric_split": split,
            "weights_mb": t.get("weights_mb"), "peak_rss_mb": measured["peak_rss_mb"],
            "memory_measure": measured["memory_measure"], "wall_s": measured["wall_s"], "cpu_s": measured.get("cpu_s"),
            "lr": cfg.train.lr, "epochs": cfg.train.epochs, "steps": t["steps"], "run_dir": str(cfg.run_dir)}


# ------------------------------------------------------------------ outputs

def write_json(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_json(path, rows)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ("| method | size | trainable | trainable % | peak mem MB | weights MB | train s | tokens/s | metric |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['method']} | {r['size']} | failed: {r['error'][:80]} | | | | | | |")
            continue
        metric = f"{r['metric_name']} {r['metric']:.3f}" if isinstance(r.get("metric"), (int, float)) else "-"
        lines.append(f"| {r['method']} | {r['size']} | {r['trainable_params']:,} | {r['trainable_pct']:.2f} | "
                     f"{r['peak_mem_mb']:,.0f} | {r.get('weights_mb') or 0:,.1f} | {r['train_s']:.1f} | "
                     f"{r['tokens_per_s']:,.0f} | {metric} |")
    return "\n".join(lines)


def write_report(root: Path, rows: list[dict[str, Any]], cfg: Config, keep_lr: bool,
                 min_steps: int | None) -> None:
    write_json(root / "compare.json", rows)
    plots = plot_comparison(rows, root)
    how = next((r["memory_measure"] for r in rows if r.get("memory_measure")), "")
    peft = [m for m in METHODS if method_class(m).family == PARAMETER_EFFICIENT]
    notes = [
        f"Task `{cfg.task}` on `{cfg.model}`; metric on the {next((r['metric_split'] for r in rows if 'metric_split' in r), 'test')} split.",
        f"peak mem MB: {how}. weights MB: the model's parameters and buffers as held in memory "
        "(4-bit weights for qlora).",
        "learning rate: " + ("train.lr from the command line for every method." if keep_lr else
                             f"the config's train.lr ({cfg.train.lr:g}) for methods of its family; "
                             + ", ".join(f"{m} {method_class(m).default_lr:g}" for m in METHODS) + " otherwise."),
        "epochs: at least train.epochs, more for small subsets so each run takes >= "
        + (f"{min_steps} optimizer steps." if min_steps is not None else
           f"{PEFT_MIN_STEPS} optimizer steps for parameter-efficient methods ({', '.join(sorted(peft))}: "
           f"small updates converge slower), {MIN_STEPS} for the others; validated about {EVALS} times a run."),
        "Training subsets are stratified by label and nested; validation and test are the same for every run.",
    ]
    compared = dict.fromkeys(r["method"] for r in rows if r.get("method") in METHODS)
    notes += [n for n in (method_class(m).compare_note() for m in compared) if n]
    text = "# Method comparison\n\n" + markdown_table(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    text += "".join(f"\n![{p.stem}]({p.name})\n" for p in plots)
    atomic_write_text(root / "compare.md", text)


def plot_comparison(rows: list[dict[str, Any]], root: Path) -> list[Path]:
    """compare.png (bars at the largest size) and, with several sizes, learning_curve.png."""
    from ..evaluation.plots import pyplot

    ok = [r for r in rows if not r.get("error")]
    if not ok:
        return []
    plt = pyplot()
    # The largest size that the most methods finished (a partial comparison still shows every method).
    largest = max({r["size"] for r in ok}, key=lambda n: (sum(r["size"] == n for r in ok), n))
    top = [r for r in ok if r["size"] == largest]
    names = [r["method"] for r in top]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [
        (axes[0][0], [r["trainable_params"] for r in top], "trainable parameters (log)",
         [f"{r['trainable_pct']:.2f}%" for r in top], True),
        (axes[0][1], [r["peak_mem_mb"] for r in top], "peak memory growth (MB)",
         [f"weights {r.get('weights_mb') or 0:.0f} MB" for r in top], False),
        (axes[1][0], [r["train_s"] for r in top], "training time (s)",
         [f"{r['tokens_per_s']:,.0f} tok/s" for r in top], False),
        (axes[1][1], [r["metric"] or 0 for r in top], f"{top[0]['metric_name']} ({top[0]['metric_split']})",
         [f"{r['metric'] or 0:.3f}" for r in top], False),
    ]
    for ax, values, title, labels, log in panels:
        bars = ax.bar(names, values, color="tab:blue")
        if log:
            ax.set_yscale("log")
        for bar, text in zip(bars, labels):
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"methods compared on {largest} training examples")
    fig.tight_layout()
    paths = [root / "compare.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    sizes = sorted({r["size"] for r in ok})
    if len(sizes) > 1:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method in dict.fromkeys(r["method"] for r in ok):
            pts = sorted((r["size"], r["metric"]) for r in ok if r["method"] == method and r["metric"] is not None)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=method)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("training examples"), ax.set_ylabel(f"{ok[0]['metric_name']} ({ok[0]['metric_split']})")
        ax.set_title("learning curves"), ax.grid(alpha=0.3), ax.legend()
        fig.tight_layout()
        paths.append(root / "learning_curve.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


if __name__ == "__main__":  # the child process of run_isolated
    sys.exit(_child_main(sys.argv[1], sys.argv[2]))
