"""Duplicates inside a split and leakage between train, validation and test.

Three kinds of overlap, strongest first:
- exact: the same text after normalization (Unicode NFKC, lowercase, apostrophes dropped, other
  punctuation to spaces, whitespace collapsed), so case, spacing and punctuation edits still match.
- near: a high word-level Jaccard similarity. MinHash signatures (num_perm 128, datasketch's
  affine32 permutations, computed for all records in one numpy pass) go through LSH banding with
  bands chosen so that a pair at the threshold is a candidate with probability >= 0.997 (21 bands x
  6 rows for 0.8: LSH effectively queried at ~0.6), then every candidate is verified with the exact
  Jaccard (LSH at the target threshold alone misses ~30% of true pairs: DESIGN.md). datasketch's
  MinHashLSH does the same banding, but its per-record insert+query (~0.2 ms) was most of the time of
  a 100k-record audit; the signatures are checked equal to datasketch's in the tests.
  The default shingle is the word with its occurrence number ("the", "the#2"),
  i.e. multiset Jaccard over words: s substituted words in an N-word text give (N-s)/(N+s), so the
  default 0.8 catches up to N/9 edited words (3 edits in 30 words: 0.82). Word 5-gram shingles
  (`shingle=5`, the web-dedup standard) suit long documents but fall below 0.8 after a single edit
  in a 30-word text (21/31 = 0.68): on the test corpus (1-3 word edits in 30-80 words) they catch
  30% of the near duplicates, word multisets 100%.
  Word multisets ignore word order, so a shuffled copy counts as a near duplicate: intended.
- ngram: a validation/test text that shares any word 13-gram with an earlier split
  (lm-evaluation-harness style; texts of 13+ words only). 13-grams that appear in many records of
  the earlier split (max(5, 1%)) are boilerplate (a shared system prompt, a licence line), not leaks.

Templates: instruction data often wraps every input in the same words ("Is this review positive or
negative? ... Review: {text}"). Such text says nothing about overlap, yet a 16-word template around
3-word reviews makes any two records ~0.84 similar. So word runs (4+ words) that occur in at least
half of a column's records (20 or more) are set aside before the near-duplicate and n-gram checks,
which compare what varies; exact duplicates are still whole-text copies. The report's `templates`
says what was set aside per column. Data without such runs is compared exactly as before.

Split order is train, validation, test, then any other split by name; each record is compared with
the records before it, so a pair's `a` is the earlier record (the train side of a leak).
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import zlib
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np

from ..data.records import Record
from ..errors import TuneforgeError
from .minhash import Bands, lsh_params, set_jaccard, signatures
from .privacy import texts_of

LeakageReport = dict[str, Any]
POLICIES = ("warn", "drop", "fail")
SPLIT_ORDER = ("train", "validation", "test")
KINDS = ("exact", "near", "ngram")
MAX_NGRAM_MATCHES = 16  # earlier records named per record for 13-gram overlap
TEMPLATE_RUN = 4          # a template is made of word runs this long or longer ...
TEMPLATE_SHARE = 0.5      # ... found in at least this share of a column's records ...
TEMPLATE_MIN_RECORDS = 20  # ... of at least this many (two records sharing a phrase are no template)
TEMPLATE_SAMPLE = 500     # records the runs are counted on (enough to estimate a share); all are stripped

_APOSTROPHES = re.compile(r"['’`´]")
_NON_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Lowercase, drop apostrophes ("don't" = "dont"), other punctuation to spaces, collapse spaces."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)  # full-width letters, ligatures; ASCII needs none
    text = _APOSTROPHES.sub("", text.lower())
    return " ".join(_NON_WORD.sub(" ", text).split())


def record_text(record: Record, columns: Sequence[str]) -> str:
    """All text of a record's columns (chat messages included), joined."""
    return "\n".join(text for _, text in texts_of(record.fields, columns))


