"""Classification metrics from scikit-learn, shaped for eval.json."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def classification_metrics(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                           labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro/micro/weighted precision-recall-F1, per-class numbers and the confusion matrix.

    Multi-label input (2-D 0/1 arrays) gets subset accuracy and no confusion matrix.
    """
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


HEADLINE = ("accuracy", "precision_macro", "recall_macro", "f1_macro")


def headline(metrics: dict[str, Any], keys: Sequence[str] = HEADLINE) -> dict[str, float]:
    return {k: metrics[k] for k in keys if k in metrics}
