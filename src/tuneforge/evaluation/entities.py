"""Entity-level metrics for token classification, from seqeval, shaped for eval.json.

An entity counts only when its boundaries and its type are both right (seqeval's default mode, which reads
tags as conlleval does: what the Hugging Face token-classification examples report). Beside precision, recall
and F1 per type and micro/macro averaged: token accuracy (tags right, over the labelled words) and a per-type
confusion table of entities matched by overlap, which says what a wrong entity was taken for.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

from ..tasks.spans import OUTSIDE, tag_entities

AVERAGES = ("micro", "macro")
# Every scalar a token-classification evaluation computes, with the direction it improves in.
ENTITY_DIRECTIONS = {"loss": "min", "token_accuracy": "max",
                     **{f"entity_{m}_{avg}": "max" for avg in AVERAGES for m in ("precision", "recall", "f1")}}


def entity_metrics(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]],
                   types: Sequence[str]) -> dict[str, Any]:
    """Entity P/R/F1 (micro, macro, per type), token accuracy and the confusion table of tag sequences
    (one list of tags per example, the same length in both)."""
    from seqeval.metrics import accuracy_score, classification_report

    y_true, y_pred = [list(s) for s in y_true], [list(s) for s in y_pred]
    with warnings.catch_warnings():  # macro over no entities at all is an empty mean: reported as 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        rep = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    out: dict[str, Any] = {}
    for avg in AVERAGES:
        row = rep[f"{avg} avg"]
        for m, key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            out[f"entity_{m}_{avg}"] = _finite(row[key])
    words = sum(map(len, y_true))
    out["token_accuracy"] = float(accuracy_score(y_true, y_pred)) if words else 0.0
    out["per_type"] = {t: {"precision": _finite(rep.get(t, {}).get("precision", 0.0)),
                           "recall": _finite(rep.get(t, {}).get("recall", 0.0)),
                           "f1": _finite(rep.get(t, {}).get("f1-score", 0.0)),
                           "support": int(rep.get(t, {}).get("support", 0))} for t in types}
    out["n"], out["words"] = len(y_true), words
    out["entities"] = int(rep["micro avg"]["support"])
    out["predicted_entities"] = sum(len(tag_entities(s)) for s in y_pred)
    out["type_confusion"] = type_confusion(y_true, y_pred, types)
    return out


def _finite(value: Any) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0


def type_confusion(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]],
                   types: Sequence[str]) -> dict[str, Any]:
    """Gold entities (rows) against the predicted entity each overlaps most (columns), per type.

    Column O holds the gold entities nothing was predicted over (missed), row O the predictions over no gold
    entity (spurious); a matched pair whose boundaries differ is counted in `boundary_errors` as well."""
    labels = list(types) + [OUTSIDE]
    index = {t: i for i, t in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    boundary = 0
    for gold_tags, pred_tags in zip(y_true, y_pred):
        gold, pred = tag_entities(gold_tags), tag_entities(pred_tags)
        free = set(range(len(pred)))
        for a, b, label in gold:
            overlaps = [(min(b, pred[k][1]) - max(a, pred[k][0]) + 1, -k) for k in free
                        if pred[k][0] <= b and a <= pred[k][1]]
            if not overlaps:
                matrix[index[label]][index[OUTSIDE]] += 1
                continue
            k = -max(overlaps)[1]
            free.discard(k)
            matrix[index[label]][index.get(pred[k][2], index[OUTSIDE])] += 1
            boundary += (pred[k][0], pred[k][1]) != (a, b)
        for k in free:
            matrix[index[OUTSIDE]][index.get(pred[k][2], index[OUTSIDE])] += 1
    return {"labels": labels, "matrix": matrix, "rows": "gold entity type", "columns": "predicted entity type",
            "boundary_errors": boundary}
