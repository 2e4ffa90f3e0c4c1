"""Reading a run directory: the one place that parses what a run left behind.

config.yaml (the resolved config + `_provenance`: versions, data hashes, split sizes), model/tuneforge.json
(the task's metadata: labels, formatting, heads, and the method), eval.json (the final results) and
metrics.jsonl (one row per logged step). Every command that reads a run (eval, predict, chat, export,
sequence, compare, resume, continued runs) comes through here, so a damaged file ends in one error line.
"""
from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TuneforgeError

if TYPE_CHECKING:
    from ..config import Config

MAX_CONFIG_BYTES = 1_000_000  # a resolved config.yaml is a few KB; a bigger one is not ours
META = Path("model") / "tuneforge.json"


def require_run(run_dir: Path) -> Path:
    """A finished run directory, or an error that says what is wrong with the path."""
    if not run_dir.is_dir():
        raise TuneforgeError(f"run directory {run_dir} not found (train one with: tuneforge train CONFIG)")
    if not (run_dir / "model").is_dir():
        raise TuneforgeError(f"{run_dir} has no model/ (the run did not finish; resume it with --resume)")
    return run_dir


def read_config(run_dir: Path) -> "Config":
    """The resolved Config a finished run was trained with."""
    from ..config import load_config

    require_run(run_dir)
    settings, _ = read_saved_config(run_dir)
    return load_config(None, base=settings)


def read_saved_config(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, provenance) from config.yaml, not validated (a run may be unfinished); its paths, written
    relative to the run directory, resolved (as in any config file)."""
    import yaml

    from ..configpaths import recorded_fallback, resolve_paths

    raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    provenance = raw.pop("_provenance", None) if isinstance(raw, dict) else None
    provenance = provenance if isinstance(provenance, dict) else {}
    paths = provenance.get("paths")
    settings = resolve_paths(raw if isinstance(raw, dict) else {}, run_dir)
    return (recorded_fallback(settings, paths) if isinstance(paths, dict) else settings), provenance


def is_tuneforge_config(path: Path) -> bool:
    """config.yaml as tuneforge writes it: a mapping with `_provenance` naming the tuneforge version."""
    import yaml

    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return False
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and isinstance(raw.get("_provenance"), dict) and "tuneforge" in raw["_provenance"]


def read_meta(run_dir: Path, missing: str | None = None) -> dict[str, Any]:
    """model/tuneforge.json: the task's metadata and the method. `missing`: the error when it is absent."""
    path = run_dir / META
    if missing is not None and not path.exists():
        raise TuneforgeError(missing)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        meta = e
    if not isinstance(meta, dict):
        raise TuneforgeError(f"cannot read {path} ({type(meta).__name__}); the run is damaged: train it again "
                             "with --overwrite")
    return meta


def run_task(run_dir: Path) -> str:
    """The task name of a finished run (runs saved before tuneforge.json named it are the default task)."""
    from ..tasks import DEFAULT

    return str(read_meta(require_run(run_dir)).get("task", DEFAULT))


def read_eval(run_dir: Path) -> dict[str, Any]:
    """eval.json: the results of a finished run."""
    return json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl: every logged row ([] before the first one)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- what a run records about its inputs

def provenance(cfg: "Config", splits: dict[str, list[Any]]) -> dict[str, Any]:
    """config.yaml's `_provenance`: the versions that trained the run, its data files' hashes, split sizes."""
    import torch
    import transformers

    from ..version import __version__

    return {"tuneforge": __version__, "torch": str(torch.__version__), "transformers": str(transformers.__version__),
            "python": platform.python_version(), "data_sha256": data_hashes(cfg),
            "split_sizes": {k: len(v) for k, v in splits.items()}}


def data_hashes(cfg: "Config") -> dict[str, str]:
    """split → sha256 (first 16 hex digits) of each data file the config names."""
    hashes = {}
    for name in ("train", "validation", "test"):
        spec = getattr(cfg.data, name)
        if isinstance(spec, str) and Path(spec).is_file():
            hashes[name] = hashlib.sha256(Path(spec).read_bytes()).hexdigest()[:16]
    return hashes


def recorded_hashes(run_dir: Path) -> dict[str, str] | None:
    """The data hashes a run recorded when it started (None when it recorded none)."""
    return read_saved_config(run_dir)[1].get("data_sha256")


def read_predictions(run_dir: Path, split: str, stage: str = "final") -> list[dict[str, Any]] | None:
    """predictions/<split>.jsonl (stage "final") or predictions/<stage>-<split>.jsonl; None when absent."""
    path = run_dir / "predictions" / (f"{split}.jsonl" if stage == "final" else f"{stage}-{split}.jsonl")
    if not path.is_file():
        return None
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise TuneforgeError(f"cannot read {path} ({type(e).__name__}); the run is damaged: train it again "
                             "with --overwrite") from None
