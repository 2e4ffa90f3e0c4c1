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
