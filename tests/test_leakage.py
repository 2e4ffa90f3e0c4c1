"""Duplicates, near duplicates and train/test leakage (tuneforge.leakage), and the audit that runs both checks."""
from __future__ import annotations

import json
import random
import re
import zlib

import pii_corpus
import pytest

from tuneforge.vetting import audit, detectors, leakage
from tuneforge.data.records import Record
from tuneforge.errors import TuneforgeError
from tuneforge.vetting.leakage import apply_policy, check_groups, find_leakage, normalize


@pytest.fixture(autouse=True)
def no_ner():
    detectors.set_person_backend(None)
    yield
    detectors.set_person_backend(None)


def _texts(seed: int, n: int, lo: int = 30, hi: int = 80) -> list[str]:
    rng = random.Random(seed)
    return [pii_corpus.prose(rng, rng.randint(lo, hi)) for _ in range(n)]


def _recs(texts: list[str], file: str) -> list[Record]:
    return [Record({"text": t}, file, i + 1) for i, t in enumerate(texts)]


def _surface_edit(rng: random.Random, text: str) -> str:
    """Same words, different case, spacing and punctuation."""
    text = rng.choice([str.upper, str.lower, str.swapcase, str.title, lambda s: s])(text)
    text = text.replace(" ", rng.choice(["  ", " ", "\n", " \t"]))
    text = re.sub(r"[.,!?]", lambda m: rng.choice(["", ";", " -", "...", m.group()]), text)
    return rng.choice(["", '"', "  "]) + text + rng.choice(["", "!!", '"', " :)"])


def _word_edits(rng: random.Random, text: str, k: int) -> str:
    """k random word substitutions, insertions or deletions."""
    words = text.split()
    for _ in range(k):
        op, i = rng.choice(["sub", "ins", "del"]), rng.randrange(len(words))
        new = rng.choice([w for w in pii_corpus.WORDS if w != words[i].lower().strip(".,!?")])
        if op == "sub":
            words[i] = new
        elif op == "ins":
            words.insert(i, new)
        else:
            del words[i]
    return " ".join(words)


def _cross(report: dict) -> list[dict]:
    return [p for p in report["pairs"] if p["a"]["split"] != p["b"]["split"]]


# ---------------------------------------------------------------------------------------------
# catch rates


def test_normalize():
    assert normalize("  Hello,\tWORLD!!  Don't   stop. ") == "hello world dont stop"
    assert normalize("e-mail / ＦＵＬＬ-width") == "e mail full width"
    assert normalize("...") == ""


def test_every_planted_verbatim_copy_is_found():
    rng = random.Random(1)
    base = _texts(1, 300)
    copies = [_surface_edit(rng, t) for t in base[:200]]
    report = find_leakage({"train": _recs(base, "train.jsonl"), "test": _recs(copies, "test.jsonl")}, ["text"])
    exact = {p["b"]["line"] for p in _cross(report) if p["kind"] == "exact"}
    assert exact == set(range(1, 201))
    for p in _cross(report):
        if p["kind"] == "exact":
            assert p["a"]["line"] == p["b"]["line"] and p["similarity"] == 1.0


def test_near_duplicates_with_one_to_three_word_edits_are_found():
    rng = random.Random(2)
    base = _texts(2, 400)
    near = [_word_edits(rng, base[i], rng.randint(1, 3)) for i in range(200)]
    report = find_leakage({"train": _recs(base, "train.jsonl"), "test": _recs(near, "test.jsonl")}, ["text"])
    found = {p["b"]["line"] for p in _cross(report) if p["a"]["line"] == p["b"]["line"]}
    rate = len(found) / 200
    assert rate >= 0.95, rate
    assert all(p["similarity"] >= 0.8 for p in _cross(report) if p["kind"] == "near")


def test_unrelated_records_are_not_flagged():
    texts = _texts(3, 500, 8, 80)
    report = find_leakage({"train": _recs(texts[:400], "train.jsonl"), "test": _recs(texts[400:], "t.jsonl")},
                          ["text"])
    assert report["total"] == 0, report["pairs"][:3]
    assert report["templates"] == []  # prose shares no long word runs: compared whole, as before


def test_word_5gram_shingles_are_too_coarse_for_short_texts():
    """Why the default shingle is the word: 5-grams lose a 30-word text's match after one edit."""
    base = " ".join(f"w{i}" for i in range(30))
    edited = base.replace("w15", "changed")
    assert leakage.jaccard(normalize(base), normalize(edited), 5) < 0.7
    assert leakage.jaccard(normalize(base), normalize(edited), 1) >= 0.8


