"""Near-duplicate guard shared by make_tickets.py and make_ratings.py (stdlib only).

A text is "too close" to an indexed set when its word 5-gram Jaccard with any indexed text reaches
NEAR_DUP_JACCARD (0.5, stricter than the 0.8 the data tests enforce), or when tuneforge's own leakage
check would flag it (see _overlap.py). make_sentiment.py and make_topics.py carry the same class inline.
"""
from __future__ import annotations

import re

from _overlap import OverlapGuard

NEAR_DUP_JACCARD = 0.5


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = words(text)
    if len(w) < n:
        return {tuple(w)}
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


class NearDupIndex:
    """Inverted index over word 5-grams plus tuneforge's leakage measures."""

    def __init__(self) -> None:
        self.guard = OverlapGuard()
        self.sets: list[set[tuple[str, ...]]] = []
        self.index: dict[tuple[str, ...], list[int]] = {}

    def add(self, text: str) -> None:
        self.guard.add(text)
        s = shingles(text)
        i = len(self.sets)
        self.sets.append(s)
        for g in s:
            self.index.setdefault(g, []).append(i)

    def too_close(self, text: str) -> bool:
        return self.max_jaccard(text) >= NEAR_DUP_JACCARD or self.guard.too_close(text)

    def max_jaccard(self, text: str) -> float:
        s = shingles(text)
        counts: dict[int, int] = {}
        for g in s:
            for i in self.index.get(g, ()):
                counts[i] = counts.get(i, 0) + 1
        return max((inter / (len(s) + len(self.sets[i]) - inter) for i, inter in counts.items()), default=0.0)
