"""`tuneforge audit RUN`: the memorization audit of a finished run (evaluation/memorization.py), again.

The run's data is read and vetted again from its config, exactly as training did (the canaries derive from
its seed and name, so the same ones are planted and scored); the result goes to RUN/audit.json (hashes and
scores only) and is printed. eval.json is not touched.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.canaries import make
from ..errors import TuneforgeError
from ..evaluation.memorization import audit, audit_lines
from ..runs import reading, rundir
from ..training.device import autocast_dtype, pick_device
from .inference import load_run
from .train import prepare


def audit_command(run: str, as_json: bool = False) -> int:
    import json

    run_dir = Path(run)
    found = audit_run(run_dir)
    print(json.dumps(found, indent=2) if as_json else "\n".join(audit_lines(found)))
    return 0


def audit_run(run_dir: Path) -> dict[str, Any]:
    reading.require_run(run_dir)
    cfg, task, model = load_run(run_dir)
    prep = prepare(cfg)
    device = pick_device()
    found = audit(task, model, prep.encoded, cfg, device, autocast_dtype(cfg.train.precision, device),
                  make(cfg.privacy.canaries, cfg.train.seed, cfg.name))
    if found is None:
        raise TuneforgeError(f"{run_dir}: nothing to audit ({cfg.task} gives no per-example losses, or the run "
                             "has no validation or test split to compare the training examples with)")
    rundir.atomic_write_json(run_dir / "audit.json", found)
    return found
