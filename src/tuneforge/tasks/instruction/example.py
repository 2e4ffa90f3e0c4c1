"""One instruction-tuning sequence, and the names evaluation and the other language-model tasks share."""
from __future__ import annotations

from dataclasses import dataclass

GENERATE_SPLITS = ("test", "eval")  # splits whose evaluation includes generation (validation: loss only)
FACT_COLUMN = "fact"  # the string a correct answer must contain (fact_accuracy, eval.json samples)


@dataclass
class Example:
    """One training sequence. labels[t] = ids[t] where position t is predicted (loss), else IGNORE."""

    ids: list[int]
    labels: list[int]
    where: str
    split: str = "train"
    prompt: list[int] | None = None      # ids before the final assistant turn (generation input)
    reference: str | None = None         # the final assistant turn's text (generation target)
    fact: str | None = None              # a string a correct answer must contain (fact_accuracy)
    question: str = ""                   # the last user message, for eval.json samples
