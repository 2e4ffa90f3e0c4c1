"""The data part of `tuneforge advise`: the vetting summary (PII by type, leakage, duplicates), label balance,
length distribution, classes too small to validate, whether redaction or differential privacy is advisable,
and the pretrained model's fit to the text (unknown-token rate, word pieces per word, perplexity)."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

from ..config import Config
from ..models.loading import _strings  # the text in a field: a string or chat messages' contents
from ..tasks import task_class
from ..vetting.audit import summary_lines

SMALL_CLASS = 5       # validation examples below which a class's score is noise
FIT_SAMPLE = 400      # records whose text the tokenizer's fit is measured on
WORD = re.compile(r"\w+", re.UNICODE)


def data_summary(cfg: Config, prep: Any) -> dict[str, Any]:
    audit = prep.audit
    pii, leak = audit["pii"], audit["leakage"]
    out: dict[str, Any] = {
        "audit_lines": summary_lines(audit),
        "splits": audit["splits"],
        "pii": {"total": pii["total"], "records_with_pii": pii.get("records_with_pii", 0),
                "by_type": pii.get("by_type", {}), "mode": cfg.privacy.pii},
        "leakage": {"cross_split": leak.get("cross_split", 0), "within_split": leak.get("within_split", 0),
                    "by_kind": leak.get("by_kind", {}), "policy": cfg.leakage.policy},
        "would_stop": stops(cfg, audit),
        "lengths": lengths(prep.encoded["train"], cfg.data.max_length),
    }
    column = task_class(cfg.task).stratify_column(cfg)
    if column:
        out["labels"] = {name: dict(Counter(_label(r.fields.get(column)) for r in records).most_common())
                         for name, records in prep.splits.items()}
        out["small_classes"] = small_classes(out["labels"])
    out["privacy_advice"] = privacy_advice(cfg, pii, audit["pii"].get("sensitive"))
    return out


def stops(cfg: Config, audit: dict[str, Any]) -> list[str]:
    """What would stop `train` under the config's own policies (advise only reports)."""
    out = []
    if cfg.privacy.pii == "block" and audit["pii"]["total"]:
        out.append(f"privacy.pii: block — {audit['pii']['total']} PII value(s) found; train refuses the data")
    if cfg.leakage.policy == "fail" and audit["leakage"].get("cross_split"):
        out.append(f"leakage.policy: fail — {audit['leakage']['cross_split']} pair(s) across splits; train refuses "
                   "(set leakage.policy: drop to train without them)")
    return out


def _label(value: Any) -> str:
    return "+".join(map(str, value)) if isinstance(value, list) else str(value)


def lengths(examples: list[Any], max_length: int) -> dict[str, Any]:
    """Token lengths of the encoded training examples: percentiles and the share cut at data.max_length."""
    n = [len(getattr(e, "ids", ())) for e in examples]
    if not n or not any(n):
        return {}
    a = np.array(n)
    return {"tokens_p50": int(np.percentile(a, 50)), "tokens_p90": int(np.percentile(a, 90)),
            "tokens_max": int(a.max()), "max_length": max_length,
            "truncated_share": round(float((a >= max_length).mean()), 4), "total_tokens": int(a.sum())}


def small_classes(labels: dict[str, dict[str, int]]) -> list[str]:
    """Training classes with fewer than SMALL_CLASS examples in the validation (or test) split."""
    check = labels.get("validation") or labels.get("test")
    if check is None:
        return []
    return [name for name in labels.get("train", {}) if check.get(name, 0) < SMALL_CLASS]


def privacy_advice(cfg: Config, pii: dict[str, Any], sensitive: str | None) -> str:
    share = pii.get("records_with_pii", 0) / max(pii.get("records_scanned", 0), 1)
    if not pii["total"] and not sensitive:
        return "no PII found: neither redaction nor differential privacy is needed for what the detectors know"
    parts = []
    if pii["total"]:
        types = ", ".join(f"{t} {n}" for t, n in pii.get("by_type", {}).items())
        parts.append(f"{pii['total']} PII value(s) in {100 * share:.1f}% of records ({types}): "
                     + ("redacted before training (privacy.pii: redact)" if cfg.privacy.pii == "redact"
                        else "set privacy.pii: redact so the model never sees them"))
    if sensitive or share >= 0.05:
        parts.append("the records themselves are sensitive" + (f" ({sensitive})" if sensitive else "")
                     + ": redaction removes what the detectors find, not what the text says about a person — "
                     "differential privacy (DP-SGD, e.g. Opacus) bounds what the model can memorize of any one "
                     "record; tuneforge does not train with it, so keep such a model internal")
    return "; ".join(parts)


def model_fit(prep: Any, need: dict[str, Any]) -> dict[str, Any]:
    """How well the pretrained model's tokenizer (and, for a language model, the model) fits the text."""
    cfg, tok = prep.cfg, prep.tokenizer
    columns = task_class(cfg.task).pii_columns(cfg)
    texts = [t[:2000] for r in prep.splits["train"][:FIT_SAMPLE] for c in columns for t in _strings(r.fields.get(c))]
    ids = [i for row in tok(texts, add_special_tokens=False)["input_ids"] for i in row] if texts else []
    unk = tok.unk_token_id
    unknown = sum(i == unk for i in ids) if unk is not None else 0
    words = sum(len(WORD.findall(t)) for t in texts)
    rate = unknown / max(len(ids), 1)
    pieces = len(ids) / max(words, 1)
    lines = [f"unknown-token rate {100 * rate:.2f}% and {pieces:.2f} tokens per word on {len(texts)} training texts"]
    perplexity = need.get("scores", {}).get("perplexity")
    if perplexity is not None:
        lines.append(f"the base model's perplexity on the held-out answers: {perplexity:.1f}")
    return {"unknown_rate": round(rate, 5), "tokens_per_word": round(pieces, 3), "perplexity": perplexity,
            "lines": lines}

