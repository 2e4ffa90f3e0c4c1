"""The memorization audit (eval.audit, `tuneforge audit RUN`): did the trained model memorise its training
records? And the words the report and the model card use for the run's privacy guarantee.

- Membership inference by loss threshold (Yeom et al. 2018): a training example tends to have a lower loss
  than an unseen one; the attack's ROC AUC over training vs held-out examples (0.5: nothing to tell them
  apart) and its true-positive rate at 1% false positives (Carlini et al. 2022: what matters is the few
  records an attacker can name with confidence), both by scikit-learn.
- Canary exposure (privacy.canaries, data/canaries.py; Carlini et al. 2019): each planted secret is ranked by
  the model's likelihood among other secrets of its format; exposure = log2(candidates) − log2(rank): about
  1 bit is chance, log2(candidates) means the secret is the model's first choice. And whether greedy
  decoding of the canary's prompt reproduces it. Only hashes and scores are kept; the secrets and the
  generated text are never written.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..data.records import Record

MEMBERS = 256       # training examples scored, and as many held-out ones: balanced classes for the ROC, and
HELD_OUT = 256      # the audit's cost stays two small forward passes after every run (AUC's s.e. ~0.03 here)
Scores = tuple[np.ndarray, np.ndarray]  # example_nll: each example's summed loss and its loss units


def membership(members: np.ndarray, others: np.ndarray) -> dict[str, Any]:
    """The loss-threshold attack: lower loss → "was trained on"."""
    from sklearn.metrics import roc_auc_score, roc_curve

    truth = np.r_[np.ones(len(members)), np.zeros(len(others))]
    score = -np.r_[members, others]
    fpr, tpr, _ = roc_curve(truth, score)
    low = fpr <= 0.01
    return {"auc": round(float(roc_auc_score(truth, score)), 4),
            "tpr_at_1pct_fpr": round(float(tpr[low].max()) if low.any() else 0.0, 4),
            "members": len(members), "non_members": len(others),
            "mean_loss_members": round(float(np.mean(members)), 4),
            "mean_loss_non_members": round(float(np.mean(others)), 4)}


def members(train: list[Any]) -> list[Any]:
    """The training examples the attack scores: the first MEMBERS that are not planted canaries."""
    return [e for e in train if not str(getattr(e, "where", "")).startswith("<canary>")][:MEMBERS]


def _mean_losses(task: Any, model: torch.nn.Module, examples: list[Any], batch_size: int, device: torch.device,
                 dtype: torch.dtype | None, found: Scores | None = None) -> np.ndarray | None:
    """Mean losses of `examples`: from `found` (their example_nll, taken already) or scored now."""
    found = task.example_nll(model, examples, batch_size, device, dtype) if found is None else found
    return None if found is None else found[0] / found[1]


def _row_losses(rows: list[dict[str, Any]] | None) -> np.ndarray | None:
    """Mean losses from the final evaluation's per-example rows (`loss`, over `tokens` where the task counts
    them), so the held-out split is not scored twice; None when the rows do not carry a loss."""
    if not rows or any("loss" not in r for r in rows):
        return None
    return np.array([r["loss"] / max(r.get("tokens", 1), 1) for r in rows])


def audit(task: Any, model: torch.nn.Module, encoded: dict[str, list[Any]], cfg: Any, device: torch.device,
          dtype: torch.dtype | None, canaries: list[Any] | None = None,
          rows: dict[str, list[dict[str, Any]]] | None = None, scored: Scores | None = None
          ) -> dict[str, Any] | None:
    """eval.json["audit"]: membership inference on train vs held-out (test, else validation), and canary
    exposure when canaries were planted; None when the task scores no examples or nothing is held out.
    `rows`: the final evaluation's per-example rows by split, whose losses the held-out side reuses;
    `scored`: example_nll of `members(encoded["train"])`, taken by the final train probe's pass."""
    held = "test" if encoded.get("test") else "validation"
    train = members(encoded.get("train", []))
    if not encoded.get(held) or not train:
        return None
    bs = cfg.eval.batch_size
    member_losses = _mean_losses(task, model, train, bs, device, dtype, scored)
    if member_losses is None:
        return None
    others = _row_losses((rows or {}).get(held, [])[:HELD_OUT])
    if others is None:
        others = _mean_losses(task, model, encoded[held][:HELD_OUT], bs, device, dtype)
    out: dict[str, Any] = {"membership": {**membership(member_losses, others), "held_out": held}}
    if canaries:
        out["canaries"] = exposures(task, model, canaries, cfg, device, dtype)
    return out


def reproduces(tokenizer: Any, secret: str, reply: str) -> bool:
    """Whether `reply` holds `secret` as the tokenizer can write it back: an uncased WordPiece tokenizer decodes
    "Zara.Raven56@example.org" as "zara. raven56 @ example. org" (lower case, spaces around punctuation), so the
    plain substring test missed 2 of 4 secrets a memorizer reproduced. Whitespace is ignored on both sides."""
    written = tokenizer.decode(tokenizer(secret, add_special_tokens=False)["input_ids"])
    said = "".join(reply.split())
    return "".join(secret.split()) in said or "".join(written.split()) in said


