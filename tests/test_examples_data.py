"""Checks on the synthetic example data sets under examples/ and the scripts that generate them.

Each generator (examples/make_*.py) must reproduce its committed files byte for byte, and each file
must have the promised size, fields and label balance, with no duplicates inside train and no
test record leaking from train (exactly or as a near-duplicate).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# generator script -> (output folder, {file name: expected record count or (minimum, None)})
GENERATORS = {
    "make_sentiment.py": ("sentiment", {"train.jsonl": 1200, "test.jsonl": 300, "tiny.jsonl": 40}),
    "make_support_bot.py": ("support-bot", {"train.jsonl": (320, None), "test.jsonl": (64, None),
                                            "chat.jsonl": 30}),
    "make_topics.py": ("topics", {"train.jsonl": 800, "test.jsonl": 200}),
    "make_reference.py": ("reference", {"general.jsonl": 150, "prompts.jsonl": 30}),
}
SENTIMENT_LABELS = {"negative", "neutral", "positive"}
TOPIC_LABELS = {"sports", "business", "science", "travel"}
GREETING, SIGNATURE = "Kettle-ho!", "— Stay steamy, the Brightkettle crew"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
PHONE = re.compile(r"\+?\d[\d ()./-]{7,}\d")


def load(folder: str, name: str) -> list[dict]:
    path = EXAMPLES / folder / name
    assert path.exists(), f"{path} is missing: run python examples/make_*.py"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def max_jaccard(texts: list[str], against: list[str]) -> tuple[float, str, str]:
    """Highest word 5-gram Jaccard between any text and any text of `against` (with the pair)."""
    sets = [shingles(t) for t in against]
    index: dict[tuple[str, ...], list[int]] = {}
    for i, s in enumerate(sets):
        for g in s:
            index.setdefault(g, []).append(i)
    best = (0.0, "", "")
    for text in texts:
        s = shingles(text)
        counts: Counter[int] = Counter(i for g in s for i in index.get(g, ()))
        for i, inter in counts.items():
            j = inter / (len(s) + len(sets[i]) - inter)
            if j > best[0]:
                best = (j, text, against[i])
    return best


def check_common(records: list[dict], fields: set[str], expected) -> None:
    if isinstance(expected, tuple):
        assert len(records) >= expected[0]
    else:
        assert len(records) == expected
    for r in records:
        assert set(r) == fields, r
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids), "duplicate ids"
    assert all(isinstance(i, str) and i for i in ids)


def check_classification(folder: str, labels: set[str], splits: list[str], min_share: float) -> None:
    counts = GENERATORS[f"make_{folder}.py"][1]
    data = {name: load(folder, name) for name in splits}
    for name, records in data.items():
        check_common(records, {"id", "text", "label"}, counts[name])
        by_label = Counter(r["label"] for r in records)
        assert set(by_label) == labels, (name, by_label)
        for label, n in by_label.items():
            assert n / len(records) >= min_share, (name, label, n)
        for r in records:
            assert isinstance(r["text"], str) and r["text"].strip()
            assert not EMAIL.search(r["text"]) and not PHONE.search(r["text"]), r["text"]
    train_texts = [r["text"] for r in data["train.jsonl"]]
    assert len(set(train_texts)) == len(train_texts), "exact duplicate texts in train"
    test_texts = [r["text"] for r in data["test.jsonl"]]
    assert len(set(test_texts)) == len(test_texts), "exact duplicate texts in test"
    assert not set(test_texts) & set(train_texts), "test texts found verbatim in train"
    j, a, b = max_jaccard(test_texts, train_texts)
    assert j < 0.8, f"near-duplicate test/train pair (Jaccard {j:.2f}):\n  {a}\n  {b}"


def test_sentiment_files():
    check_classification("sentiment", SENTIMENT_LABELS, ["train.jsonl", "test.jsonl", "tiny.jsonl"], 0.20)
    for name in ("train.jsonl", "test.jsonl", "tiny.jsonl"):
        records = load("sentiment", name)
        lengths = [len(r["text"].split()) for r in records]
        assert all(5 <= n <= 15 or 40 <= n <= 120 for n in lengths), name
        short = sum(n <= 15 for n in lengths)
        assert 0.2 <= short / len(records) <= 0.8, (name, short)  # a real mix of short and long
    counts = Counter(r["label"] for r in load("sentiment", "train.jsonl"))
    assert max(counts.values()) - min(counts.values()) <= 0.05 * sum(counts.values())
    tiny = Counter(r["label"] for r in load("sentiment", "tiny.jsonl"))
    assert max(tiny.values()) - min(tiny.values()) <= 1


def test_topics_files():
    check_classification("topics", TOPIC_LABELS, ["train.jsonl", "test.jsonl"], 0.20)


def test_support_bot_files():
    counts = GENERATORS["make_support_bot.py"][1]
    train, test = load("support-bot", "train.jsonl"), load("support-bot", "test.jsonl")
    for name, records in (("train.jsonl", train), ("test.jsonl", test)):
        check_common(records, {"id", "instruction", "output", "fact"}, counts[name])
        for r in records:
            assert r["fact"] and r["fact"] in r["output"], r
            assert r["output"].startswith(GREETING) and r["output"].endswith(SIGNATURE), r["output"]
            assert len(r["output"].split()) < 60, r["output"]
            assert r["instruction"].strip()
    train_q = [r["instruction"] for r in train]
    assert len(set(train_q)) == len(train_q), "duplicate instructions in train"
    assert not {r["instruction"] for r in test} & set(train_q), "test questions found verbatim in train"
    train_facts = {r["fact"] for r in train}
    assert len(train_facts) >= 15
    assert {r["fact"] for r in test} <= train_facts, "test asks about facts train never teaches"
    per_fact = Counter(r["fact"] for r in train)
    assert min(per_fact.values()) >= 8, "every fact needs many paraphrases in train"

    chat = load("support-bot", "chat.jsonl")
    check_common(chat, {"id", "messages"}, counts["chat.jsonl"])
    multi = 0
    for conv in chat:
        msgs = conv["messages"]
        assert msgs[0]["role"] == "system"
        roles = [m["role"] for m in msgs[1:]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) % 2 == 0, roles
        for m in msgs:
            assert set(m) == {"role", "content"} and m["content"].strip()
            if m["role"] == "assistant":
                assert m["content"].startswith(GREETING) and m["content"].endswith(SIGNATURE)
        multi += roles.count("assistant") >= 2
    assert multi >= 5, "chat.jsonl needs some multi-turn conversations"


def test_reference_files():
    general = load("reference", "general.jsonl")
    check_common(general, {"id", "text"}, 150)
    texts = [r["text"] for r in general]
    assert len(set(texts)) == len(texts)
    for t in texts:
        sentences = len(re.findall(r"[.!?](?:\s|$)", t))
        assert 2 <= sentences <= 4, t
    prompts = load("reference", "prompts.jsonl")
    check_common(prompts, {"id", "prompt"}, 30)
    assert len({p["prompt"] for p in prompts}) == 30


@pytest.mark.parametrize("script", sorted(GENERATORS))
def test_generator_is_deterministic(script, tmp_path):
    folder, files = GENERATORS[script]
    subprocess.run([sys.executable, str(EXAMPLES / script), "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=300)
    produced = sorted(p.name for p in tmp_path.iterdir())
    assert produced == sorted(files)
    for name in files:
        new = (tmp_path / name).read_bytes()
        committed = (EXAMPLES / folder / name).read_bytes()
        assert new == committed, f"{folder}/{name} differs from a fresh run of {script}"
        assert len(committed) < 2 * 1024 * 1024, f"{folder}/{name} is over 2 MB"
