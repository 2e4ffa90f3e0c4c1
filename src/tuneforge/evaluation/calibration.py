"""Do the probabilities mean anything? Expected calibration error, reliability diagrams, temperature scaling.

- ECE (Guo et al. 2017): predictions binned by confidence into BINS equal-width bins; the weighted mean gap
  between each bin's accuracy and its mean confidence. Single-label: the top class's probability and
  whether it was right; multi-label: every (example, label) sigmoid probability against its 0/1 truth.
- Temperature scaling: one scalar T fitted on the validation logits by minimizing the negative
  log-likelihood (scipy's bounded scalar minimizer over log T); predictions then use logits / T. It never
  changes which class wins, only how sure the model says it is. `eval.calibrate: true` fits it, the run
  saves it in model/tuneforge.json, and predict (every caller of recipes/inference.py) applies it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BINS = 15
T_BOUNDS = (0.05, 20.0)


@dataclass
class Scores:
    """A classifier's outputs on a split: class names, 0/1 truth (n, K) and logits (n, K)."""

    names: list[str]
    truth: np.ndarray
    logits: np.ndarray
    multi_label: bool = False

    def probs(self, temperature: float = 1.0) -> np.ndarray:
        z = self.logits / temperature
        if self.multi_label:
            return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def confidence(self, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, correct) per decision: the top class (single-label) or every label (multi-label)."""
        p = self.probs(temperature)
        if self.multi_label:
            return p.ravel(), (self.truth.ravel() > 0.5).astype(float)  # probability that the label is on
        top = p.argmax(1)
        return p[np.arange(len(p)), top], self.truth[np.arange(len(p)), top].astype(float)


def _bins(confidence: np.ndarray, correct: np.ndarray, bins: int) -> list[dict[str, float]]:
    """Per non-empty bin: its range, count, mean confidence and accuracy (unrounded)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [{"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int((which == b).sum()),
             "confidence": float(confidence[which == b].mean()), "accuracy": float(correct[which == b].mean())}
            for b in range(bins) if (which == b).any()]


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """The reliability diagram's bars: per non-empty bin its range, count, mean confidence and accuracy."""
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in b.items()}
            for b in _bins(confidence, correct, bins)]


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: sum over bins of (bin count / n) · |accuracy − mean confidence|."""
    n = len(confidence)
    if n == 0:
        return float("nan")
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in _bins(confidence, correct, bins)))


def nll(scores: Scores, temperature: float) -> float:
    """Mean negative log-likelihood of the truth under logits / temperature."""
    z = scores.logits / temperature
    if scores.multi_label:  # binary cross-entropy per label, stable form
        return float(np.mean(np.logaddexp(0.0, z) - scores.truth * z))
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-np.mean((log_p * scores.truth).sum(1)))


def fit_temperature(scores: Scores) -> float:
    """The temperature minimizing the validation NLL (1.0 when there is nothing to fit on)."""
    from scipy.optimize import minimize_scalar

    if len(scores.logits) < 2:
        return 1.0
    lo, hi = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    res = minimize_scalar(lambda t: nll(scores, float(np.exp(t))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-4})
    return round(float(np.exp(res.x)), 4)


def report(scores: Scores, temperature: float = 1.0) -> dict[str, Any]:
    """eval.json's calibration of one split: ECE and the reliability bins, before and (if fitted) after."""
    conf, correct = scores.confidence()
    out: dict[str, Any] = {"ece": round(ece(conf, correct), 4), "nll": round(nll(scores, 1.0), 4),
                           "bins": reliability(conf, correct), "n": int(len(conf)),
                           "unit": "label decisions" if scores.multi_label else "examples (top class)"}
    if temperature != 1.0:
        conf_t, correct_t = scores.confidence(temperature)
        out["calibrated"] = {"temperature": temperature, "ece": round(ece(conf_t, correct_t), 4),
                             "nll": round(nll(scores, temperature), 4), "bins": reliability(conf_t, correct_t)}
    return out
