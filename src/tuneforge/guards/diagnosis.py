"""Curve diagnosis after every run: healthy | overfitting | underfitting | unstable.

Reads the logged curves (metrics.jsonl rows: split "train" with loss/grad_norm, split "val" with the
validation metrics) and the final per-split metrics, and returns the label, the evidence (steps and
numbers, so a user can check it against the curves) and concrete advice (config keys and values).

Precedence: unstable > overfitting > underfitting > healthy — a diverging run says nothing reliable
about fit, and a model that memorised its training data is not under-capacity even if validation is poor.
Every signal found is kept under "signals", so a secondary problem is not hidden by the label.
A training loss that ends far above what a uniform guess scores (ln(classes), or a language model's
starting loss) is unstable, never underfitting: at lr 10 the loss sat at 943 and "raise train.lr" was
the advice.
Thresholds are deliberately coarse: the diagnosis should be right on clear cases and quiet on noise.

"healthy" needs evidence: at least MIN_EVALS validation evaluations and MIN_TRAIN_POINTS logged training
losses, else the label is "inconclusive" and the summary says "not enough evidence: …" with what to set.
A run whose validation metric still improved at its last evaluation says "still improving: more epochs may
help". Advice never contradicts the run's config: each suggestion names the key, its value now and the
value to try (methods/base.py `suggest`), and nothing is suggested that the config already says
(tests/test_diagnosis.py checks every advice × method).
"""
from __future__ import annotations

import math
from typing import Any

from ..methods.base import suggest

# Thresholds (why these values: see each use).
VAL_RISE_REL, VAL_RISE_ABS = 0.20, 0.05     # val loss this far above its best = rising, not noise
ACC_GAP = 0.10                              # train accuracy this many points above validation
LOSS_GAP, LOSS_GAP_GROWTH = 0.30, 0.20      # val−train loss gap at the end, and its growth
SPIKE_ABS = 0.50                            # a train-loss spike must add this many nats ...
SPIKE_REL = 1.0                             # ... and at least double the best loss so far
FLAT_RATIO = 0.90                           # final train loss ≥ 90% of the starting loss = flat
CHANCE_RATIO = 0.80                         # final train loss ≥ 80% of the chance-level loss = high
MAJORITY_MARGIN = 0.05                      # train accuracy within 5 points of the majority class
FAR_RATIO, FAR_ABS = 2.0, 1.0               # end loss above 2x the reference + 1 nat: diverged, not unfit
MIN_EVALS = 3                               # validation evaluations needed to call a run healthy
MIN_TRAIN_POINTS = 3                        # logged training losses needed likewise
STILL_IMPROVING = 0.01                      # last evaluation ≥1% better than the one before: still improving


def diagnose(rows: list[dict[str, Any]], results: dict[str, Any], cfg: Any | None = None) -> dict[str, Any]:
    """The diagnosis dict for eval.json: label, a one-line summary, evidence, advice, every signal found
    and the weak slices."""
    train = [r for r in rows if r.get("split") == "train" and "loss" in r]
    val = [r for r in rows if r.get("split") == "val" and "loss" in r]
    final = results.get("final", {})
    signals = {
        "unstable": unstable_signals(train, val, results),
        "overfitting": overfitting_signals(train, val, final, results),
        "underfitting": underfitting_signals(train, final, results),
    }
    for kind, found in _advisors(results)[1].curve_signals(train, val, results).items():  # the task's own curves
        signals[kind] += found
    label = next((k for k in ("unstable", "overfitting", "underfitting") if signals[k]), "healthy")
    evidence = list(signals[label]) if label != "healthy" else healthy_evidence(train, val, final)
    todo = advice(label, train, val, results, cfg)
    summary = label
    if label == "healthy":
        missing, more = missing_evidence(train, val, results, cfg)
        if missing:
            label, summary = "inconclusive", f"not enough evidence: {missing}"
            evidence, todo = [summary] + evidence, todo + more
    if label in ("healthy", "inconclusive"):
        improving = still_improving(val, results, cfg)
        if improving:
            summary += "; still improving: more epochs may help"
            evidence.append(improving)
            todo += [a + ": validation was still improving" for a in train_longer(results, cfg, "")]
    weak = _weak_slices(results)
    if weak:
        evidence.append(f"weakest slice{'s' if len(weak) > 1 else ''} (worse than overall beyond the interval): "
                        + ", ".join(weak[:3]))
        todo.append(f"add training examples like the weakest slice ({weak[0]})")
    return {"label": label, "summary": summary, "evidence": evidence, "advice": todo + forgetting_advice(results, cfg),
            "signals": {k: v for k, v in signals.items() if v}, "weak_slices": weak}