def shingles(words: Sequence[str], size: int = 1) -> list[str]:
    """Word shingles: size 1 tags repeats with their occurrence ("the", "the#2"): sets keep multiplicity."""
    if size == 1:
        if len(set(words)) == len(words):
            return list(words)
        seen: dict[str, int] = {}
        out = []
        for w in words:
            c = seen[w] = seen.get(w, 0) + 1
            out.append(w if c == 1 else f"{w}#{c}")
        return out
    if len(words) <= size:
        return [" ".join(words)]
    return [" ".join(words[i:i + size]) for i in range(len(words) - size + 1)]


def jaccard(a: str, b: str, size: int = 1) -> float:
    """Exact Jaccard similarity of two normalized texts' shingle sets."""
    sa, sb = set(shingles(a.split(), size)), set(shingles(b.split(), size))
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def _ordered(splits: Mapping[str, Any]) -> list[str]:
    known = [s for s in SPLIT_ORDER if s in splits]
    return known + sorted(s for s in splits if s not in SPLIT_ORDER)


class _NgramIndex:
    """Which record of a split first holds each word n-gram, and in how many records it occurs."""

    def __init__(self, n: int, min_share: float = 0.0):
        self.n, self.first, self.df, self.min_share = n, {}, Counter(), min_share

    def grams(self, words: Sequence[str]) -> list[int]:
        return [hash(tuple(words[i:i + self.n])) for i in range(len(words) - self.n + 1)]

    def add(self, grams: list[int], index: int) -> None:
        for g in set(grams):
            if g in self.first:
                self.df[g] += 1
            else:
                self.first[g] = index

    def matches(self, grams: list[int], n_records: int) -> list[tuple[int, float]]:
        """(earlier record, share of this record's n-grams found), leaving out boilerplate: n-grams in
        more than max(5, 1%) of the records, and n-grams that are mostly words of such boilerplate
        (a shared prompt followed by one common word is still the prompt)."""
        limit = max(5, n_records // 100)
        common = [g in self.first and self.df[g] + 1 > limit for g in grams]
        covered = [False] * (len(grams) + self.n - 1)
        for i, c in enumerate(common):
            if c:
                covered[i:i + self.n] = [True] * self.n
        hits = [g for i, g in enumerate(grams) if g in self.first and not common[i]
                and covered[i:i + self.n].count(False) * 2 >= self.n]
        if not hits:
            return []
        share = len(set(hits)) / len(set(grams))
        if share < self.min_share:  # one stock phrase shared by two long texts is not a leak
            return []
        owners = sorted({self.first[g] for g in hits})[:MAX_NGRAM_MATCHES]
        return [(j, share) for j in owners]


class _Doc:
    """One record in the comparison: where it is, its normalized text, and its sketch row."""

    __slots__ = ("split", "index", "record", "norm", "vary", "row")

    def __init__(self, split: str, index: int, record: Record, norm: str):
        self.split, self.index, self.record, self.norm, self.row = split, index, record, norm, -1
        self.vary = norm  # what the near-duplicate and n-gram checks compare: norm less any template


def find_leakage(splits: Mapping[str, Sequence[Record]], columns: Sequence[str], threshold: float = 0.8,
                 ngram: int = 13, *, shingle: int = 1, num_perm: int = 128,
                 ngram_share: float = 0.0) -> LeakageReport:
    """Duplicates within each split and overlaps between splits; see the module docstring."""
    if not 0.0 < threshold <= 1.0:
        raise TuneforgeError(f"leakage.threshold is {threshold}, expected a number in (0, 1]")
    order = _ordered(splits)
    docs = [_Doc(split, i, r, normalize(record_text(r, columns))) for split in order
            for i, r in enumerate(splits[split])]
    docs = [d for d in docs if d.norm]
    templates = set_aside_templates(docs, columns)
    unique: dict[str, _Doc] = {}
    for d in docs:
        unique.setdefault(d.norm, d)
    firsts = [d for d in unique.values() if d.vary]  # a record that is all template has nothing to compare
    hash_lists = [[zlib.crc32(x.encode()) for x in shingles(d.vary.split(), shingle)] for d in firsts]
    for row, d in enumerate(firsts):
        d.row = row
    bands, rows = lsh_params(threshold, num_perm)
    sigs = signatures(hash_lists, num_perm) if firsts else np.empty((0, num_perm), np.uint32)
    near = _Near(sigs, hash_lists, firsts, threshold, bands, rows)
    grams_of = {s: _NgramIndex(ngram, ngram_share) for s in order}
    first_of: dict[str, dict[str, int]] = {}        # normalized text -> {split: first index}
    links_of: dict[str, dict[str, list]] = {}       # normalized text -> links of its first copy
    pairs: list[dict[str, Any]] = []
    for d in docs:
        if d.norm in first_of:  # an exact copy: inherits the links of the first copy
            links = {s: list(v) for s, v in links_of.get(d.norm, {}).items()}
            for other, j in first_of[d.norm].items():
                links[other] = [("exact", j, 1.0)] + [f for f in links.get(other, []) if f[1] != j]
            if d.split not in first_of[d.norm]:
                _ngram_links(d, order, grams_of, splits, {}, index_only=True)  # later splits must see it
        else:
            links = {}
            for other, sim in near.matches(d):
                # the match stands for its exact copies in every split seen so far
                for split, j in first_of[other.norm].items():
                    if split != d.split or split not in links:
                        links.setdefault(split, []).append(("near", j, sim))
            _ngram_links(d, order, grams_of, splits, links)
            links = {s: v for s, v in links.items() if v}
            if links:
                links_of[d.norm] = links
        first_of.setdefault(d.norm, {}).setdefault(d.split, d.index)
        for other, found in links.items():
            if other == d.split:
                found = [max(found, key=lambda f: f[2])]  # one pair per duplicate within a split
            for kind, j, sim in found:
                pairs.append(_pair(kind, other, j, splits[other][j], d.split, d.index, d.record, sim))
    return _report(pairs, {"threshold": threshold, "ngram": ngram, "shingle": shingle, "num_perm": num_perm, "ngram_share": ngram_share,
                           "lsh_bands": bands, "lsh_rows": rows, "lsh_threshold": round((1 / bands) ** (1 / rows), 3),
                           "candidates_capped": near.capped}, templates)


def _ngram_links(d: _Doc, order: list[str], grams_of: dict[str, _NgramIndex], splits: Mapping[str, Sequence],
                 links: dict[str, list], index_only: bool = False) -> None:
    """13-gram overlap with every earlier split (records not already linked), then index this one."""
    words = d.vary.split()
    index = grams_of[d.split]
    if len(words) < index.n:
        return
    grams = index.grams(words)
    pos = order.index(d.split)
    for other in order[:0 if index_only else pos]:
        linked = {j for _, j, _ in links.get(other, [])}
        found = grams_of[other].matches(grams, len(splits[other]))
        links.setdefault(other, []).extend(("ngram", j, sim) for j, sim in found if j not in linked)
    if pos < len(order) - 1:
        index.add(grams, d.index)


def template_runs(word_lists: Sequence[Sequence[str]]) -> set[tuple[str, ...]]:
    """The TEMPLATE_RUN-word runs found in at least TEMPLATE_SHARE of the (non-empty) texts."""
    texts = [w for w in word_lists if w]
    if len(texts) < TEMPLATE_MIN_RECORDS:
        return set()
    counts: Counter[tuple[str, ...]] = Counter()
    for words in texts:
        counts.update({tuple(words[i:i + TEMPLATE_RUN]) for i in range(len(words) - TEMPLATE_RUN + 1)})
    need = TEMPLATE_SHARE * len(texts)
    return {run for run, c in counts.items() if c >= need}


def strip_runs(words: Sequence[str], runs: set[tuple[str, ...]]) -> list[str]:
    """`words` less every word inside an occurrence of one of `runs` (overlapping runs join up, so a
    16-word template goes as a whole)."""
    starts = {run[0] for run in runs}
    covered = [False] * len(words)
    for i in range(len(words) - TEMPLATE_RUN + 1):
        if words[i] in starts and tuple(words[i:i + TEMPLATE_RUN]) in runs:
            covered[i:i + TEMPLATE_RUN] = [True] * TEMPLATE_RUN
    return [w for w, c in zip(words, covered) if not c]


def set_aside_templates(docs: Sequence[_Doc], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Find each column's template on a sample of the records, set it aside in every record's `vary`,
    and say per column how many words were set aside in how many records."""
    distinct = list({d.norm: d for d in docs}.values())  # many copies of one record make no template
    sample = distinct[::max(1, len(distinct) // TEMPLATE_SAMPLE)]
    runs = {c: template_runs([normalize(record_text(d.record, [c])).split() for d in sample]) for c in columns}
    runs = {c: r for c, r in runs.items() if r}
    if not runs:
        return []
    stats: dict[str, Counter[int]] = {c: Counter() for c in runs}  # words set aside -> records
    present: Counter[str] = Counter()  # records with text in the column
    for d in docs:
        parts = []
        for c in columns:
            words = normalize(record_text(d.record, [c])).split()
            if c in runs and words:
                kept = strip_runs(words, runs[c])
                present[c] += 1
                stats[c][len(words) - len(kept)] += 1
                words = kept
            parts += words
        d.vary = " ".join(parts)
    out = []
    for c, counts in stats.items():
        with_template = present[c] - counts.pop(0, 0)
        if with_template:
            out.append({"column": c, "words": counts.most_common(1)[0][0], "records": with_template,
                        "share": round(with_template / present[c], 4)})
    return out


class _Near:
    """Near duplicates: LSH candidates verified by exact Jaccard."""

    def __init__(self, sigs: np.ndarray, hash_lists: list, firsts: list[_Doc], threshold: float, bands: int,
                 rows: int):
        self.sigs, self.hash_lists, self.firsts, self.threshold = sigs, hash_lists, firsts, threshold
        self.bands = Bands(sigs, bands, rows)
        self.sets: dict[int, np.ndarray] = {}
        self.capped = 0

    def _set(self, row: int) -> np.ndarray:
        if row not in self.sets:
            self.sets[row] = np.unique(np.array(self.hash_lists[row], dtype=np.uint32))
        return self.sets[row]

    def matches(self, d: _Doc) -> list[tuple[_Doc, float]]:
        """Earlier first copies with Jaccard >= threshold: all in other splits (so `drop` can remove
        them all), the first one in the record's own split (one is enough to call it a duplicate).
        A MinHash estimate first skips hopeless candidates: with 128 permutations its error is
        ~0.04, so a margin of 0.15 loses nothing."""
        if d.row < 0:  # nothing but template
            return []
        candidates, capped = self.bands.query_insert(d.row)
        self.capped += capped
        if not candidates:
            return []
        sig = self.sigs[d.row]
        agree = np.count_nonzero(self.sigs[candidates] == sig, axis=1)
        keep = agree >= (self.threshold - 0.15) * len(sig)
        rows = np.array(candidates)[keep]
        found, own = [], False
        for row in rows[np.argsort(-agree[keep], kind="stable")].tolist():
            other = self.firsts[row]
            if other.split == d.split and own:
                continue
            sim = set_jaccard(self._set(d.row), self._set(row))
            if sim >= self.threshold:
                found.append((other, round(sim, 4)))
                own = own or other.split == d.split
        return found


def _side(split: str, index: int, rec: Record) -> dict[str, Any]:
    return {"split": split, "file": rec.file, "line": rec.line, "index": index}


def _pair(kind: str, split_a: str, ia: int, ra: Record, split_b: str, ib: int, rb: Record, sim: float
          ) -> dict[str, Any]:
    return {"kind": kind, "a": _side(split_a, ia, ra), "b": _side(split_b, ib, rb), "similarity": round(sim, 4)}


def _report(pairs: list[dict[str, Any]], params: dict[str, Any], templates: list[dict[str, Any]]
            ) -> LeakageReport:
    cross = [p for p in pairs if p["a"]["split"] != p["b"]["split"]]
    between = Counter(f"{p['b']['split']}~{p['a']['split']}" for p in cross)
    leaking = {f"{p['b']['split']}:{p['b']['index']}" for p in cross}
    return {"total": len(pairs), "by_kind": {k: sum(p["kind"] == k for p in pairs) for k in KINDS},
            "within_split": len(pairs) - len(cross), "cross_split": len(cross), "between": dict(between),
            "leaking_records": len(leaking), "templates": templates, "pairs": pairs, "params": params}


def cross_pairs(report: LeakageReport) -> list[dict[str, Any]]:
    return [p for p in report["pairs"] if p["a"]["split"] != p["b"]["split"]]


def apply_policy(splits: Mapping[str, Sequence[Record]], report: LeakageReport, policy: str
                 ) -> dict[str, list[Record]]:
    """Act on a leakage report.

    warn: keep every record. fail: raise TuneforgeError if any validation/test record overlaps an
    earlier split. drop: remove the *earlier-split copy* of every cross-split pair (the train copy of
    a train~test leak, the validation copy of a validation~test one), so the evaluation sets stay
    intact and comparable across runs; and remove later duplicates within train. Duplicates within a
    split never fail, and validation/test are never deduplicated (that would change what they measure).
    """
    if policy not in POLICIES:
        raise TuneforgeError(f"leakage.policy is '{policy}', expected one of {', '.join(POLICIES)}")
    cross = cross_pairs(report)
    if policy == "fail" and cross:
        raise _fail_error(cross)
    if policy != "drop":
        return {name: list(recs) for name, recs in splits.items()}
    drop: dict[str, set[int]] = {name: set() for name in splits}
    for p in report["pairs"]:
        a, b = p["a"], p["b"]
        if a["split"] != b["split"]:
            side = a  # the earlier split's copy: the evaluation set stays as it is
        elif a["split"] == "train":
            side = b  # the later duplicate within train
        else:
            continue
        drop[side["split"]].add(_index(splits[side["split"]], side))
    return {name: [r for i, r in enumerate(recs) if i not in drop[name]] for name, recs in splits.items()}


def _index(records: Sequence[Record], side: dict[str, Any]) -> int:
    """The record a pair side names: by index when it still matches, else by file and line."""
    i = side.get("index", -1)
    if 0 <= i < len(records) and records[i].file == side["file"] and records[i].line == side["line"]:
        return i
    for j, r in enumerate(records):
        if r.file == side["file"] and r.line == side["line"]:
            return j
    raise TuneforgeError(f"leakage report names {side['file']}:{side['line']} ({side['split']}), "
                         f"which is not in that split (run find_leakage again on these splits)")


def _fail_error(cross: list[dict[str, Any]]) -> TuneforgeError:
    p = cross[0]
    a, b = p["a"], p["b"]
    n = len({(q["b"]["split"], q["b"]["index"]) for q in cross})
    kinds = ", ".join(f"{k} {v}" for k, v in Counter(q["kind"] for q in cross).most_common())
    where = "/".join(sorted({q["b"]["split"] for q in cross}))
    return TuneforgeError(f"{n} {where} record(s) overlap an earlier split ({len(cross)} pairs: {kinds}); "
                          f"first: {b['file']}:{b['line']} ({b['split']}) ~ {a['file']}:{a['line']} "
                          f"({a['split']}), {p['kind']} {p['similarity']:.2f} "
                          f"(set leakage.policy: drop, or remove them)")


def check_groups(splits: Mapping[str, Sequence[Record]], group_column: str, limit: int = 100) -> dict[str, Any]:
    """Group values that appear in more than one split. Values are shown as a short digest (a group
    key is often a user id or an email), each with the first file:line per split."""
    where: dict[str, dict[str, str]] = {}
    for split in _ordered(splits):
        for rec in splits[split]:
            value = rec.fields.get(group_column)
            if value is None:
                continue
            key = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            where.setdefault(key, {}).setdefault(split, rec.where)
    shared = [(k, v) for k, v in where.items() if len(v) > 1]
    groups = [{"group": hashlib.sha256(k.encode()).hexdigest()[:12], "splits": v} for k, v in shared[:limit]]
    return {"column": group_column, "total": len(shared), "groups": groups}
