"""Time the data audit (PII scan + redaction + duplicates/leakage) on generated short records.

    .venv/bin/python bench/scan_bench.py                 # 100,000 records, train/test 90/10
    .venv/bin/python bench/scan_bench.py --n 20000 --presidio 2000   # also compare with Presidio

Records come from tests/pii_corpus.py (3% carry planted PII); 1% of the test split is copied from
train with small edits so that the leakage path does real work. Prints records/s per phase.
`--presidio N` scores Presidio's pattern recognizers (offline) and tuneforge's detectors on N planted
samples per type and the PII-free corpus: recall per type, false positives per 10k tokens, texts/s.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # pii_corpus: the test-only corpus generator

import pii_corpus  # noqa: E402
from tuneforge.vetting import audit, leakage, privacy  # noqa: E402
from tuneforge.data.records import Record  # noqa: E402


def make_splits(n: int, seed: int = 0) -> dict[str, list[Record]]:
    recs = pii_corpus.records(n, pii_rate=0.03, seed=seed)
    n_test = n // 10
    train, test = recs[n_test:], recs[:n_test]
    rng = random.Random(seed)
    for i in rng.sample(range(n_test), n_test // 100):  # plant leaks: copies of train with a changed word
        words = rng.choice(train).fields["text"].split()
        words[rng.randrange(len(words))] = "changed"
        test[i] = Record({"text": " ".join(words), "label": "pos"}, test[i].file, test[i].line)
    for r in test:
        r.file = "test.jsonl"
    return {"train": train, "test": test}


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t[0], time.process_time() - t[1]


def calibrate() -> float:
    """CPU seconds of a fixed pure-Python loop: compare machines (or a busy machine) by it."""
    t = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.process_time() - t


def bench_audit(n: int, phases: bool) -> None:
    print(f"calibration: a 10M-step Python loop takes {calibrate():.2f} s cpu (compare runs by it: higher = slower or busier machine)")
    splits = make_splits(n)
    total = sum(len(v) for v in splits.values())
    privacy.person_backend()  # NER lookup is a one-off, not per record
    if phases:
        t = _clock()
        redacted, pii = audit.scan_splits(splits, ["text"], "redact")
        wall, cpu = _since(t)
        print(f"pii scan+redact: {wall:6.1f} s wall {cpu:6.1f} s cpu  {total / wall:9,.0f} records/s")
        t = _clock()
        leakage.find_leakage(redacted, ["text"])
        wall, cpu = _since(t)
        print(f"leakage:         {wall:6.1f} s wall {cpu:6.1f} s cpu  {total / wall:9,.0f} records/s")
    t = _clock()
    _, result = audit.audit(splits, ["text"], "redact", "drop")
    wall, cpu = _since(t)
    print(f"audit {total:,} records (train {len(splits['train']):,} / test {len(splits['test']):,}): "
          f"{wall:.1f} s wall, {cpu:.1f} s cpu, {total / wall:,.0f} records/s")
    print("\n".join(audit.summary_lines(result)))


# ---------------------------------------------------------------------------------------------
PRESIDIO_TYPES = {"EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD",
                  "IBAN_CODE": "IBAN", "US_SSN": "US_SSN", "UK_NINO": "UK_NINO", "IP_ADDRESS": "IP_ADDRESS"}


def presidio_analyzer():
    """Presidio with pattern recognizers only, fully offline (DESIGN.md)."""
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class BlankEngine(SpacyNlpEngine):
        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    engine = BlankEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    # the email recognizer calls tldextract.extract, which would fetch the public suffix list
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=())
    return analyzer


def bench_presidio(per_type: int) -> None:
    samples = pii_corpus.planted(per_type, seed=3, types=list(PRESIDIO_TYPES.values()))
    clean = pii_corpus.clean(3000, seed=4)
    texts = [s.text for s in samples] + clean
    analyzer = presidio_analyzer()
    t0 = time.perf_counter()
    raw = {t: [(r.entity_type, r.start, r.end, r.score) for r in analyzer.analyze(t, language="en")] for t in texts}
    presidio_speed = len(texts) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    ours = {t: [(f.type, f.start, f.end) for f in privacy.detect(t)] for t in texts}
    our_speed = len(texts) / (time.perf_counter() - t0)

    def presidio(shared_only: bool, min_score: float):
        def detect(text: str) -> list[tuple[str, int, int]]:
            found = [(PRESIDIO_TYPES.get(e, e), a, b) for e, a, b, sc in raw[text] if sc >= min_score]
            return [f for f in found if f[0] in PRESIDIO_TYPES.values()] if shared_only else found
        return detect

    variants = (("presidio, all entity types", presidio(False, 0.0), presidio_speed),
                ("presidio, shared types", presidio(True, 0.0), presidio_speed),
                ("presidio, shared, score>=0.5", presidio(True, 0.5), presidio_speed),
                ("tuneforge", ours.__getitem__, our_speed))
    for name, fn, speed in variants:
        res = pii_corpus.evaluate(fn, samples, clean)
        recall = "  ".join(f"{k} {v:.3f}" for k, v in res["recall"].items())
        fps = ", ".join(f"{k} {v}" for k, v in sorted(res["fp_by_type"].items(), key=lambda kv: -kv[1])[:5])
        print(f"{name:30s} {speed:8,.0f} texts/s | recall {recall} | FP/10k tokens {res['fp_per_10k']:.2f} ({fps})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records in all splits")
    ap.add_argument("--presidio", type=int, default=0, metavar="N", help="also compare with Presidio, N per type")
    ap.add_argument("--phases", action="store_true", help="also time the PII scan and the leakage check alone")
    args = ap.parse_args()
    if args.presidio:
        bench_presidio(args.presidio)
    if args.n:
        bench_audit(args.n, args.phases)


if __name__ == "__main__":
    main()