def missing_evidence(train: list[dict[str, Any]], val: list[dict[str, Any]], results: dict[str, Any],
                     cfg: Any | None) -> tuple[str, list[str]]:
    """('', []) when the curves can support "healthy"; else what is missing and the setting that adds it."""
    tc = getattr(cfg, "train", None)
    evals = [r for r in val if _finite(r["loss"])]
    steps = results.get("training", {}).get("steps") or (train[-1]["step"] if train else 0)
    if len(evals) < MIN_EVALS:
        where = ", ".join(str(r["step"]) for r in evals)
        said = (f"{len(evals)} validation evaluation{'s' if len(evals) != 1 else ''}"
                + (f" (step {where})" if where else " (no validation split: set data.validation)")
                + f"; {MIN_EVALS} are needed to tell a healthy run from an over- or underfitting one")
        every = max(1, int(steps) // (MIN_EVALS + 1))
        if not evals and not results.get("final", {}).get("validation"):
            return said, ["set data.validation (e.g. 0.1) so the run is checked while it trains"]
        if tc is not None and tc.eval_every == every:
            return said, train_longer(results, cfg, "")
        return said, [f"set train.eval_every: {every} (evaluates {steps // every} times in {steps} steps)"]
    if len(train) < MIN_TRAIN_POINTS:
        log = suggest("train.log_every", tc.log_every, max(1, int(steps) // 10)) if tc else "lower train.log_every"
        return (f"{len(train)} logged training loss{'es' if len(train) != 1 else ''}; {MIN_TRAIN_POINTS} are needed",
                [log] if log else [])
    return "", []


def still_improving(val: list[dict[str, Any]], results: dict[str, Any], cfg: Any | None) -> str:
    """Evidence that the early-stopping metric improved at the last evaluation ('' if it did not)."""
    from ..training.validation import metric_mode

    metric = getattr(getattr(getattr(cfg, "train", None), "early_stopping", None), "metric", "val_loss")
    key = metric.removeprefix("val_")
    points = [r for r in val if _finite(r.get(key))]
    if len(points) < 2:
        return ""
    mode = metric_mode(metric, getattr(cfg.train.early_stopping, "mode", "auto") if cfg else "auto",
                       _advisors(results)[1].metrics)
    sign = 1 if mode == "min" else -1
    values = [sign * r[key] for r in points]
    last, before = values[-1], values[-2]
    if last > min(values) or before - last < STILL_IMPROVING * max(abs(before), 1e-9):
        return ""
    return (f"validation {key} still improving at the last evaluation: {points[-2][key]:.4f} (step "
            f"{points[-2]['step']}) → {points[-1][key]:.4f} (step {points[-1]['step']})")


def train_longer(results: dict[str, Any], cfg: Any | None, prefix: str) -> list[str]:
    """'raise train.epochs (now 3; try 6)', or train.max_steps when that is what ended the run."""
    tc = getattr(cfg, "train", None)
    if tc is None:
        return [prefix + "raise train.epochs or train.max_steps"]
    steps = results.get("training", {}).get("steps")
    if tc.max_steps and (steps is None or steps >= tc.max_steps):
        return [prefix + suggest("train.max_steps", tc.max_steps, tc.max_steps * 2)]
    return [prefix + suggest("train.epochs", tc.epochs, tc.epochs * 2 if tc.epochs else 1)]


def _weak_slices(results: dict[str, Any]) -> list[str]:
    from ..evaluation.analysis import headline_split

    split = headline_split(results)
    return list(((results.get("slices") or {}).get(split or "") or {}).get("weak", []))


# ------------------------------------------------------------------ signals

def unstable_signals(train: list[dict[str, Any]], val: list[dict[str, Any]], results: dict[str, Any]) -> list[str]:
    found = []
    for name, series in (("training", train), ("validation", val)):
        bad = next((r for r in series if not _finite(r["loss"])), None)
        if bad is not None:
            found.append(f"{name} loss became {bad['loss']} at step {bad['step']}")
    skipped = [n for n in results.get("notes", []) if "batch skipped" in n]
    if skipped:
        found.append(f"{len(skipped)} batch(es) skipped for NaN/inf loss (first: {skipped[0].split(';')[0]})")
    losses = [r for r in train if _finite(r["loss"])]
    best = losses[0]["loss"] if losses else math.inf
    for r in losses[1:]:
        jump = r["loss"] - best
        if jump > SPIKE_ABS and jump > SPIKE_REL * best:
            found.append(f"training loss spiked to {r['loss']:.4f} at step {r['step']} "
                         f"(best so far {best:.4f})")
            break
        best = min(best, r["loss"])
    if len(losses) >= 3 and losses[-1]["loss"] > 1.2 * losses[0]["loss"] + 0.05:
        found.append(f"training loss diverged: {losses[0]['loss']:.4f} (step {losses[0]['step']}) → "
                     f"{losses[-1]['loss']:.4f} (step {losses[-1]['step']})")
    far = _far_above_reference(train, results)
    if far:
        found.append(far)
    norms = [r["grad_norm"] for r in train if _finite(r.get("grad_norm", math.nan))]
    if len(norms) >= 5:
        median = sorted(norms)[len(norms) // 2]
        peak = max(train, key=lambda r: r.get("grad_norm", 0) if _finite(r.get("grad_norm", math.nan)) else 0)
        if median > 0 and peak["grad_norm"] > 20 * median and found:  # supporting evidence only
            found.append(f"gradient norm peaked at {peak['grad_norm']:.2f} at step {peak['step']} "
                         f"(median {median:.2f})")
    return found


def overfitting_signals(train: list[dict[str, Any]], val: list[dict[str, Any]], final: dict[str, Any],
                        results: dict[str, Any]) -> list[str]:
    found = []
    finite_val = [r for r in val if _finite(r["loss"])]
    if len(finite_val) >= 2:
        best = min(finite_val, key=lambda r: r["loss"])
        last = finite_val[-1]
        t_best, t_last = _train_loss_at(train, best["step"]), _train_loss_at(train, last["step"])
        rose = last["loss"] >= best["loss"] * (1 + VAL_RISE_REL) and last["loss"] >= best["loss"] + VAL_RISE_ABS
        if rose and t_best is not None and t_last is not None and t_last < t_best:
            found.append(f"validation loss rose from {best['loss']:.4f} (step {best['step']}) to "
                         f"{last['loss']:.4f} (step {last['step']}) while training loss fell from "
                         f"{t_best:.4f} to {t_last:.4f}")
        gaps = [(r["step"], r["loss"] - t) for r in finite_val if (t := _train_loss_at(train, r["step"])) is not None]
        if len(gaps) >= 2:
            (s0, g0), (s1, g1) = gaps[0], gaps[-1]
            if g1 >= LOSS_GAP and g1 - g0 >= LOSS_GAP_GROWTH:
                found.append(f"train/validation loss gap grew from {g0:.4f} (step {s0}) to {g1:.4f} (step {s1})")
    tr, va = final.get("train", {}), final.get("validation", {})
    if isinstance(tr.get("accuracy"), (int, float)) and isinstance(va.get("accuracy"), (int, float)):
        gap = tr["accuracy"] - va["accuracy"]
        # Only a model that learned at all (no underfitting sign) overfits; else the gap is noise on tiny splits.
        if gap >= ACC_GAP and not underfitting_signals(train, final, results):
            found.append(f"train accuracy {tr['accuracy']:.3f} vs validation {va['accuracy']:.3f} "
                         f"({100 * gap:.1f} points apart)")
    return found


def underfitting_signals(train: list[dict[str, Any]], final: dict[str, Any], results: dict[str, Any]) -> list[str]:
    if _far_above_reference(train, results):  # a diverged model predicts the majority too: not a capacity problem
        return []
    found = []
    tr = final.get("train", {})
    end, start = _end_loss(train, tr), _start_loss(train, results)
    if end is not None and start is not None and end >= FLAT_RATIO * start:
        found.append(f"training loss barely moved: {start:.4f} at the start → {end:.4f} at the end "
                     f"({100 * (end - start) / start:+.1f}%)")
    majority = _majority(tr)
    if majority is not None and isinstance(tr.get("accuracy"), (int, float)):
        if tr["accuracy"] <= majority + MAJORITY_MARGIN:
            found.append(f"train accuracy {tr['accuracy']:.3f} is near the majority-class rate {majority:.3f}")
        n_classes = len(tr["per_class"])
        chance = math.log(n_classes) if n_classes > 1 else None
        if end is not None and chance and end >= CHANCE_RATIO * chance and "confusion_matrix" in tr:
            found.append(f"training loss {end:.4f} is near the chance level ln({n_classes}) = {chance:.4f}")
    return found


def _far_above_reference(train: list[dict[str, Any]], results: dict[str, Any]) -> str:
    """Evidence that the loss ended far above what predicting nothing scores (a uniform guess over the
    classes, or for a language model the loss it started from): the weights diverged. A too-low
    learning rate leaves the loss near that level, never far above it."""
    end = _end_loss(train, results.get("final", {}).get("train", {}))
    ref = _reference_loss(train, results)
    if end is None or ref is None or end <= FAR_RATIO * ref[0] + FAR_ABS:
        return ""
    return f"training loss {end:.4f} at the end is far above {ref[1]}: the weights diverged"


def _reference_loss(train: list[dict[str, Any]], results: dict[str, Any]) -> tuple[float, str] | None:
    tr = results.get("final", {}).get("train", {})
    per_class = tr.get("per_class")
    if "confusion_matrix" in tr and isinstance(per_class, dict) and len(per_class) > 1:
        return math.log(len(per_class)), f"the chance level ln({len(per_class)}) = {math.log(len(per_class)):.4f}"
    base = next((loss for split in ("validation", "test")
                 if _finite(loss := results.get("base", {}).get(split, {}).get("loss"))), None)
    if base is not None:
        return base, f"the base model's loss {base:.4f}"
    if train and _finite(train[0]["loss"]):
        return train[0]["loss"], f"the first logged loss {train[0]['loss']:.4f} (step {train[0]['step']})"
    return None


def _end_loss(train: list[dict[str, Any]], tr: dict[str, Any]) -> float | None:
    """Training loss at the end: the final re-evaluation on training data, else the last logged loss."""
    if _finite(tr.get("loss", math.nan)):
        return tr["loss"]
    return train[-1]["loss"] if train and _finite(train[-1]["loss"]) else None


def _majority(tr: dict[str, Any]) -> float | None:
    """The majority-class rate of the training probe (from per-class supports), if known."""
    per_class = tr.get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        return None
    supports = [c.get("support", 0) for c in per_class.values()]
    return max(supports) / sum(supports) if sum(supports) else None


def healthy_evidence(train: list[dict[str, Any]], val: list[dict[str, Any]], final: dict[str, Any]) -> list[str]:
    out = []
    if train:
        out.append(f"training loss {train[0]['loss']:.4f} (step {train[0]['step']}) → "
                   f"{train[-1]['loss']:.4f} (step {train[-1]['step']})")
    if val:
        best = min((r for r in val if _finite(r["loss"])), key=lambda r: r["loss"], default=None)
        if best is not None:
            out.append(f"best validation loss {best['loss']:.4f} at step {best['step']}")
    tr, va = final.get("train", {}), final.get("validation", {})
    if isinstance(tr.get("accuracy"), (int, float)) and isinstance(va.get("accuracy"), (int, float)):
        out.append(f"train accuracy {tr['accuracy']:.3f}, validation {va['accuracy']:.3f}")
    return out


# ------------------------------------------------------------------ advice

def advice(label: str, train: list[dict[str, Any]], val: list[dict[str, Any]], results: dict[str, Any],
           cfg: Any | None) -> list[str]:
    """Concrete changes for the label: the run's own settings, then what its method and task suggest."""
    method, task = _advisors(results)
    tc = getattr(cfg, "train", None)
    mc = getattr(cfg, "method", None)
    if label == "unstable":
        return _unstable_advice(tc)
    if label == "overfitting":
        out = _early_stop_advice(val, results, tc)
        out.append(suggest("train.weight_decay", tc.weight_decay, max(tc.weight_decay * 5, 0.05)) if tc
                   else "raise train.weight_decay")
        out += method.overfit_advice(mc)
        if tc is None or tc.model_dropout is None:
            out.append("raise the model's dropout: train.model_dropout: 0.2 (null keeps the model's own)")
        elif tc.model_dropout < 0.5:
            out.append(suggest("train.model_dropout", tc.model_dropout, round(min(0.5, tc.model_dropout + 0.1), 2)))
        out.append("add training data, or train fewer epochs" + (f" (train.epochs, now {tc.epochs:g})" if tc else ""))
        return [a for a in out + task.overfit_advice(cfg) if a]
    if label == "underfitting":
        if tc is None:
            out = ["raise train.lr: typical 1e-4…1e-3 for LoRA/adapters, 1e-5…5e-5 for full fine-tuning"]
        else:
            usual = method.default_lr > tc.lr  # below the method's conventional rate: try that
            out = [suggest("train.lr", tc.lr, method.default_lr if usual else tc.lr * 3)
                   + (f", the conventional rate for {method.name}" if usual and method.name else "")]
        out += train_longer(results, cfg, "train longer: ")
        out += method.underfit_advice(mc)
        if tc and (tc.weight_decay > 0.1 or tc.label_smoothing > 0.2):
            out.append("lower train.weight_decay / train.label_smoothing: they hold the model back")
        return out
    return []


def _unstable_advice(tc: Any | None) -> list[str]:
    out = [f"lower train.lr by 3-10x" + (f" (now {tc.lr:g})" if tc else "")]
    if tc is None:
        return out + ["keep train.max_grad_norm set (e.g. 1.0)", "raise train.warmup (e.g. 0.1)"]
    if tc.max_grad_norm is None:
        out.append("set train.max_grad_norm: 1.0 (gradient clipping is off)")
    elif tc.max_grad_norm > 1.0:
        out.append(suggest("train.max_grad_norm", tc.max_grad_norm, 1.0))
    warm = tc.warmup
    out.append(suggest("train.warmup", warm, (min(0.5, max(0.1, 2 * warm)) if warm < 1 else 2 * warm) if warm
                       else 0.1))
    if tc.precision != "fp32":
        out.append("if it persists, try train.precision: fp32 (rules out low-precision overflow)")
    return [a for a in out if a]


def _early_stop_advice(val: list[dict[str, Any]], results: dict[str, Any], tc: Any | None) -> list[str]:
    """Where an overfitting run should have stopped (nothing when validation still improved at the end),
    phrased against the run's early-stopping settings."""
    stop = _best_val_step(val, results)
    last = val[-1]["step"] if val else None
    if stop is None or stop == last:
        return []
    restored = bool(results.get("training", {}).get("restored_best"))
    es = getattr(tc, "early_stopping", None)
    if es is None:
        note = " (the best weights were restored, so the saved model is that step's)" if restored else ""
        return [f"stop at step {stop}: set train.early_stopping.patience (e.g. 2){note}"]
    if es.patience is None:
        return [f"stop at step {stop}: set train.early_stopping.patience: 2"]
    if not es.restore_best:
        return [f"keep step {stop}'s weights: set train.early_stopping.restore_best: true"]
    if es.patience > 1:
        return [suggest("train.early_stopping.patience", es.patience, 1)
                + f" to stop sooner (step {stop}'s weights were restored)"]
    return []


def _advisors(results: dict[str, Any]) -> tuple[Any, Any]:
    """The run's method and task classes (their advice), or the interfaces' defaults for unknown names."""
    from ..methods import REGISTRY as METHODS
    from ..methods import method_class
    from ..methods.base import Method
    from ..tasks import REGISTRY as TASKS
    from ..tasks import task_class
    from ..tasks.base import Task

    method, task = results.get("method", ""), results.get("task", "")
    return (method_class(method) if method in METHODS else Method,
            task_class(task) if task in TASKS else Task)


def forgetting_advice(results: dict[str, Any], cfg: Any | None = None) -> list[str]:
    """A flagged forgetting probe gets its own advice, whatever the curves say, phrased against the config."""
    f = results.get("forgetting") or {}
    if not f.get("flagged"):
        return []
    what = {"accuracy": "accuracy on the earlier task(s)", "perplexity": "perplexity on general text",
            "embedding_geometry": "the geometry of the body's sentence embeddings"}.get(f["metric"], f["metric"])
    line = f"forgetting flagged: {what} changed {100 * f['relative_change']:+.1f}% ({f['before']:.4f} → {f['after']:.4f})"
    fc = getattr(cfg, "forgetting", None)
    fewer = _advisors(results)[0].forgetting_advice(getattr(cfg, "method", None))
    if f["metric"] == "embedding_geometry":
        l2 = "forgetting.l2_to_base" if fc is None else \
            suggest("forgetting.l2_to_base", fc.l2_to_base, fc.l2_to_base * 10 if fc.l2_to_base else 0.01)
        return [line + "; if the body is also used for embeddings, " + " or ".join(x for x in (fewer, l2) if x)]
    if fc is None or not fc.replay:
        replay = "mix old data into training (forgetting.replay: 0.25)"
    else:
        replay = suggest("forgetting.replay", fc.replay, 0.5) if fc.replay < 0.5 else ""
    ewc = "hold important weights (forgetting.ewc)" if fc is None or not fc.ewc else \
        suggest("forgetting.ewc", fc.ewc, fc.ewc * 10)
    options = [x for x in (replay, ewc, fewer) if x]
    return [line + "; " + (", ".join(options[:-1]) + ", or " + options[-1] if len(options) > 1 else options[0])]


# ------------------------------------------------------------------ helpers

def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _train_loss_at(train: list[dict[str, Any]], step: int) -> float | None:
    """The logged training loss closest to `step` (the val row and train rows are logged on different steps)."""
    finite = [r for r in train if _finite(r["loss"])]
    if not finite:
        return None
    return min(finite, key=lambda r: (abs(r["step"] - step), -r["step"]))["loss"]


def _start_loss(train: list[dict[str, Any]], results: dict[str, Any]) -> float | None:
    """Loss before training: the base model's validation loss when measured, else the first logged loss."""
    base = results.get("base", {})
    for split in ("validation", "test"):
        loss = base.get(split, {}).get("loss")
        if _finite(loss):
            return max(loss, train[0]["loss"]) if train and _finite(train[0]["loss"]) else loss
    return train[0]["loss"] if train and _finite(train[0]["loss"]) else None


def _best_val_step(val: list[dict[str, Any]], results: dict[str, Any]) -> int | None:
    finite = [r for r in val if _finite(r["loss"])]
    if finite:
        return min(finite, key=lambda r: r["loss"])["step"]
    return results.get("training", {}).get("best_step")


def summary_lines(diag: dict[str, Any]) -> list[str]:
    """What the CLI prints: the label, each piece of evidence, each piece of advice."""
    lines = [f"diagnosis: {diag.get('summary', diag['label'])}"]
    lines += [f"  evidence: {e}" for e in diag.get("evidence", [])]
    lines += [f"  advice:   {a}" for a in diag.get("advice", [])]
    return lines
