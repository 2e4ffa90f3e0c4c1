"""What `tuneforge advise` prints (a short answer) and advice.html (every answer with how it was measured)."""
from __future__ import annotations

from typing import Any

from ..evaluation.html import esc, items, key_values, page, section, table


def _mb(value: float) -> str:
    return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value:,.0f} MB"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def short_answer(advice: dict[str, Any]) -> list[str]:
    """The lines `advise` prints: one per question, then the method table."""
    choice, need = advice["choice"], advice["need"]
    hp = {h["key"]: h["value"] for h in advice["hyperparameters"]}
    lines = [f"advice for {advice['config']} ({advice['task']} on {advice['model']}, "
             f"{advice['train_examples']:,} training examples):",
             f"  fine-tuning: {need['summary']}",
             f"  fine-tune or from scratch: {advice['scratch']['verdict']}",
             f"  method: {choice['method']} — {choice['why']}",
             "  settings: " + ", ".join(f"{k}={v}" for k, v in hp.items() if k != "method.name"),
             f"  data: {data_line(advice['data'])}"]
    lines += [f"  would stop train: {s}" for s in advice["data"]["would_stop"]]
    lines.append("  " + method_header())
    lines += ["  " + method_line(r) for r in advice["methods"]]
    return lines


def data_line(data: dict[str, Any]) -> str:
    parts = [f"PII {data['pii']['total']}" + (f" ({', '.join(f'{t} {n}' for t, n in data['pii']['by_type'].items())})"
                                               if data["pii"]["total"] else ""),
             f"leaks across splits {data['leakage']['cross_split']}, duplicates within {data['leakage']['within_split']}"]
    if data.get("small_classes"):
        parts.append("classes too small to validate: " + ", ".join(data["small_classes"]))
    ln = data.get("lengths") or {}
    if ln:
        parts.append(f"tokens p50 {ln['tokens_p50']} / p90 {ln['tokens_p90']} / max {ln['tokens_max']} "
                     f"({100 * ln['truncated_share']:.0f}% cut at {ln['max_length']})")
    return "; ".join(parts)


def method_header() -> str:
    return f"{'method':<9}{'trainable':>12}{'CPU peak':>10}{'GPU need':>10}{'est. time':>11}{'measured':>10}  fits"


def method_line(r: dict[str, Any]) -> str:
    metric = f"{r['measured_metric']:.3f}" if r["measured_metric"] is not None else "-"
    fits = "yes" if r["fits"] else "no"
    return (f"{r['method']:<9}{r['trainable_params']:>12,}{_mb(r['cpu_peak_mb']):>10}{_mb(r['gpu_need_mb']):>10}"
            f"{_minutes(r['estimated_train_s']):>11}{metric:>10}  {fits}")


def html_page(advice: dict[str, Any]) -> str:
    header = (f"<h1>Advice: {esc(advice['config'])}</h1><p class='meta'><b>{esc(advice['task'])}</b> on "
              f"<b>{esc(advice['model'])}</b>, {advice['train_examples']:,} training examples, measured on "
              f"{esc(advice['device'])} in {advice['seconds']:.0f}s</p>"
              f"<div class='verdict'>{esc(short_answer(advice)[3].strip())}</div>")
    return page(f"advice: {advice['config']}", header, advice_sections(advice))


def advice_sections(advice: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The HTML sections (the run report could embed them too): one per question."""
    need, scratch = advice["need"], advice["scratch"]
    need_body = f"<p>{esc(need['summary'])}</p>"
    if need.get("probe", {}).get("per_fold"):
        need_body += f"<p class='muted small'>per fold: {esc(need['probe']['per_fold'])}</p>"
    if need.get("scores"):
        need_body += key_values([(k, f"{v:.3f}") for k, v in need["scores"].items()])
    rows = [[esc(r["method"]), f"{r['trainable_params']:,}", _mb(r["weights_mb"]), _mb(r["gradients_mb"]),
             _mb(r["optimizer_mb"]), _mb(r["activations_mb"]), _mb(r["cpu_peak_mb"]), _mb(r["gpu_need_mb"]),
             _minutes(r["estimated_train_s"]), str(r["steps"]), f"{r['lr']:g}",
             f"{r['measured_metric']:.3f}" if r["measured_metric"] is not None else "", "yes" if r["fits"] else "no"]
            for r in advice["methods"]]
    methods = table(["method", "trainable", "weights", "gradients", "optimizer", "activations", "CPU peak",
                     "GPU need", "est. time", "steps", "lr", "measured", "fits"], rows)
    methods += items([f"chosen: {advice['choice']['method']} — {advice['choice']['why']}",
                      "memory: weights as stored, gradients and AdamW state of the trainable parameters, and the "
                      "tensors autograd saves on the largest batch; CPU peak = max(loading, training) + runtime; "
                      "GPU need = the same in bf16 (frozen weights in bf16 for frozen-base methods) + CUDA context",
                      "time: a few real optimizer steps per method on this machine, times the planned steps, plus "
                      f"the validations; measured metric: {advice['curves']['source']}"])
    hp = table(["setting", "value", "why"], [[esc(h["key"]), esc(h["value"]), esc(h["why"])]
                                            for h in advice["hyperparameters"]], text_cols=(0, 1, 2))
    data = advice["data"]
    data_body = items(data["audit_lines"] + data["would_stop"] + [data_line(data), data["privacy_advice"]])
    if data.get("labels"):
        names = list(data["labels"].get("train", {}))
        data_body += table(["split"] + names, [[esc(s)] + [str(c.get(n, 0)) for n in names]
                                               for s, c in data["labels"].items()])
    return [section("need", "Is fine-tuning needed?", need_body),
            section("scratch", "Fine-tune or train from scratch", f"<p>{esc(scratch['verdict'])}</p>"
                    + items(scratch["reasons"])),
            section("methods", "Which method fits", methods),
            section("settings", "Hyper-parameters for this data size", hp),
            section("data", "Data", data_body)]
