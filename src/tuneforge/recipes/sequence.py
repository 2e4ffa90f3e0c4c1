"""`tuneforge sequence`: task A, then task B on the same body, under several variants, without losing A.

Each task after the first is a run continued from the previous one (`init_from`, tasks/heads.py: the
earlier heads stay, the new task's head is appended). `tuneforge sequence examples/sequence.yaml` trains
the tasks in order under several variants (plain, replay, EWC, ...) and writes the accuracy matrix R[i][j]
(accuracy on task j after training task i), forgetting per task, and backward transfer for each, to
runs/NAME/sequence.json.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ..config import dump_yaml, load_config
from ..errors import ConfigError, TuneforgeError
from ..runs import reading
from ..runs.rundir import atomic_write_json
from .train import train


# ------------------------------------------------------------------ `tuneforge sequence`

def load_sequence(path: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a sequence file: name, tasks (each a config file or mapping + `set` overrides), variants."""
    if not path.is_file():
        raise ConfigError([f"sequence file {path} not found"])
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems = []
    for key in spec:
        if key not in ("name", "output_dir", "tasks", "variants", "set"):
            problems.append(f"unknown key `{key}` in {path} (known: name, output_dir, tasks, variants, set)")
    tasks = spec.get("tasks")
    if not isinstance(tasks, list) or len(tasks) < 2:
        problems.append(f"{path}: `tasks` must list at least two tasks (each: config: FILE, set: {{key: value}})")
    variants = spec.get("variants") or {"plain": {}}
    if not isinstance(variants, dict) or not all(isinstance(v, dict) or v is None for v in variants.values()):
        problems.append(f"{path}: `variants` must map a variant name to overrides, e.g. replay: {{forgetting.replay: 0.2}}")
    else:
        problems += [f"{path}: variant name {k!r} must be a plain directory name" for k in variants
                     if not isinstance(k, str) or not k or "/" in k or k in (".", "..")]
    if problems:
        raise ConfigError(problems)
    spec.setdefault("name", path.stem)
    spec["variants"] = variants
    spec["root"] = path.parent
    spec["cli_overrides"] = list(overrides or [])
    return spec


def stage_config(spec: dict[str, Any], index: int, variant: dict[str, Any], previous: Path | None) -> Any:
    """The Config of task `index` under one variant, continuing from `previous` (None for the first task)."""
    entry = spec["tasks"][index]
    entry = {"config": entry} if isinstance(entry, str) else entry
    sets = {**(spec.get("set") or {}), **(entry.get("set") or {})}
    if previous is not None:  # init_from goes in with the overrides: validation needs it (replay/EWC checks)
        sets.update({**(variant or {}), "init_from": str(previous)})
    overrides = [f"{k}={_yaml_value(v)}" for k, v in sets.items()] + spec["cli_overrides"]
    source = entry.get("config")
    if isinstance(source, dict):
        cfg = load_config(None, overrides, base=copy.deepcopy(source))
        for split in ("train", "validation", "test"):  # inline data paths: relative to cwd, else to the file
            value = getattr(cfg.data, split)
            if isinstance(value, str) and value and not Path(value).exists() and (spec["root"] / value).exists():
                setattr(cfg.data, split, str(spec["root"] / value))
    else:
        path = Path(source)
        path = path if path.exists() else spec["root"] / path
        cfg = load_config(path, overrides)
    cfg.output_dir = str(Path(spec.get("output_dir", "runs")) / spec["name"] / ("" if previous is None else spec["variant"]))
    return cfg


def _yaml_value(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def run_sequence(spec: dict[str, Any], overwrite: bool = False, quiet: bool = False,
                 only: list[str] | None = None) -> dict[str, Any]:
    """Train every task in order under every variant; the first task is trained once and shared."""
    out_dir = Path(spec.get("output_dir", "runs")) / spec["name"]
    first_cfg = stage_config({**spec, "variant": ""}, 0, {}, None)
    unknown = [v for v in only or [] if v not in spec["variants"]]
    if unknown:
        raise ConfigError([f"--variants: {', '.join(unknown)} not in the file (it has {', '.join(spec['variants'])})"])
    if first_cfg.name in spec["variants"]:  # runs/NAME/<variant>/ would sit inside the first task's run
        raise ConfigError([f"variant name {first_cfg.name!r} is also the first task's name; rename the variant"])
    variants = {k: v or {} for k, v in spec["variants"].items() if not only or k in only}
    plans = {name: plan_variant(spec, name, overrides, first_cfg) for name, overrides in variants.items()}
    first = _train_or_reuse(first_cfg, overwrite, quiet)  # every config is valid before anything trains
    report: dict[str, Any] = {"name": spec["name"], "tasks": [], "variants": {}}
    for name, configs in plans.items():
        runs = [first] + [_train_or_reuse(cfg, overwrite, quiet) for cfg in configs]
        report["variants"][name] = {"overrides": variants[name], **accuracy_matrix(runs),
                                    "runs": [str(r) for r in runs]}
    report["tasks"] = report["variants"][next(iter(variants))]["task_names"] if variants else []
    report["comparison"] = compare_variants(report["variants"])
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "sequence.json", report)
    return report


