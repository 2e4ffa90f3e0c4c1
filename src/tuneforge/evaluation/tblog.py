"""What the end of a run adds to TensorBoard (training/runlog.py writes it): the hyper-parameters against
the final metrics, the resolved config and sample outputs as text, and per-class precision-recall curves."""
from __future__ import annotations

from typing import Any

import numpy as np

from .analysis import headline_split

MAX_TEXT_ROWS = 20   # sample rows per text summary
CELL = 300           # characters per table cell


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1e-3}} -> {"train.lr": 1e-3}; None as "null"."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = "null" if v is None else v
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of a sample list as a Markdown table (TensorBoard renders its text tab as Markdown)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        text = str(v).replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= CELL else text[:CELL - 1] + "…"

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows[:MAX_TEXT_ROWS]]
    return "\n".join(lines)


def write(log: Any, task: Any, config: dict[str, Any], config_yaml: str, results: dict[str, Any],
          final_rows: dict[str, list[dict[str, Any]]], step: int) -> None:
    """Everything above, at the run's last step."""
    split = headline_split(results)
    metrics = {}
    if split:
        metrics = {f"test/{k}" if split == "test" else f"eval_final/{k}": float(v)
                   for k, v in results["final"][split].items() if k in task.headline and isinstance(v, (int, float))}
    log.hparams(flatten(config), metrics, step)
    log.text("config", "    " + config_yaml.replace("\n", "\n    "), step)  # indented: a code block
    for stage in ("base", "final"):
        for s, m in results.get(stage, {}).items():
            for key in task.showcase:
                if isinstance(m.get(key), list) and m[key]:
                    log.text(f"{key}/{stage}_{s}", markdown_table(m[key]), step)
    scores = task.scores(final_rows.get(split) or []) if split else None
    if scores is not None:
        probs = scores.probs()
        for k, name in enumerate(scores.names):
            log.pr_curve(f"pr/{name}", scores.truth[:, k].astype(bool), np.clip(probs[:, k], 0, 1), step)
