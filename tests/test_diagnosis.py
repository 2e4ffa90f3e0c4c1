"""Curve diagnosis on canned curves (fast), and on real provoked runs of the embedded MiniLM (slow)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tuneforge.config import load_config
from tuneforge.guards.diagnosis import diagnose, summary_lines


def train_rows(losses: list[float], every: int = 10, grad_norms: list[float] | None = None) -> list[dict[str, Any]]:
    return [{"step": every * (i + 1), "split": "train", "loss": v,
             **({"grad_norm": grad_norms[i]} if grad_norms else {})} for i, v in enumerate(losses)]


def val_rows(losses: list[float], every: int = 20, acc: list[float] | None = None) -> list[dict[str, Any]]:
    return [{"step": every * (i + 1), "split": "val", "loss": v, **({"accuracy": acc[i]} if acc else {})}
            for i, v in enumerate(losses)]


def split_metrics(acc: float, loss: float, supports: tuple[int, ...] = (40, 40, 40)) -> dict[str, Any]:
    return {"accuracy": acc, "loss": loss, "confusion_matrix": [[0]],
            "per_class": {f"c{i}": {"support": s} for i, s in enumerate(supports)}}


def results(train: dict[str, Any], val: dict[str, Any], method: str = "lora", base_loss: float = 1.0986,
            **extra: Any) -> dict[str, Any]:
    return {"task": "classification", "method": method, "base": {"validation": {"loss": base_loss}},
            "final": {"train": train, "validation": val}, "training": {"restored_best": False}, **extra}


# The real curve of examples/sentiment.yaml (LoRA, 3 epochs): healthy, with a small late val-loss uptick.
SENTIMENT_TRAIN = [1.0971, 1.0679, 0.8001, 0.2359, 0.3038, 0.1899, 0.1131, 0.0277, 0.0557, 0.0393, 0.1502]
SENTIMENT_VAL = [0.4006, 0.1237, 0.1420]


def sentiment_rows() -> list[dict[str, Any]]:
    rows = train_rows(SENTIMENT_TRAIN)
    rows += [{"step": s, "split": "val", "loss": v} for s, v in zip((34, 68, 102), SENTIMENT_VAL)]
    return rows


def test_healthy_real_curve() -> None:
    d = diagnose(sentiment_rows(), results(split_metrics(0.980, 0.057), split_metrics(0.95, 0.124)))
    assert d["label"] == "healthy", d
    assert d["advice"] == [] and d["evidence"]
    assert "signals" in d and not d["signals"]


def test_overfitting_val_loss_rises_while_train_falls() -> None:
    rows = train_rows([1.0, 0.6, 0.3, 0.1, 0.03, 0.01, 0.005, 0.002]) + \
        val_rows([0.7, 0.55, 0.8, 1.1])  # steps 20, 40, 60, 80; best at 40
    d = diagnose(rows, results(split_metrics(1.0, 0.002), split_metrics(0.62, 1.1)))
    assert d["label"] == "overfitting"
    text = " ".join(d["evidence"])
    assert "0.5500 (step 40)" in text and "1.1000 (step 80)" in text
    assert "train accuracy 1.000 vs validation 0.620" in text
    assert d["advice"][0].startswith("stop at step 40")
    assert any("weight_decay" in a for a in d["advice"]) and any("method.r" in a for a in d["advice"])


def test_overfitting_advice_uses_the_config() -> None:
    cfg = load_config(None, ["name=x", "data.train=x.jsonl", "method.r=16", "train.weight_decay=0.01"])
    rows = train_rows([1.0, 0.5, 0.1, 0.01]) + val_rows([0.5, 0.9])
    d = diagnose(rows, results(split_metrics(1.0, 0.01), split_metrics(0.7, 0.9)), cfg)
    assert any("now 16; try 8" in a for a in d["advice"])
    assert any("now 0.01; try 0.05" in a for a in d["advice"])


def test_overfitting_full_method_suggests_fewer_parameters() -> None:
    rows = train_rows([1.0, 0.5, 0.1, 0.01]) + val_rows([0.5, 0.9])
    d = diagnose(rows, results(split_metrics(1.0, 0.01), split_metrics(0.7, 0.9), method="full"))
    assert any("method.name: lora" in a for a in d["advice"])


def test_overfitting_from_accuracy_gap_alone() -> None:
    rows = train_rows([1.0, 0.4, 0.1]) + val_rows([0.6])
    d = diagnose(rows, results(split_metrics(0.99, 0.05), split_metrics(0.80, 0.6)))
    assert d["label"] == "overfitting"
    assert "19.0 points apart" in d["evidence"][0]


def test_growing_loss_gap_is_overfitting() -> None:
    rows = train_rows([1.0, 0.6, 0.35, 0.2, 0.1, 0.05]) + val_rows([0.62, 0.60, 0.58], every=20)
    d = diagnose(rows, results(split_metrics(0.93, 0.05), split_metrics(0.88, 0.58)))
    assert d["label"] == "overfitting"
    assert any("gap grew" in e for e in d["evidence"])


def test_underfitting_flat_loss_at_majority_rate() -> None:
    rows = train_rows([1.0990, 1.0987, 1.0986, 1.0985]) + val_rows([1.0986, 1.0985])
    d = diagnose(rows, results(split_metrics(0.35, 1.0985), split_metrics(0.34, 1.0985)))
    assert d["label"] == "underfitting"
    text = " ".join(d["evidence"])
    assert "barely moved" in text and "majority-class rate 0.333" in text and "chance level ln(3)" in text
    assert d["advice"][0].startswith("raise train.lr")
    assert any("full fine-tuning" in a for a in d["advice"])


def test_underfitting_with_imbalanced_classes() -> None:
    # 80% majority class: accuracy 0.81 is the model predicting the majority, not learning.
    rows = train_rows([0.55, 0.52, 0.50]) + val_rows([0.5])
    d = diagnose(rows, results(split_metrics(0.81, 0.50, (80, 20)), split_metrics(0.80, 0.5, (80, 20)),
                               base_loss=0.69))
    assert d["label"] == "underfitting"
    assert "majority-class rate 0.800" in " ".join(d["evidence"])


def test_unstable_nan() -> None:
    rows = train_rows([1.0, 0.7, math.nan, 0.5])
    d = diagnose(rows, results(split_metrics(0.9, 0.3), split_metrics(0.88, 0.35)))
    assert d["label"] == "unstable"
    assert "nan at step 30" in d["evidence"][0]
    assert d["advice"][0].startswith("lower train.lr")


def test_unstable_spike_and_skipped_batches() -> None:
    rows = train_rows([1.0, 0.4, 0.2, 2.3, 0.3, 0.2], grad_norms=[1, 1, 1, 90, 1.5, 1])
    d = diagnose(rows, results(split_metrics(0.95, 0.1), split_metrics(0.93, 0.2),
                               notes=["step 41: loss is nan; batch skipped (1/10)"]))
    assert d["label"] == "unstable"
    text = " ".join(d["evidence"])
    assert "spiked to 2.3000 at step 40" in text and "skipped" in text and "gradient norm peaked" in text


def test_unstable_beats_overfitting_and_other_signals_are_kept() -> None:
    rows = train_rows([1.0, 0.4, 0.05, 2.0, 0.01]) + val_rows([0.3, 1.0])
    d = diagnose(rows, results(split_metrics(1.0, 0.01), split_metrics(0.6, 1.0)))
    assert d["label"] == "unstable"
    assert "overfitting" in d["signals"]


def test_noisy_but_healthy_curve_is_not_unstable() -> None:
    rows = train_rows([1.1, 0.9, 0.5, 0.62, 0.41, 0.45, 0.30, 0.36, 0.25]) + val_rows([0.5, 0.38, 0.33, 0.30])
    d = diagnose(rows, results(split_metrics(0.91, 0.25), split_metrics(0.89, 0.30)))
    assert d["label"] == "healthy", d


def test_summary_lines() -> None:
    lines = summary_lines({"label": "overfitting", "evidence": ["e1"], "advice": ["a1", "a2"]})
    assert lines[0] == "diagnosis: overfitting" and len(lines) == 4


# ------------------------------------------------------------------ real provoked runs (slow)

def _minilm_config(tmp_path: Path, name: str, **train: Any) -> Any:
    return load_config(None, base={
        "name": name, "task": "classification", "model": "minilm", "output_dir": str(tmp_path),
        "method": {"name": "full"},
        "data": {"train": "examples/sentiment/tiny.jsonl", "validation": 0.25, "test": None, "max_length": 64},
        "privacy": {"pii": "off"}, "leakage": {"policy": "warn"}, "forgetting": {"reference": None},
        "eval": {"base": True, "batch_size": 64},
        "train": {"batch_size": 8, "seed": 0, "log_every": 1, "warmup": 0.0,
                  "early_stopping": {"patience": None}, **train}})


@pytest.mark.slow
def test_real_tiny_data_many_epochs_is_overfitting(tmp_path: Path) -> None:
    """30 reviews, full fine-tuning at a constant high lr for 8 epochs: memorised, validation loss climbs."""
    from tuneforge.recipes.train import train

    out = train(_minilm_config(tmp_path, "overfit", epochs=8, lr=3e-4, scheduler="constant", eval_every=4),
                quiet=True)
    d = out.eval["diagnosis"]
    assert d["label"] == "overfitting", d
    assert any("stop at step" in a for a in d["advice"])
    assert (out.run_dir / "eval.json").read_text().count('"overfitting"') >= 1


@pytest.mark.slow
def test_real_tiny_lr_is_underfitting(tmp_path: Path) -> None:
    """lr 1e-7: the loss does not move and the model predicts at the majority rate."""
    from tuneforge.recipes.train import train

    out = train(_minilm_config(tmp_path, "underfit", epochs=2, lr=1e-7), quiet=True)
    d = out.eval["diagnosis"]
    assert d["label"] == "underfitting", d
    assert d["advice"][0].startswith("raise train.lr")


def test_flagged_forgetting_adds_advice() -> None:
    res = results(split_metrics(0.99, 0.05), split_metrics(0.97, 0.08),
                  forgetting={"metric": "accuracy", "before": 0.95, "after": 0.68, "relative_change": -0.284,
                              "flagged": True})
    rows = train_rows([1.0, 0.3, 0.1]) + val_rows([0.5, 0.3, 0.31])
    d = diagnose(rows, res)
    assert d["label"] == "healthy"
    assert d["advice"] and "forgetting.replay" in d["advice"][-1] and "-28.4%" in d["advice"][-1]
    assert "lower method.r" in d["advice"][-1]  # already LoRA: "use LoRA" would be no advice
    res["method"] = "full"
    assert "method.name: lora" in diagnose(rows, res)["advice"][-1]
    res["forgetting"]["flagged"] = False
    assert diagnose(rows, res)["advice"] == []


def test_a_gap_without_learning_is_underfitting_not_overfitting() -> None:
    # lr 1e-7 on tiny data: a random head scores 0.47 on train and 0.20 on 10 validation examples.
    rows = train_rows([1.0991, 1.0975, 1.0968]) + val_rows([1.0990, 1.0984])
    d = diagnose(rows, results(split_metrics(0.467, 1.0968, (10, 10, 10)), split_metrics(0.20, 1.0984)))
    assert d["label"] == "underfitting", d


def test_no_stop_advice_while_validation_still_improves() -> None:
    rows = train_rows([1.0, 0.4, 0.1, 0.02]) + val_rows([0.9, 0.8])
    d = diagnose(rows, results(split_metrics(1.0, 0.02), split_metrics(0.7, 0.8)))
    assert d["label"] == "overfitting"  # the accuracy gap
    assert not any(a.startswith("stop at step") for a in d["advice"])


# ------------------------------------------------------------------ diverged, not underfitting (issue 13)

def test_loss_far_above_chance_is_diverged_not_underfitting() -> None:
    """lr 10: the loss went 605 → 943 and the model predicts one class. That is not a model too weak to
    learn (raising the learning rate would make it worse): a uniform guess scores ln(3) = 1.0986."""
    cfg = load_config(None, ["name=x", "data.train=x.jsonl", "train.lr=10"])
    rows = train_rows([605.0, 943.0]) + val_rows([880.0])
    d = diagnose(rows, results(split_metrics(0.333, 943.0), split_metrics(0.333, 880.0), method="full"), cfg)
    assert d["label"] == "unstable", d
    assert d["evidence"] == ["training loss 943.0000 at the end is far above the chance level ln(3) = 1.0986: "
                             "the weights diverged"]
    assert d["advice"][0] == "lower train.lr by 3-10x (now 10)"
    assert "underfitting" not in d["signals"] and not any("raise train.lr" in a for a in d["advice"])


def test_real_lr10_curve_of_the_tiny_bert_is_diverged() -> None:
    """The logged curve of the tiny BERT at lr 10 (tests/helpers_tiny config, 60 reviews): the loss falls
    from 112 to 54, far above chance all along; the final probe says 18.4."""
    rows = train_rows([112.07, 114.59, 140.49, 51.23, 54.01], every=5) + val_rows([96.56, 18.38], every=12)
    d = diagnose(rows, results(split_metrics(0.333, 18.38, (16, 16, 16)), split_metrics(0.333, 18.38, (4, 4, 4)),
                               method="full"))
    assert d["label"] == "unstable", d
    assert "far above the chance level ln(3)" in d["evidence"][0]


def lm_results(base: float, end: float) -> dict[str, Any]:
    return {"task": "instruction", "method": "lora", "base": {"validation": {"loss": base}},
            "final": {"train": {"loss": end}, "validation": {"loss": end}}, "training": {}}


def test_language_model_loss_far_above_its_start_is_diverged() -> None:
    d = diagnose(train_rows([9.0, 9.5]), lm_results(2.3, 9.7))  # diverged before the first log: no spike
    assert d["label"] == "unstable", d
    assert d["evidence"] == ["training loss 9.7000 at the end is far above the base model's loss 2.3000: "
                             "the weights diverged"]
    assert diagnose(train_rows([2.4, 2.1, 1.9]) + val_rows([2.2, 2.0, 2.0]), lm_results(2.3, 1.9))["label"] == "healthy"
    assert diagnose(train_rows([2.31, 2.30, 2.30]), lm_results(2.3, 2.3))["label"] == "underfitting"


# ------------------------------------------------------------------ evidence, and advice against the config (issue 22)

def test_one_evaluation_is_not_enough_to_call_a_run_healthy() -> None:
    """A 4-step run with one validation point: the curves cannot say healthy."""
    cfg = load_config(None, ["name=x", "data.train=x.jsonl", "train.max_steps=4"])
    rows = train_rows([1.1, 0.9, 0.7, 0.6], every=1) + val_rows([0.65], every=4)
    res = results(split_metrics(0.8, 0.6), split_metrics(0.78, 0.65))
    res["training"]["steps"] = 4
    d = diagnose(rows, res, cfg)
    assert d["label"] == "inconclusive", d
    assert d["summary"].startswith("not enough evidence: 1 validation evaluation (step 4)")
    assert summary_lines(d)[0].startswith("diagnosis: not enough evidence")
    assert any(a.startswith("set train.eval_every: 1") for a in d["advice"]), d["advice"]


def test_a_run_still_improving_at_its_last_evaluation_says_so() -> None:
    cfg = load_config(None, ["name=x", "data.train=x.jsonl", "train.epochs=3"])
    rows = train_rows([1.0, 0.7, 0.5, 0.4, 0.3, 0.25]) + val_rows([0.6, 0.45, 0.35])
    d = diagnose(rows, results(split_metrics(0.9, 0.25), split_metrics(0.88, 0.35)), cfg)
    assert d["label"] == "healthy", d
    assert d["summary"] == "healthy; still improving: more epochs may help"
    assert "validation loss still improving at the last evaluation: 0.4500 (step 40) → 0.3500 (step 60)" in d["evidence"]
    assert d["advice"] == ["raise train.epochs (now 3; try 6): validation was still improving"]
    flat = train_rows([1.0, 0.7, 0.5, 0.4, 0.3, 0.25]) + val_rows([0.6, 0.35, 0.351])
    assert "still improving" not in diagnose(flat, results(split_metrics(0.9, 0.25), split_metrics(0.88, 0.35)),
                                             cfg)["summary"]


# Settings that push each suggestion to its edge (a knob at its minimum, a feature already on, ...).
EDGE_SETTINGS: list[dict[str, Any]] = [
    {},
    {"method.r": 1, "method.dropout": 0.5, "method.layers": 1, "method.reduction": 1, "train.weight_decay": 0.0,
     "train.warmup": 0.0, "train.max_grad_norm": None, "train.model_dropout": 0.5, "train.label_smoothing": 0.1,
     "train.early_stopping.patience": None, "forgetting.l2_to_base": 0.1, "forgetting.replay": 0.25,
     "forgetting.ewc": 100.0, "train.precision": "fp32"},
    {"method.r": 64, "method.dropout": 0.0, "method.layers": 6, "method.reduction": 64, "train.warmup": 0.2,
     "train.max_grad_norm": 5.0, "train.model_dropout": 0.1, "train.early_stopping.restore_best": False,
     "train.max_steps": 60, "train.eval_every": 20, "forgetting.replay": 0.9, "train.lr": 0.05},
    {"train.early_stopping.patience": 3, "train.label_smoothing": 0.3, "train.max_steps": 60, "train.eval_every": 15,
     "train.log_every": 6},
]


def _scenarios(method: str) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """label scenario -> (metrics.jsonl rows, eval.json results) for a run of `method`."""
    up = train_rows([1.0, 0.6, 0.3, 0.1, 0.03, 0.01]) + val_rows([0.7, 0.55, 0.8])
    flat = train_rows([1.0990, 1.0987, 1.0986, 1.0985]) + val_rows([1.0986, 1.0985, 1.0985])
    nan = train_rows([1.0, 0.7, math.nan, 0.5]) + val_rows([0.5, 0.4, 0.4])
    short = train_rows([1.0, 0.8]) + val_rows([0.7])
    better = train_rows([1.0, 0.7, 0.5, 0.4, 0.3, 0.25]) + val_rows([0.6, 0.45, 0.35])
    good, slices = split_metrics(0.9, 0.25), {"test": {"weak": ["true label = neutral"]}}
    out = {"overfitting": (up, results(split_metrics(1.0, 0.01), split_metrics(0.62, 0.8), method=method,
                                       training={"restored_best": True, "steps": 60})),
           "underfitting": (flat, results(split_metrics(0.35, 1.0985), split_metrics(0.34, 1.0985), method=method)),
           "unstable": (nan, results(good, split_metrics(0.88, 0.35), method=method)),
           "inconclusive": (short, results(good, split_metrics(0.88, 0.7), method=method, training={"steps": 20})),
           "still improving": (better, results(good, split_metrics(0.88, 0.35), method=method, slices=slices))}
    for metric in ("embedding_geometry", "perplexity", "accuracy"):
        f = {"metric": metric, "before": 1.0, "after": 0.6, "relative_change": -0.4, "flagged": True}
        out[f"forgetting {metric}"] = (better, results(good, split_metrics(0.88, 0.35), method=method, forgetting=f))
    return out


def _config_value(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _parse(text: str) -> Any:
    text = text.rstrip(".,;")
    if text in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[text]
    try:
        return float(text)
    except ValueError:
        return text


def contradictions(advice: list[str], cfg: Any) -> list[str]:
    """Every piece of advice that the run's own config already contradicts."""
    import re

    from tuneforge.methods import REGISTRY, method_class

    method = method_class(cfg.method.name)
    found = []
    for line in advice:
        for names in re.findall(r"method\.name: ([a-z]+(?: or [a-z]+)*)", line):
            for name in names.split(" or "):
                if name == cfg.method.name or name not in REGISTRY:
                    found.append(f"{line!r} suggests method.name: {name} to a {cfg.method.name} run")
        for key in re.findall(r"\bmethod\.([a-z_]+)", line):
            if key != "name" and key not in method.config_keys:
                found.append(f"{line!r} names method.{key}, which {cfg.method.name} does not read")
        for verb, key, now, to in re.findall(r"(raise|lower) ([a-z_.]+) \(now ([^;)]+); try ([^)]+)\)", line):
            value = _config_value(cfg, key)
            if value is None or float(now) != pytest.approx(float(value)):
                found.append(f"{line!r}: {key} is {value}, not {now}")
            if (verb == "raise") != (float(to) > float(now)) or float(to) == float(now):
                found.append(f"{line!r}: {verb} from {now} to {to}")
        for key, value in re.findall(r"\b((?:train|method|forgetting|data|eval)\.[a-z_.]+): ([\w.+-]+)", line):
            if key != "method.name" and _parse(value) == _config_value(cfg, key):
                found.append(f"{line!r} suggests {key}: {value}, which the config already says")
    return found