def plan_variant(spec: dict[str, Any], name: str, overrides: dict[str, Any], first_cfg: Any) -> list[Any]:
    """The configs of tasks 2..n under one variant, each continuing from the previous task's run directory."""
    configs, previous = [], first_cfg.run_dir
    for i in range(1, len(spec["tasks"])):
        cfg = stage_config({**spec, "variant": name}, i, overrides, previous)
        configs.append(cfg)
        previous = cfg.run_dir
    return configs


def _train_or_reuse(cfg: Any, overwrite: bool, quiet: bool) -> Path:
    """Train, unless a finished run with the identical config is already there (the shared first task,
    re-runs after adding a variant). The sequence owns runs/NAME/, so a changed config retrains in place."""
    if not overwrite and _reusable(cfg):
        return cfg.run_dir
    return train(cfg, overwrite=True, quiet=quiet).run_dir


def _reusable(cfg: Any) -> bool:
    """Same config, and trained after the run it continues (a retrained earlier task makes it stale)."""
    done = cfg.run_dir / "eval.json"
    if not done.exists() or not _same_config(cfg):
        return False
    upstream = Path(cfg.init_from) / "eval.json" if cfg.init_from else None
    return upstream is None or (upstream.exists() and upstream.stat().st_mtime < done.stat().st_mtime)


def _same_config(cfg: Any) -> bool:
    """Equal after both pass through the current schema (a key added since, at its default, is no change)."""
    try:
        stored = reading.read_config(cfg.run_dir)
    except TuneforgeError:  # a key renamed or removed since: not the same run
        return False
    return yaml.safe_load(dump_yaml(stored)) == yaml.safe_load(dump_yaml(cfg))


def accuracy_matrix(runs: list[Path]) -> dict[str, Any]:
    """R[i][j]: test accuracy on task j after training task i (None above the diagonal), and the summaries."""
    n = len(runs)
    names: list[str] = []
    matrix: list[list[float | None]] = []
    for i, run in enumerate(runs):
        result = reading.read_eval(run)
        meta = reading.read_meta(run)
        heads = meta.get("heads") or [{"name": reading.read_config(run).name}]
        names = [h["name"] for h in heads] if len(heads) >= len(names) else names
        row: list[float | None] = [None] * n
        earlier = (result.get("forgetting") or {}).get("tasks", {})
        for j, head in enumerate(heads[:-1]):
            row[j] = earlier.get(head["name"], {}).get("after")
        final = result["final"].get("test") or result["final"].get("validation")
        row[len(heads) - 1] = final["accuracy"]
        matrix.append(row)
    last = matrix[-1]
    forgetting = {names[j]: max(matrix[i][j] for i in range(j, n - 1)) - last[j] for j in range(n - 1)}
    bwt = sum(last[j] - matrix[j][j] for j in range(n - 1)) / max(n - 1, 1)
    return {"task_names": names, "matrix": matrix, "forgetting": forgetting, "backward_transfer": bwt,
            "final_accuracy": {names[j]: last[j] for j in range(n)}, "average_accuracy": sum(last) / n}


def compare_variants(variants: dict[str, Any], baseline: str = "plain") -> dict[str, Any]:
    """Per variant: how much of the baseline's forgetting it removes, and what it costs the newest task."""
    if baseline not in variants:
        return {}
    base = variants[baseline]
    newest = base["task_names"][-1]
    base_forget = sum(base["forgetting"].values())
    out = {}
    for name, v in variants.items():
        forget = sum(v["forgetting"].values())
        out[name] = {"forgetting": forget,
                     "forgetting_reduction": (1 - forget / base_forget) if base_forget > 0 else None,
                     "newest_task_cost_points": 100 * (base["final_accuracy"][newest] - v["final_accuracy"][newest])}
    return out


def table_lines(report: dict[str, Any]) -> list[str]:
    """The accuracy matrices and the comparison as plain text."""
    lines = []
    for name, v in report["variants"].items():
        names = v["task_names"]
        lines.append(f"\n{name}: accuracy after training each task (rows) on each task's test data (columns)")
        lines.append(f"{'after':<16}" + "".join(f"{t:>14}" for t in names))
        for t, row in zip(names, v["matrix"]):
            lines.append(f"{t:<16}" + "".join(f"{x:>14.4f}" if isinstance(x, float) else f"{'-':>14}" for x in row))
        lines.append("forgetting: " + ", ".join(f"{k} {100 * x:.1f} points" for k, x in v["forgetting"].items())
                     + f"; backward transfer {100 * v['backward_transfer']:+.1f} points")
    comp = report.get("comparison") or {}
    if comp:
        lines.append(f"\n{'variant':<12}{'forgetting':>12}{'reduction':>12}{'new-task cost':>16}")
        for name, c in comp.items():
            red = f"{100 * c['forgetting_reduction']:.0f}%" if c["forgetting_reduction"] is not None else "-"
            lines.append(f"{name:<12}{100 * c['forgetting']:>11.1f}p{red:>12}{c['newest_task_cost_points']:>15.1f}p")
    return lines


def sequence_command(path: str, overrides: list[str], overwrite: bool = False, variants: str = "",
                     quiet: bool = False) -> int:
    spec = load_sequence(Path(path), overrides)
    only = [v for v in variants.split(",") if v] or None
    report = run_sequence(spec, overwrite=overwrite, quiet=quiet, only=only)
    for line in table_lines(report):
        print(line)
    print(f"\nwritten: {Path(spec.get('output_dir', 'runs')) / spec['name'] / 'sequence.json'}")
    return 0
