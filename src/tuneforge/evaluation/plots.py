"""The report's pictures (matplotlib, Agg, PNG): learning curves, confusion matrices, reliability diagrams,
and the several-run comparison's overlaid curves. Each reads plain data and writes one file.

Curves show something even for a run evaluated once: every validation point is a labelled marker, the base
model's validation loss a dashed reference line, and the learning-rate schedule its own panel.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DPI = 110
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


def short(y: float) -> str:
    """3 decimals below 100 (a loss of 10.356 vs a base of 10.361 must read apart), else 4 significant digits."""
    return f"{y:.3f}" if abs(y) < 100 else f"{y:.4g}"


def _label_points(ax: Any, xs: list[float], ys: list[float], color: str) -> None:
    for x, y in zip(xs, ys):
        ax.annotate(short(y), (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8,
                    color=color)


def plot_curves(rows: list[dict[str, Any]], path: Path, metric: str | None = None,
                base_loss: float | None = None) -> Path | None:
    """curves.png: training and validation loss; validation `metric` when it was computed; learning rate."""
    train = [r for r in rows if r.get("split") == "train" and "loss" in r]
    val = [r for r in rows if r.get("split") == "val" and "loss" in r]
    if not train and not val:
        return None
    metric = metric if val and all(metric in r for r in val) else None
    lr = [r for r in train if "lr" in r]
    panels = ["loss"] + (["metric"] if metric else []) + (["lr"] if lr else [])
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "loss":
            if train:
                ax.plot([r["step"] for r in train], [r["loss"] for r in train], ".-", color=COLORS[0], lw=1.2,
                        ms=4, label="train loss")
            if val:
                xs, ys = [r["step"] for r in val], [r["loss"] for r in val]
                ax.plot(xs, ys, "o-", color=COLORS[1], label="validation loss")
                _label_points(ax, xs, ys, COLORS[1])
            if base_loss is not None and np.isfinite(base_loss):
                ax.axhline(base_loss, ls="--", color="#888", lw=1, label=f"base validation loss {short(base_loss)}")
            ax.set_ylabel("loss")
            ax.legend(fontsize=8)
        elif panel == "metric":
            xs, ys = [r["step"] for r in val], [r[metric] for r in val]
            ax.plot(xs, ys, "o-", color=COLORS[2])
            _label_points(ax, xs, ys, COLORS[2])
            ax.set_ylabel(f"validation {metric}")
        else:
            ax.plot([r["step"] for r in lr], [r["lr"] for r in lr], "-", color=COLORS[3])
            ax.set_ylabel("learning rate")
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.set_xlabel("step")
        ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
        ax.grid(alpha=0.3)
        ax.margins(x=0.08, y=0.15)
    return _save(fig, path)


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> Path:
    """Counts and row-normalized (each true class sums to 1: the diagonal is its recall), side by side."""
    counts = np.asarray(matrix, dtype=float)
    normalized = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    k = len(labels)
    plt = pyplot()
    side = 0.55 * k + 1.9
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 0.6, side))
    for ax, data, name, fmt in ((axes[0], counts, "counts", "{:.0f}"), (axes[1], normalized, "normalized by true class",
                                                                         "{:.2f}")):
        ax.imshow(data, cmap="Blues", vmin=0, vmax=max(data.max(), 1e-9))
        for i in range(k):
            for j in range(k):
                dark = data[i, j] > 0.6 * data.max()
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if dark else "#222")
        ax.set_xticks(range(k), labels, rotation=30 if k > 3 else 0, ha="right" if k > 3 else "center")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title} — {name}", fontsize=10)
    return _save(fig, path)


def plot_reliability(calib: dict[str, Any], path: Path) -> Path:
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration, and bin counts."""
    plt = pyplot()
    sets = [("as trained", calib["bins"], calib["ece"])]
    if "calibrated" in calib:
        c = calib["calibrated"]
        sets.append((f"temperature {c['temperature']:g}", c["bins"], c["ece"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.4 * len(sets), 4), squeeze=False)
    for ax, (name, bins, ece) in zip(axes[0], sets):
        mids = [(b["lo"] + b["hi"]) / 2 for b in bins]
        width = [b["hi"] - b["lo"] for b in bins]
        ax.bar(mids, [b["accuracy"] for b in bins], width=width, edgecolor="#1f4e79", color="#9ecae1",
               label="accuracy in bin")
        ax.plot([0, 1], [0, 1], "--", color="#888", lw=1, label="perfect calibration")
        ax.plot(mids, [b["confidence"] for b in bins], "o", color=COLORS[1], ms=4, label="mean confidence")
        for m, b in zip(mids, bins):
            ax.annotate(str(b["n"]), (m, b["accuracy"]), textcoords="offset points", xytext=(0, 3), ha="center",
                        fontsize=7, color="#555")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name}: ECE {ece:.3f}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_overlay(curves: dict[str, list[dict[str, Any]]], path: Path, metric: str | None = None) -> Path | None:
    """Several runs' validation loss (and `metric`) on shared axes, one colour per run."""
    if not any(r.get("split") == "val" for rows in curves.values() for r in rows):
        return None
    has_metric = metric is not None and any(metric in r for rows in curves.values() for r in rows
                                            if r.get("split") == "val")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if has_metric else 1, figsize=(10 if has_metric else 5.5, 3.8), squeeze=False)
    for i, (name, rows) in enumerate(curves.items()):
        val = [r for r in rows if r.get("split") == "val"]
        color = COLORS[i % len(COLORS)]
        axes[0][0].plot([r["step"] for r in val], [r["loss"] for r in val], "o-", color=color, label=name)
        if has_metric:
            pts = [r for r in val if metric in r]
            axes[0][1].plot([r["step"] for r in pts], [r[metric] for r in pts], "o-", color=color, label=name)
    axes[0][0].set_ylabel("validation loss")
    if has_metric:
        axes[0][1].set_ylabel(f"validation {metric}")
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
