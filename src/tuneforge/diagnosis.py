"""Curve diagnosis: healthy | overfitting | underfitting | unstable, with evidence and advice.

First version: reads the logged train/validation losses. (Extended by the guard work, issue 8.)
"""
from __future__ import annotations

import math
from typing import Any


def diagnose(rows: list[dict[str, Any]], results: dict[str, Any]) -> dict[str, Any]:
    train = [r for r in rows if r.get("split") == "train"]
    val = [r for r in rows if r.get("split") == "val"]
    evidence: list[str] = []
    if any(not math.isfinite(r.get("loss", 0.0)) for r in train):
        return {"label": "unstable", "evidence": ["training loss became NaN/inf"],
                "advice": ["lower train.lr", "keep train.max_grad_norm set"]}
    if len(val) >= 2:
        best = min(val, key=lambda r: r["loss"])
        last = val[-1]
        if last["loss"] > best["loss"] * 1.1 and train and train[-1]["loss"] < train[0]["loss"]:
            evidence.append(f"validation loss rose from {best['loss']:.4f} (step {best['step']}) "
                            f"to {last['loss']:.4f} (step {last['step']}) while training loss fell")
            return {"label": "overfitting", "evidence": evidence,
                    "advice": [f"stop at step {best['step']} (early stopping)", "raise train.weight_decay",
                               "lower method.r or add data"]}
    if train and len(train) >= 2 and train[-1]["loss"] > 0.9 * train[0]["loss"]:
        evidence.append(f"training loss barely moved: {train[0]['loss']:.4f} → {train[-1]['loss']:.4f}")
        return {"label": "underfitting", "evidence": evidence,
                "advice": ["raise train.lr", "train longer (train.epochs)", "raise method.r or use full fine-tuning"]}
    if train:
        evidence.append(f"training loss {train[0]['loss']:.4f} → {train[-1]['loss']:.4f}")
    return {"label": "healthy", "evidence": evidence, "advice": []}
