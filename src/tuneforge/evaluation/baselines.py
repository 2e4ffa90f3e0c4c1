"""Simple predictors a fine-tuned classifier must beat, scored on the same examples as the model.

- majority class: always the most frequent training label (what accuracy alone can hide on skewed data);
- linear probe: scikit-learn's logistic regression on the frozen base model's mean-pooled embeddings of a
  capped, seeded sample of the training data (PROBE_TRAIN examples). If the probe is nearly as good as the
  fine-tuned model, the base already separated the classes and fine-tuning bought little.

The task turns the probabilities returned here into its prediction rows, so a baseline gets the same
metrics, intervals and paired tests as the model (evaluation/analysis.py).
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np

PROBE_TRAIN = 2000   # training examples the probe is fitted on: a few seconds of embedding on 2 CPU cores
PROBE_C = 1.0        # inverse L2 strength (scikit-learn's default)


def probe_sample(n: int, seed: int, cap: int = PROBE_TRAIN) -> list[int]:
    """Seeded indices of at most `cap` of n training examples (all of them when n ≤ cap), sorted."""
    if n <= cap:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), cap))


def majority_probs(y_train: np.ndarray, classes: int) -> np.ndarray:
    """(classes,) training label frequencies: the majority baseline's probabilities for every example."""
    counts = np.bincount(np.asarray(y_train, dtype=int), minlength=classes).astype(float)
    return counts / max(counts.sum(), 1.0)


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_eval: dict[str, np.ndarray], classes: int,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """split -> (n, classes) probabilities of a standardized logistic regression fitted on (x_train, y_train)."""
    y_train = np.asarray(y_train, dtype=int)
    model = probe_model(seed)
    model.fit(x_train, y_train)
    seen = model[-1].classes_
    out = {}
    for split, x in x_eval.items():
        p = np.zeros((len(x), classes))
        p[:, seen] = model.predict_proba(x)  # classes absent from the sample get probability 0
        out[split] = p
    return out


def probe_model(seed: int = 0) -> Any:
    """The probe: standardized features, then L2-regularized logistic regression (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=2000, random_state=seed))


def probe_cross_validated(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Stratified k-fold accuracy of the probe on (x, y) (fewer folds when the smallest class is smaller):
    mean, standard deviation and per-fold scores; the majority class's accuracy on the same labels beside it."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    y = np.asarray(y, dtype=int)
    counts = np.bincount(y)
    k = int(min(folds, counts[counts > 0].min()))
    majority = float(counts.max() / max(len(y), 1))
    if k < 2:
        return {"folds": 0, "accuracy": None, "majority": majority, "n": len(y)}
    scores = cross_val_score(probe_model(seed), x, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed))
    return {"folds": k, "accuracy": float(scores.mean()), "std": float(scores.std()),
            "per_fold": [round(float(s), 4) for s in scores], "majority": majority, "n": len(y)}