def test_every_advice_is_consistent_with_the_config_for_every_method() -> None:
    """Over every method × scenario × edge setting: no advice suggests what the config already does, names a
    method.* knob the method does not read, or says raise/lower with a `now` that is not the config's value."""
    from tuneforge.methods import REGISTRY

    checked, problems = 0, []
    for method in REGISTRY:
        for edge in EDGE_SETTINGS:
            cfg = load_config(None, ["name=x", "data.train=x.jsonl", f"method.name={method}"])
            for key, value in edge.items():
                *path, leaf = key.split(".")
                setattr(_config_value(cfg, ".".join(path)), leaf, value)
            for scenario, (rows, res) in _scenarios(method).items():
                d = diagnose(rows, res, cfg)
                assert d["advice"], (method, scenario, edge)
                checked += len(d["advice"])
                problems += [f"{method} / {scenario}: {p}" for p in contradictions(d["advice"], cfg)]
    assert not problems, "\n".join(problems[:20])
    assert checked > 400


def test_the_checker_catches_a_contradiction() -> None:
    cfg = load_config(None, ["name=x", "data.train=x.jsonl", "method.name=lora", "train.label_smoothing=0.1"])
    assert contradictions(["train fewer weights (method.name: lora)"], cfg)
    assert contradictions(["try train.label_smoothing: 0.1"], cfg)
    assert contradictions(["raise method.layers (now 2; try 4)"], cfg)      # lora reads no method.layers
    assert contradictions(["lower method.r (now 8; try 16)"], cfg)          # not lower
    assert contradictions(["raise train.weight_decay (now 0.5; try 1)"], cfg)  # it is 0.01
    assert not contradictions(["lower method.r (now 8; try 4) or lower train.lr"], cfg)


def test_the_old_lora_embedding_advice_is_gone() -> None:
    """A LoRA run whose embeddings drifted was told to "use method.name: lora"."""
    cfg = load_config(None, ["name=x", "data.train=x.jsonl"])
    rows, res = _scenarios("lora")["forgetting embedding_geometry"]
    line = diagnose(rows, res, cfg)["advice"][-1]
    assert "method.name: lora" not in line
    assert "lower method.r (now 8; try 4)" in line and "raise forgetting.l2_to_base (now 0; try 0.01)" in line
