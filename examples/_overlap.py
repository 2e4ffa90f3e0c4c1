"""Keep generated test sets honest: reject a test text that tuneforge's own leakage check would flag.

Mirrors tuneforge's defaults (stdlib only, so the generators stay dependency-free): word-multiset
Jaccard (near duplicates) and the share of a text's word 13-grams found in train (n-gram overlap),
both with a safety margin below the thresholds the check uses (0.8 and 0.2).
"""
from __future__ import annotations

import re
from collections import Counter

NEAR, NGRAM_SHARE, N = 0.6, 0.1, 13


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


def _multiset(words: list[str]) -> Counter:
    return Counter(words)


class OverlapGuard:
    def __init__(self) -> None:
        self.bags: list[Counter] = []
        self.by_word: dict[str, list[int]] = {}
        self.grams: set[tuple[str, ...]] = set()

    def add(self, text: str) -> None:
        words = _words(text)
        bag = _multiset(words)
        self.by_word_add(bag, len(self.bags))
        self.bags.append(bag)
        self.grams.update(tuple(words[i:i + N]) for i in range(len(words) - N + 1))

    def by_word_add(self, bag: Counter, i: int) -> None:
        for w in bag:
            self.by_word.setdefault(w, []).append(i)

    def too_close(self, text: str) -> bool:
        words = _words(text)
        grams = [tuple(words[i:i + N]) for i in range(len(words) - N + 1)]
        if grams and sum(g in self.grams for g in grams) / len(grams) >= NGRAM_SHARE:
            return True
        bag = _multiset(words)
        rare = sorted(bag, key=lambda w: len(self.by_word.get(w, ())))[:4]  # candidates share a rare word
        candidates = {i for w in rare for i in self.by_word.get(w, ())}
        size = sum(bag.values())
        for i in candidates:
            other = self.bags[i]
            inter = sum((bag & other).values())
            if inter / (size + sum(other.values()) - inter) >= NEAR:
                return True
        return False
