"""MinHash signatures and LSH banding for near-duplicate candidates, in a few numpy passes.

The signatures equal datasketch's `MinHash(num_perm, seed, scheme="affine32")` (a test checks it), and the
banding is the scheme of datasketch's MinHashLSH; both are computed for all records at once instead of one
datasketch call per record. Every candidate is verified with the exact Jaccard (`set_jaccard`).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np
from datasketch import MinHash

MAX_CANDIDATES = 64   # verified LSH candidates per record; templated data can make thousands


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: datasketch's affine32 scheme pre-mixes input hashes with it."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def signatures(hash_lists: Sequence[Sequence[int]], num_perm: int = 128, seed: int = 1,
               chunk: int = 1 << 17) -> np.ndarray:
    """MinHash signatures (docs x num_perm, uint32) of many shingle-hash lists at once.

    The values equal datasketch's `MinHash(num_perm, seed, scheme="affine32")` fed the same hashes
    (same permutations, same pre-mix; a test checks it), computed in a few numpy passes instead of
    one datasketch call per record. Every list must be non-empty."""
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    lengths = np.fromiter((len(h) for h in hash_lists), dtype=np.int64, count=len(hash_lists))
    flat = _fmix32(np.fromiter((x for h in hash_lists for x in h), dtype=np.uint32, count=int(lengths.sum())))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    out = np.empty((len(hash_lists), num_perm), dtype=np.uint32)
    doc = 0
    while doc < len(hash_lists):  # whole documents per chunk, ~chunk shingles at a time
        last = int(np.searchsorted(starts, starts[doc] + chunk, side="right"))
        last = max(last, doc + 1)
        lo, hi = starts[doc], starts[last - 1] + lengths[last - 1]
        permuted = a[:, None] * flat[None, lo:hi] + b[:, None]  # perms x shingles: reduceat runs along rows
        out[doc:last] = np.minimum.reduceat(permuted, starts[doc:last] - lo, axis=1).T
        doc = last
    return out


class Bands:
    """MinHash LSH banding: records whose signatures agree on all rows of any band are candidates.

    The same scheme as datasketch's MinHashLSH, with band keys computed for all records in one numpy
    pass; datasketch's per-record insert and query (~0.2 ms together) were most of the time of a
    100k-record audit. A bucket keeps its first MAX_CANDIDATES records: a template repeated
    thousands of times still finds its first copies, without quadratic work."""

    def __init__(self, sigs: np.ndarray, bands: int, rows: int):
        mult = np.random.RandomState(7).randint(1, 1 << 62, size=rows, dtype=np.int64).astype(np.uint64) | 1
        grouped = sigs[:, :bands * rows].reshape(len(sigs), bands, rows).astype(np.uint64)
        self.keys = (grouped * mult).sum(axis=2).tolist()  # a 64-bit key per band (wrapping sum)
        self.tables: list[dict[int, Any]] = [{} for _ in range(bands)]

    def query_insert(self, doc: int) -> tuple[list[int], bool]:
        """Up to MAX_CANDIDATES earlier records sharing a band with `doc`, most shared bands first,
        and whether there were more; then index `doc`. A bucket of one is a bare int: most are."""
        found: list[int] = []
        for key, table in zip(self.keys[doc], self.tables):
            bucket = table.get(key)
            if bucket is None:
                table[key] = doc
            elif type(bucket) is int:
                found.append(bucket)
                table[key] = [bucket, doc]
            else:
                if len(found) < 4 * MAX_CANDIDATES:  # inside a big template cluster a few buckets suffice
                    found += bucket
                if len(bucket) < MAX_CANDIDATES:
                    bucket.append(doc)
        if len(found) <= MAX_CANDIDATES:  # the common case: few candidates, all verified
            return list(dict.fromkeys(found)), False
        counts = Counter(found)
        return [row for row, _ in counts.most_common(MAX_CANDIDATES)], len(counts) > MAX_CANDIDATES


def set_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique shingle-hash arrays (a crc32 collision inside one pair of
    short texts is a ~1e-6 event)."""
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def lsh_params(threshold: float, num_perm: int, recall: float = 0.997) -> tuple[int, int]:
    """LSH bands x rows such that a pair exactly at `threshold` becomes a candidate with probability
    >= `recall`, with as few bands (as few false candidates) as that allows. For 0.8 and 128
    permutations: 21 x 6, i.e. LSH queried at ~0.60 and every candidate verified exactly."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if bands >= 2 and 1 - (1 - threshold ** rows) ** bands >= recall:
            return bands, rows
    return num_perm // 2, 2