def test_ngram_overlap_with_train():
    train = _texts(4, 50)
    passage = " ".join(train[7].split()[5:20])  # 15 words of train record 8
    test = [f"As someone wrote: {passage}. {_texts(5, 1)[0]}", " ".join(train[3].split()[:12])]
    report = find_leakage({"train": _recs(train, "train.jsonl"), "test": _recs(test, "test.jsonl")}, ["text"])
    pairs = _cross(report)
    assert [(p["kind"], p["a"]["line"], p["b"]["line"]) for p in pairs] == [("ngram", 8, 1)]
    assert 0 < pairs[0]["similarity"] < 0.5  # share of the test record's 13-grams


def test_boilerplate_ngrams_are_not_leaks():
    prompt = "You are a helpful assistant that answers questions about the weather in short clear sentences"
    train = [f"{prompt}. {t}" for t in _texts(6, 40, 10, 20)]
    test = [f"{prompt}. {t}" for t in _texts(7, 5, 10, 20)]
    report = find_leakage({"train": _recs(train, "a"), "test": _recs(test, "b")}, ["text"])
    assert report["by_kind"]["ngram"] == 0


def test_duplicates_within_train_and_chat_columns():
    msgs = [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."}]
    loud = [{"role": "user", "content": "WHAT is the capital of france"}, {"role": "assistant", "content": "paris"}]
    train = [Record({"messages": msgs}, "chat.jsonl", 1), Record({"messages": loud}, "chat.jsonl", 2),
             Record({"messages": [{"role": "user", "content": "hi"}]}, "chat.jsonl", 3)]
    report = find_leakage({"train": train}, ["messages"])
    assert report["total"] == 1 and report["within_split"] == 1
    p = report["pairs"][0]
    assert (p["kind"], p["a"]["line"], p["b"]["line"]) == ("exact", 1, 2)


def test_pairs_name_both_records():
    report = find_leakage({"train": _recs(["the same words here"], "tr.jsonl"),
                           "validation": _recs(["The same, words here!"], "va.jsonl"),
                           "test": _recs(["the same words HERE"], "te.jsonl")}, ["text"])
    kinds = {(p["a"]["split"], p["b"]["split"]) for p in report["pairs"]}
    assert kinds == {("train", "validation"), ("train", "test"), ("validation", "test")}
    p = report["pairs"][0]
    assert set(p) == {"kind", "a", "b", "similarity"} and set(p["a"]) == {"split", "file", "line", "index"}


def test_bad_threshold():
    with pytest.raises(TuneforgeError, match="threshold"):
        find_leakage({"train": []}, ["text"], threshold=1.5)


def test_signatures_equal_datasketch_minhash():
    from datasketch import MinHash

    hash_lists = [[zlib.crc32(f"w{i}-{j}".encode()) for j in range(1 + i % 40)] for i in range(60)]
    sigs = leakage.signatures(hash_lists, 128, chunk=50)  # small chunks: documents across chunk edges
    for hashes, sig in zip(hash_lists, sigs):
        m = MinHash(num_perm=128, hashfunc=lambda h: h)
        m.update_batch(hashes)
        assert (m.hashvalues == sig).all()


def test_lsh_bands_leave_margin_below_the_threshold():
    bands, rows = leakage.lsh_params(0.8, 128)
    assert bands * rows <= 128 and 1 - (1 - 0.8 ** rows) ** bands >= 0.997


# ---------------------------------------------------------------------------------------------
# templated prompts: what varies is compared, the shared template is set aside

QUESTION = "Read the review below and tell me whether the person who wrote it liked it."  # 15 words
TEMPLATE_WORDS = 16  # the question and "Review:"


def _templated(reviews: list[str], file: str) -> list[Record]:
    return [Record({"instruction": f"{QUESTION}\nReview: {r}", "output": "yes"}, file, i + 1)
            for i, r in enumerate(reviews)]


def _short_reviews(seed: int, n: int) -> list[str]:
    """Distinct 3-word reviews (no two with the same words): many pairs share one or two words."""
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        words = rng.sample(pii_corpus.WORDS[:200], 3)
        if frozenset(words) not in seen:
            seen.add(frozenset(words))
            out.append(" ".join(words))
    return out


def test_a_shared_template_around_distinct_inputs_is_no_leak():
    """16 template words + 3 review words: one shared review word made 17/21 = 0.81 'near' before."""
    reviews = _short_reviews(20, 600)
    splits = {"train": _templated(reviews[:500], "train.jsonl"), "test": _templated(reviews[500:], "test.jsonl")}
    report = find_leakage(splits, ["instruction", "input"])
    assert report["total"] == 0, report["pairs"][:3]
    assert report["templates"] == [{"column": "instruction", "words": TEMPLATE_WORDS, "records": 600, "share": 1.0}]
    out, result = audit.audit(splits, ["instruction"], "off", "fail")  # the default policy accepts it
    assert len(out["test"]) == 100 and result["leakage"]["templates"] == report["templates"]
    assert "  column instruction: a 16-word template shared by 100% of records set aside (near-duplicate and " \
           "n-gram checks compare the rest)" in audit.summary_lines(result)


def test_paraphrases_inside_the_same_template_are_all_found():
    rng = random.Random(21)
    base = _texts(21, 300, 20, 40)
    planted = {i: rng.randrange(300) for i in range(0, 120, 2)}  # test line i+1 paraphrases train line j+1
    test = [_word_edits(rng, base[planted[i]], rng.randint(1, 2)) if i in planted else t
            for i, t in enumerate(_texts(22, 120, 20, 40))]
    test[1] = base[5]  # a verbatim copy is still an exact duplicate of the whole text
    splits = {"train": _templated(base, "train.jsonl"), "test": _templated(test, "test.jsonl")}
    report = find_leakage(splits, ["instruction"])
    found = {(p["b"]["line"], p["a"]["line"]) for p in _cross(report)}
    assert found == {(i + 1, j + 1) for i, j in planted.items()} | {(2, 6)}
    assert [p["kind"] for p in _cross(report) if p["b"]["line"] == 2] == ["exact"]
    assert report["templates"][0]["words"] == TEMPLATE_WORDS


def test_a_phrase_in_under_half_the_records_is_not_a_template():
    reviews = _short_reviews(23, 100)
    texts = [f"{QUESTION} {r}" if i % 5 < 2 else r for i, r in enumerate(reviews)]  # 40% carry the question
    report = find_leakage({"train": _recs(texts, "train.jsonl")}, ["text"])
    assert report["templates"] == []
    assert report["by_kind"]["near"] > 0  # compared whole, as any other text: the question makes them similar


# ---------------------------------------------------------------------------------------------
# policies


def _leaky() -> dict[str, list[Record]]:
    base = _texts(8, 6)
    train = _recs(base + [base[0].upper(), base[5]], "train.jsonl")   # lines 7, 8 duplicate lines 1, 6
    test = _recs([base[1] + "!", _texts(9, 1)[0], base[1]], "test.jsonl")  # 1 and 3 copy train line 2
    return {"train": train, "test": test}


def test_warn_keeps_everything():
    splits = _leaky()
    out = apply_policy(splits, find_leakage(splits, ["text"]), "warn")
    assert {k: len(v) for k, v in out.items()} == {"train": 8, "test": 3}


def test_fail_names_both_places_and_the_fix():
    splits = _leaky()
    with pytest.raises(TuneforgeError) as err:
        apply_policy(splits, find_leakage(splits, ["text"]), "fail")
    msg = str(err.value)
    assert msg.startswith("2 test record(s) overlap an earlier split")
    assert "test.jsonl:1 (test) ~ train.jsonl:2 (train)" in msg
    assert "set leakage.policy: drop, or remove them" in msg


def test_fail_ignores_duplicates_within_train():
    train = _recs(["one two three four", "One, two three four!"], "train.jsonl")
    splits = {"train": train, "test": _recs(["five six seven"], "test.jsonl")}
    out = apply_policy(splits, find_leakage(splits, ["text"]), "fail")
    assert len(out["train"]) == 2


def test_drop_removes_train_copies_and_later_duplicates_keeps_test_intact():
    splits = _leaky()
    out = apply_policy(splits, find_leakage(splits, ["text"]), "drop")
    assert [r.line for r in out["train"]] == [1, 3, 4, 5, 6]  # 2 leaked into test; 7, 8 repeat 1, 6
    assert [r.line for r in out["test"]] == [1, 2, 3]          # test is never changed
    again = find_leakage(out, ["text"])
    assert again["cross_split"] == 0 and again["within_split"] == 1  # test's own duplicate stays reported


def test_drop_removes_every_train_record_near_a_test_record():
    rng = random.Random(10)
    t = _texts(10, 1)[0]
    train = _recs([_word_edits(rng, t, 1), _word_edits(rng, t, 2), _texts(11, 1)[0]], "train.jsonl")
    splits = {"train": train, "test": _recs([t], "test.jsonl")}
    out = apply_policy(splits, find_leakage(splits, ["text"]), "drop")
    assert [r.line for r in out["train"]] == [3]


def test_a_match_counts_for_its_exact_copies_in_other_splits():
    rng = random.Random(15)
    y = _texts(15, 1)[0]
    splits = {"train": _recs([y, _texts(16, 1)[0]], "train.jsonl"),
              "validation": _recs([y.upper()], "val.jsonl"),
              "test": _recs([_word_edits(rng, y, 1)], "test.jsonl")}
    report = find_leakage(splits, ["text"])
    assert {(p["a"]["split"], p["b"]["split"], p["kind"]) for p in report["pairs"]} == {
        ("train", "validation", "exact"), ("train", "test", "near"), ("validation", "test", "near")}
    out = apply_policy(splits, report, "drop")
    assert [len(out[s]) for s in ("train", "validation", "test")] == [1, 0, 1]


def test_unknown_policy():
    with pytest.raises(TuneforgeError, match="leakage.policy"):
        apply_policy({}, {"pairs": []}, "ignore")


def test_check_groups_reports_shared_values_without_the_value():
    splits = {"train": [Record({"text": "a", "user": "ann@example.com"}, "tr", 1),
                        Record({"text": "b", "user": "bob"}, "tr", 2)],
              "test": [Record({"text": "c", "user": "ann@example.com"}, "te", 5),
                       Record({"text": "d", "user": None}, "te", 6)]}
    rep = check_groups(splits, "user")
    assert rep["total"] == 1 and rep["groups"][0]["splits"] == {"train": "tr:1", "test": "te:5"}
    assert "ann@example.com" not in json.dumps(rep)


# ---------------------------------------------------------------------------------------------
# the audit: PII first, leakage on the redacted text


def test_audit_redacts_then_finds_duplicates_on_redacted_text():
    splits = {"train": _recs(["Contact ann@example.com about the invoice", "unrelated words entirely here"],
                             "train.jsonl"),
              "test": _recs(["Contact bob@example.org about the invoice"], "test.jsonl")}
    out, result = audit.audit(splits, ["text"], "redact", "drop")
    assert out["test"][0].fields["text"] == "Contact <EMAIL_1> about the invoice"
    assert [r.line for r in out["train"]] == [2]  # identical once redacted: the train copy goes
    assert result["pii"]["by_type"] == {"EMAIL": 2} and result["pii"]["by_split"] == {"train": 1, "test": 1}
    assert result["leakage"]["dropped"] == {"train": 1}
    assert result["splits"] == {"train": 1, "test": 1}
    lines = audit.summary_lines(result)
    assert lines[0].startswith("privacy (redact): 2 value(s) in 2 of 3 records, redacted — EMAIL 2")
    assert any("test.jsonl:1 (test) ~ train.jsonl:1 (train) exact 1.00" in line for line in lines)
    assert lines[-1] == "splits: train 1, test 1"


def test_audit_errors_carry_the_audit_dict():
    splits = {"train": _recs(["call +44 20 7946 0958 today"], "tr.jsonl"), "test": _recs(["hello"], "te.jsonl")}
    with pytest.raises(audit.AuditError) as err:
        audit.audit(splits, ["text"], "block", "warn")
    assert "tr.jsonl:1 PHONE" in str(err.value) and err.value.audit["pii"]["total"] == 1
    leaky = {"train": _recs(["same text here"], "tr.jsonl"), "test": _recs(["Same text here."], "te.jsonl")}
    with pytest.raises(TuneforgeError, match="leakage.policy: drop"):
        audit.audit(leaky, ["text"], "warn", "fail")


def test_audit_json_holds_no_raw_values():
    samples = pii_corpus.planted(per_type=20, seed=12)
    recs = _recs([s.text for s in samples], "train.jsonl")
    splits = {"train": recs[::2], "test": recs[1::2] + recs[:10:2]}
    for mode in ("warn", "redact"):
        _, result = audit.audit(splits, ["text"], mode, "warn")
        blob = json.dumps(result)
        leaked = [s.text[a:b] for s in samples for _, a, b in s.spans if s.text[a:b] in blob]
        assert not leaked, leaked[:3]
        assert "\n".join(audit.summary_lines(result))


def test_audit_off_and_summary_for_clean_data():
    splits = {"train": _recs(_texts(13, 3), "tr"), "test": _recs(_texts(14, 2), "te")}
    out, result = audit.audit(splits, ["text"], "off", "fail")
    assert result["pii"]["mode"] == "off" and result["leakage"]["total"] == 0
    assert audit.summary_lines(result)[:2] == ["privacy: off (no scan)", "leakage (fail): no duplicates or leaks"]
