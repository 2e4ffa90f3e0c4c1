"""Reference text: general text the model must keep modelling, and general prompts it must keep answering.

What the forgetting guard measures before and after training (and what replay and the EWC Fisher may train
on: the texts the probe does not score). `builtin` ships inside the package (resources/reference); a user's
JSONL file goes through the same PII scan as the training data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import TuneforgeError
from ..vetting import privacy
from .records import read_records


@dataclass
class Reference:
    """General text the model must keep modelling, and general prompts it must keep answering."""

    texts: list[str]
    prompts: list[str]
    source: str

    def training_texts(self, probe_size: int) -> list[str]:
        """The texts replay and the EWC Fisher may train on: those the probe does not measure.

        The probe scores texts[:probe_size]; training on them would make replay look better than it is."""
        rest = self.texts[probe_size:]
        if not rest:
            raise TuneforgeError(f"forgetting.reference {self.source} has {len(self.texts)} texts and the probe "
                                 f"uses forgetting.samples = {probe_size}; lower it so some remain for replay/EWC")
        return rest


REFERENCE_COLUMNS = ("text", "prompt", "instruction")


def load_reference(spec: str | None, pii: str = "off") -> Reference | None:
    """`builtin` (shipped inside the package), a JSONL file (rows with "text" and/or "prompt"), or None.

    A user's file goes through the same PII scan as the training data (`pii` is privacy.pii): its prompts
    reach eval.json (the base model's sample answers) and its texts are trained on by replay/EWC."""
    if not spec:
        return None
    if spec == "builtin":
        root = resources.files("tuneforge") / "resources" / "reference"
        rows = _jsonl(root.joinpath("general.jsonl").read_text(encoding="utf-8"), "builtin general.jsonl") \
            + _jsonl(root.joinpath("prompts.jsonl").read_text(encoding="utf-8"), "builtin prompts.jsonl")
    else:

        path = Path(spec)
        if not path.is_file():
            raise TuneforgeError(f"`forgetting.reference` = {spec!r}: file not found (use builtin, a JSONL "
                                 "file with \"text\"/\"prompt\" fields, or null to switch the probe off)")
        records, _ = privacy.scan_records(read_records(path), REFERENCE_COLUMNS, pii)
        rows = [r.fields for r in records]
    texts = [r["text"] for r in rows if isinstance(r.get("text"), str) and r["text"].strip()]
    prompts = [r.get("prompt") or r.get("instruction") for r in rows if r.get("prompt") or r.get("instruction")]
    if not texts and not prompts:
        raise TuneforgeError(f"`forgetting.reference` = {spec!r} holds no \"text\" or \"prompt\" fields")
    return Reference(texts, [p for p in prompts if isinstance(p, str)], spec)


def _jsonl(text: str, where: str) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise TuneforgeError(f"{where}:{i}: not valid JSON ({e.msg})") from None
    return rows
