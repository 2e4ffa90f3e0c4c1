"""`tuneforge report RUN [RUN ...]`: rebuild each run's report.html from its files, and for several runs write
a side-by-side comparison page (evaluation/comparison.py). Nothing is retrained or re-evaluated."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import TuneforgeError
from ..evaluation.comparison import render
from ..evaluation.report import regenerate
from ..runs.rundir import atomic_write_text


def default_out(run_dirs: list[Path]) -> Path:
    """<first run's parent>/compare-<a>-vs-<b>....html (names cut short)."""
    names = "-vs-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", d.resolve().name) for d in run_dirs)
    return run_dirs[0].resolve().parent / f"compare-{names[:120]}.html"


def report_command(runs: list[str], out: str | None = None) -> int:
    run_dirs = list(dict.fromkeys(Path(r) for r in runs))
    if out and len(run_dirs) < 2:
        raise TuneforgeError("--out names the comparison page, which needs two or more runs; for one run the "
                             "report is RUN/report.html")
    for d in run_dirs:
        print(f"report: {regenerate(d)}")
    if len(run_dirs) > 1:
        path = Path(out) if out else default_out(run_dirs)
        if path.is_dir():
            raise TuneforgeError(f"--out {path} is a directory; give a file name, e.g. {path / 'compare.html'}")
        if not path.parent.is_dir():
            raise TuneforgeError(f"--out {path}: directory {path.parent} does not exist; create it first")
        atomic_write_text(path, render(run_dirs))
        print(f"comparison: {path}")
    return 0
