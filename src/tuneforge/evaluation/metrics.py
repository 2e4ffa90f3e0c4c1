"""Classification metrics from scikit-learn, shaped for eval.json."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# Every scalar a classification evaluation computes, with the direction it improves in (`n` is a count).
CLASSIFICATION_DIRECTIONS = {"loss": "min", "accuracy": "max",
                             **{f"{m}_{avg}": "max" for avg in ("macro", "micro", "weighted")
                                for m in ("precision", "recall", "f1")}}


def classification_metrics(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                           labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro/micro/weighted precision-recall-F1, per-class numbers and the confusion matrix.

    Multi-label input (2-D 0/1 arrays) gets subset accuracy and no confusion matrix.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support  # ~1 s import

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ids = list(range(len(labels)))
    out: dict[str, Any] = {"accuracy": float(accuracy_score(y_true, y_pred)), "n": int(len(y_true))}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=avg, zero_division=0)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(p), float(r), float(f)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    out["per_class"] = {labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                    "support": int(s[i])} for i in ids}
    if y_true.ndim == 1:
        out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    return out


# ---------------------------------------------------------------- per-example tallies (evaluation/uncertainty.py)
# Hand-written rather than sklearn because the bootstrap needs the metrics of 1,000 resamples at once from
# column sums (see uncertainty.py); tests/test_uncertainty.py checks them against sklearn on the same data.

def classification_tally(rows: list[dict[str, Any]], labels: list[str]) -> dict[str, np.ndarray]:
    """Per-example columns: n, correct, and tp/fp/fn per class (rows' "label"/"predicted": a name, or a list
    of names for multi-label)."""
    def names(v: Any) -> set[str]:
        return set(v) if isinstance(v, list) else {v}

    truth = [names(r["label"]) for r in rows]
    pred = [names(r["predicted"]) for r in rows]
    cols = {"n": np.ones(len(rows)), "correct": np.array([t == p for t, p in zip(truth, pred)], dtype=float)}
    for c in labels:
        t = np.array([c in x for x in truth])
        p = np.array([c in x for x in pred])
        cols[f"tp:{c}"], cols[f"fp:{c}"], cols[f"fn:{c}"] = (t & p) * 1.0, (~t & p) * 1.0, (t & ~p) * 1.0
    return cols


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (sklearn's zero_division=0)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def classification_summary(sums: dict[str, Any]) -> dict[str, Any]:
    """accuracy and macro/micro/weighted precision, recall, F1 from the column sums of `classification_tally`."""
    classes = [k[3:] for k in sums if k.startswith("tp:")]
    tp = np.stack([np.asarray(sums[f"tp:{c}"], dtype=float) for c in classes])  # (classes, ...)
    fp = np.stack([np.asarray(sums[f"fp:{c}"], dtype=float) for c in classes])
    fn = np.stack([np.asarray(sums[f"fn:{c}"], dtype=float) for c in classes])
    p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f = _ratio(2 * p * r, p + r)
    support = tp + fn
    out = {"accuracy": _ratio(sums["correct"], sums["n"])}
    for name, v in (("precision", p), ("recall", r), ("f1", f)):
        out[f"{name}_macro"] = v.mean(0)
        out[f"{name}_weighted"] = _ratio((v * support).sum(0), support.sum(0))
    mp, mr = _ratio(tp.sum(0), (tp + fp).sum(0)), _ratio(tp.sum(0), (tp + fn).sum(0))
    out["precision_micro"], out["recall_micro"], out["f1_micro"] = mp, mr, _ratio(2 * mp * mr, mp + mr)
    return out