def exposures(task: Any, model: torch.nn.Module, canaries: list[Any], cfg: Any, device: torch.device,
              dtype: torch.dtype | None) -> dict[str, Any]:
    """Each canary's rank among its candidates by summed loss, its exposure, and greedy reproduction."""
    rows = []
    for c in canaries:
        texts = [c.secret] + list(c.candidates)
        records = [Record({cfg.data.prompt: c.prompt, cfg.data.response: c.response(t)}, "<candidate>", i + 1)
                   for i, t in enumerate(texts)]
        sums, _ = task.example_nll(model, task.encode(records, "audit"), cfg.eval.batch_size, device, dtype)
        rank = 1 + int((sums[1:] < sums[0]).sum())
        prompt = task.encode_unlabelled([Record({cfg.data.prompt: c.prompt}, "<candidate>", 0)])[0].prompt
        reply = task.generate(model, [prompt], 1, device, dtype,
                              max_new_tokens=len(task.tokenizer(c.response())["input_ids"]) + 8)[0]
        rows.append({"sha256_16": c.digest, "format": c.kind, "known_to_pii_detector": c.known,
                     "candidates": len(texts), "rank": rank,
                     "exposure": round(math.log2(len(texts)) - math.log2(rank), 3),
                     "greedy_reproduces": reproduces(task.tokenizer, c.secret, reply)})
        del reply
    values = [r["exposure"] for r in rows]
    return {"planted": len(rows), "repeats": cfg.privacy.canary_repeats, "chance_exposure": 1.0,
            "max_exposure": round(math.log2(rows[0]["candidates"]), 3) if rows else None,
            "mean_exposure": round(float(np.mean(values)), 3) if values else None,
            "reproduced": sum(r["greedy_reproduces"] for r in rows), "each": rows}


def run(task: Any, model: torch.nn.Module, encoded: dict[str, list[Any]], cfg: Any, device: torch.device,
        dtype: torch.dtype | None, note: Any, rows: dict[str, list[dict[str, Any]]] | None = None,
        scored: Scores | None = None) -> dict[str, Any] | None:
    """After training (unless eval.audit: false): the audit, its lines in the run log."""
    if not cfg.eval.audit:
        return None
    from ..data.canaries import make

    found = audit(task, model, encoded, cfg, device, dtype, make(cfg.privacy.canaries, cfg.train.seed, cfg.name),
                  rows, scored)
    for line in audit_lines(found):
        note(line)
    return found


def audit_lines(found: dict[str, Any] | None) -> list[str]:
    """The audit in sentences (run log, `tuneforge audit`, report, model card)."""
    if not found:
        return ["memorization audit: not run (eval.audit: false, no held-out split, or a task without per-example "
                "losses)"]
    m = found["membership"]
    verdict = ("the model's losses tell its training records from unseen ones" if m["auc"] >= 0.6
               else "close to chance (0.5)")
    lines = [f"membership inference (loss threshold, {m['members']} train vs {m['non_members']} {m['held_out']} "
             f"examples): ROC AUC {m['auc']:.3f}, TPR at 1% FPR {m['tpr_at_1pct_fpr']:.3f}: {verdict}"]
    c = found.get("canaries")
    if c:
        lines.append(f"canaries ({c['planted']} planted {c['repeats']}× each): mean exposure {c['mean_exposure']:.2f} "
                     f"bits (chance ≈ 1, most {c['max_exposure']:.1f}); greedy decoding reproduced {c['reproduced']}")
        for r in c["each"]:
            lines.append(f"  canary {r['sha256_16']} ({r['format']}, "
                         f"{'a format' if r['known_to_pii_detector'] else 'not a format'} the PII detector knows): "
                         f"rank {r['rank']} of {r['candidates']}, exposure {r['exposure']:.2f}"
                         + (", reproduced" if r["greedy_reproduces"] else ""))
    return lines


def guarantee_lines(privacy: dict[str, Any] | None) -> list[str]:
    """The run's differential-privacy guarantee, or plainly that it has none."""
    if not privacy or not privacy.get("dp"):
        return [(privacy or {}).get("note") or "no differential-privacy guarantee"]
    p = privacy
    return [f"differentially private (DP-SGD, Opacus): ε = {p['epsilon']:.2f}, δ = {p['delta']:.2g} for each training "
            f"example (target ε {p['epsilon_target']:g}; {p['accountant']} accountant; noise multiplier "
            f"{p['noise_multiplier']:.3f}, per-example clipping {p['max_grad_norm']:g}, Poisson sampling rate "
            f"{p['sample_rate']:.4f}, {p['steps']} steps)",
            "ε bounds how much any one training record can change what the model does: the smaller, the less "
            "anyone can learn about a record from the model"]
