"""What a PII detector reports: a Finding (type and span, never the value) and the candidate priorities.

A candidate is (priority, finding); when candidates overlap the lower priority wins: specific, checksummed
or prefixed detectors come first, the fuzzy ones (entropy, person names) yield to all others.
"""
from __future__ import annotations

from dataclasses import dataclass

TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "UK_NINO", "IP_ADDRESS", "URL_CREDENTIALS",
         "SECRET", "DATE_OF_BIRTH", "POSTAL_ADDRESS", "PERSON")


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected value: its type and character span in the scanned text. Never the value itself."""

    type: str
    start: int
    end: int
    score: float


Cand = tuple[int, Finding]
_PRIO = {"SECRET": 0, "URL_CREDENTIALS": 1, "EMAIL": 2, "IBAN": 3, "CREDIT_CARD": 4, "US_SSN": 5,
         "UK_NINO": 6, "IP_ADDRESS": 7, "PHONE": 8, "DATE_OF_BIRTH": 9, "POSTAL_ADDRESS": 10,
         "PERSON": 11, "SECRET_ENTROPY": 12}


def cand(kind: str, start: int, end: int, score: float, prio: str | None = None) -> Cand:
    return _PRIO[prio or kind], Finding(kind, start, end, score)


def context(text: str, start: int, width: int = 40) -> str:
    return text[max(0, start - width):start]
