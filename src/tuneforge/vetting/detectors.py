"""The PII detectors, and `detect`: every finding in a text, non-overlapping, in order of position.

Every detector is a compiled regex behind a cheap literal pre-check ('@' before the email regex, a digit
before the number regexes), confirmed by a checksum or validator where one exists (numbers.py). Overlaps are
resolved by a fixed priority (findings.py: a prefixed API key beats an email inside it). PERSON needs a
named-entity model: a spaCy pipeline with an NER component when one is installed (`TUNEFORGE_NER_MODEL`,
else en_core_web_sm/md/lg/trf); otherwise person-name detection is off and the scan summary says so.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
from collections import Counter
from typing import Any, Iterator, Protocol, Sequence

from .findings import Cand, Finding, cand, context
from .numbers import cards, ibans, ips, ninos, phones, ssns

NER_MODELS = ("en_core_web_sm", "en_core_web_md", "en_core_web_lg", "en_core_web_trf")
NER_OFF_NOTICE = ("person-name detection off: no NER model installed "
                  "(python -m spacy download en_core_web_sm, or set TUNEFORGE_NER_MODEL to an installed "
                  "spaCy pipeline)")


# ---------------------------------------------------------------------------------------------
# EMAIL and URL credentials
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@"
                    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.\w)")
# scheme://user:password@host -- the span is user:password, so the host stays readable.
_URL_CREDS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://([^\s:/@]*:[^\s/@]+)@[^\s/?#@]+")


def _emails(text: str) -> Iterator[Cand]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield cand("EMAIL", m.start(), m.end(), 0.95)


def _url_credentials(text: str) -> Iterator[Cand]:
    if "://" not in text or "@" not in text:
        return
    for m in _URL_CREDS.finditer(text):
        yield cand("URL_CREDENTIALS", m.start(1), m.end(1), 0.95)


# ---------------------------------------------------------------------------------------------
# SECRET: known key formats, private keys, JWTs, password assignments, then high-entropy tokens.
_SECRET_PREFIXED = re.compile(
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}\b"     # AWS access key id
    r"|\bgh[pousr]_[A-Za-z0-9]{36,255}\b"                                        # GitHub tokens
    r"|\bgithub_pat_[A-Za-z0-9_]{22,255}\b"
    r"|\bglpat-[A-Za-z0-9_\-]{20,}"                                              # GitLab
    r"|\bxox[abposre]-[A-Za-z0-9\-]{10,}"                                        # Slack
    r"|https://hooks\.slack\.com/services/[A-Za-z0-9/_]{20,}"
    r"|\bsk-(?:proj-|svcacct-|admin-|ant-(?:api\d\d-)?)?[A-Za-z0-9_\-]{20,}"      # OpenAI, Anthropic
    r"|\b[rs]k_(?:live|test)_[A-Za-z0-9]{10,}"                                   # Stripe
    r"|\bAIza[0-9A-Za-z_\-]{35}"                                                 # Google API key
    r"|\bhf_[A-Za-z0-9]{30,}"                                                    # Hugging Face
    r"|\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"                           # SendGrid
    r"|\bnpm_[A-Za-z0-9]{36}\b"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")      # JWT
_SECRET_LITERALS = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "ABIA", "ACCA", "ghp_", "gho_",
                    "ghu_", "ghs_", "ghr_",
                    "github_pat_", "glpat-", "xox", "hooks.slack", "sk-", "k_live_", "k_test_", "AIza", "hf_",
                    "SG.", "npm_", "eyJ")
_SECRET_HINT = re.compile("|".join(re.escape(lit) for lit in _SECRET_LITERALS))  # cheap gate for the big regex
_PEM = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
                  r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s:,\-]*)")
_PASSWORD = re.compile(
    r"(?i)\b(?:password|passwd|pwd|passphrase|pass|secret|secret[_\-]?key|api[_\-]?key|apikey|auth[_\-]?token|"
    r"access[_\-]?token|access[_\-]?key|client[_\-]?secret|token)\b[\"']?\s*(?:[:=]|=>|\bis\b|\bwas\b)\s*"
    r"(?:[\"']([^\"'\s]{6,})[\"']|([^\s\"'`,;()\[\]{}<>]{6,}))")
_NOT_A_PASSWORD = re.compile(r"(?i)^(?:\$|%|\{|<|\*+$|x+$|null$|none$|true$|false$|undefined$|required$|"
                             r"optional$|empty$|string$|redacted$|hidden$|changeme$|your|my_|os\.|self\.|env\.|"
                             r"(?:password|passwd|pwd|secret|token|api[_\-]?key|key)s?[:=]?$)")


def _secrets(text: str) -> Iterator[Cand]:
    if "-----BEGIN" in text:
        for m in _PEM.finditer(text):
            yield cand("SECRET", m.start(), m.end(), 0.99)
    if _SECRET_HINT.search(text):
        for m in _SECRET_PREFIXED.finditer(text):
            yield cand("SECRET", m.start(), m.end(), 0.95)
    if "=" in text or ":" in text or " is " in text or " was " in text:
        yield from _passwords(text)


def _passwords(text: str) -> Iterator[Cand]:
    pos = 0
    while m := _PASSWORD.search(text, pos):
        quoted = m.group(1) is not None
        i = 1 if quoted else 2
        value = m.group(i)
        pos = m.start(i)  # a rejected value may itself start the next key ("token: password: ...")
        if _NOT_A_PASSWORD.match(value) or (not quoted and not _mixed(value)):
            continue
        pos = m.end(i)
        yield cand("SECRET", m.start(i), m.end(i), 0.8)


def _mixed(value: str) -> bool:
    """An unquoted value is a password only with a letter and a digit, and not if it reads like code."""
    has_alpha = any(c.isalpha() for c in value)
    has_digit = any(c.isdigit() for c in value)
    return has_alpha and has_digit and not re.search(r"[A-Za-z_]\.[A-Za-z_]", value) \
        and not re.fullmatch(r"v?\d+(?:\.\d+)+\w*|\d+[a-z]{1,3}", value)


_TOKEN = re.compile(r"(?<![\w+/\-.])[A-Za-z0-9+/_\-]{16,}={0,2}(?![\w+/=\-])")
_SECRET_WORDS = re.compile(r"(?i)(?:secret|token|passw|pwd|api[_\-]?key|apikey|access[_\-]?key|\bauth\b|"
                           r"authori[sz]ation|bearer|credential|private[_\-]?key|signature|session)[^\n]{0,20}$")
_HEXISH = re.compile(r"[0-9a-fA-F\-]+")
_PLAIN_WORD = re.compile(r"[a-z]{2,}\d{0,2}|[A-Z][a-z]{2,}\d{0,2}")
_WORD = re.compile(r"[A-Z]?[a-z]+\d{0,2}|[A-Z]{2,}\d{0,2}")  # "local", "Parquet", "CSV", "python3"
# Tuned on random keys vs identifiers (bench numbers in privacy.py's docstring): 99.5% of random
# base62/base64 tokens of 20+ characters have entropy >= 3.58 bits and switch character class
# (lower/upper/digit/symbol) at >= 37% of positions; CamelCase identifiers switch at ~32%.
ENTROPY_MIN, ENTROPY_MIN_CONTEXT = 3.5, 3.0
_SEGMENT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
TRANSITIONS_MIN = 0.34


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _transitions(s: str) -> float:
    """Share of neighbouring characters of different classes (lower, upper, digit, other)."""
    kinds = [0 if c.islower() else 1 if c.isupper() else 2 if c.isdigit() else 3 for c in s]
    return sum(a != b for a, b in zip(kinds, kinds[1:])) / (len(s) - 1)


def _joined_words(tok: str) -> bool:
    """Words joined by / - _ +: a path ("aten/src/ATen/native"), a list ("JSONL/CSV/Parquet"), a slug.
    A random key's pieces are almost never plain lowercase or Capitalized words."""
    pieces = [p for p in re.split(r"[/_\-+]", tok) if p]
    if len(pieces) < 2:
        return False
    plain = sum(bool(_PLAIN_WORD.fullmatch(p)) for p in pieces)
    return plain == len(pieces) or (len(pieces) > 2 and plain * 2 >= len(pieces)) or sum(len(p) for p in pieces if _WORD.fullmatch(p)) >= 0.8 * len(tok)


def _identifier(tok: str) -> bool:
    """CamelCase words ("AutoModelForCausalLM", "Wav2Vec2Output"): long letter segments, vowels as in
    words, few digits, few class changes. Measured on random base62/base64 keys of 20-40 characters:
    0.2-0.7% of them look like this, so the detector gives up that much recall for quiet code."""
    segs = _SEGMENT.findall(tok)
    if not segs:
        return False
    mean = sum(map(len, segs)) / len(segs)
    lower = [c for c in tok if c.islower()]
    vowels = sum(c in "aeiou" for c in lower) / max(len(lower), 1)
    digits = sum(c.isdigit() for c in tok) / len(tok)
    return mean >= 4.4 or _transitions(tok) < TRANSITIONS_MIN or (mean >= 3.2 and vowels >= 0.3 and digits <= 0.12)


def _high_entropy(text: str) -> Iterator[Cand]:
    for m in _TOKEN.finditer(text):
        tok = m.group().rstrip("=")
        ctx = bool(_SECRET_WORDS.search(context(text, m.start(), 30)))
        if _looks_random(tok, ctx):
            yield cand("SECRET", m.start(), m.end(), 0.6 if ctx else 0.5, prio="SECRET_ENTROPY")


def _looks_random(tok: str, ctx: bool) -> bool:
    if len(tok) < 20 and not ctx:
        return False
    classes = any(c.islower() for c in tok) + any(c.isupper() for c in tok) + any(c.isdigit() for c in tok)
    if _HEXISH.fullmatch(tok):
        # hashes, UUIDs and hex ids are everywhere in code and logs; a hex secret needs a key word
        return ctx and len(tok) >= 16 and classes >= 2
    if classes < 3 and not (ctx and classes >= 2):
        return False  # one or two classes is a word, a number, a hash or a CamelCase name
    if _joined_words(tok):
        return False
    parts = re.split(r"[_\-]", tok)
    words = [p for p in parts if len(p) >= 6 and p.isalpha() and _identifier(p)]
    if words:  # "getUserBalance_5d20e3bf": judge what is left once the identifier words are out
        rest = "".join(p for p in parts if p not in words)
        return len(rest) >= 20 and _looks_random(rest, ctx)
    if _identifier(tok):
        return False
    return _entropy(tok) >= (ENTROPY_MIN_CONTEXT if ctx else ENTROPY_MIN)


# ---------------------------------------------------------------------------------------------
# DATE_OF_BIRTH (a date right after "born", "DOB", "date of birth") and postal addresses.
_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_DATE = re.compile(r"(?i)\b(?:\d{1,2}[./\-]\d{1,2}[./\-](?:\d{4}|\d{2})|\d{4}[./\-]\d{1,2}[./\-]\d{1,2}|"
                   r"\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r",?\s+\d{4}|"
                   + _MONTH + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})(?!\d)")
_DOB_WORDS = re.compile(r"(?i)\b(?:born|d\.?o\.?b\b\.?|date\s+of\s+birth|birth\s*date|birthdate|birthday|"
                        r"geboren|né|née)")
_DOB_GAP = re.compile(r"[^.!?\n]{0,40}?")


def _dobs(text: str, has_digit: bool) -> Iterator[Cand]:
    if not has_digit:
        return
    for w in _DOB_WORDS.finditer(text):
        window = text[w.end():w.end() + 60]
        m = _DATE.search(window)
        if m and _DOB_GAP.fullmatch(window[:m.start()]):
            yield cand("DATE_OF_BIRTH", w.end() + m.start(), w.end() + m.end(), 0.85)


_STREET_TYPES = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|"
                 r"Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq|Close|Crescent|Row|Alley|"
                 r"Trail|Trl|Plaza|Gardens|Grove|Mews|Walk")
_STREET = re.compile(
    r"\b\d{1,6}[A-Za-z]?(?:[\-/]\d{1,4})?,?\s+(?:(?:N|S|E|W|North|South|East|West)\.?\s+)?"
    r"(?:(?:[A-Z][a-zA-Z'\-]+|\d{1,3}(?:st|nd|rd|th))\.?\s+){1,4}(?:" + _STREET_TYPES + r")\b\.?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Fl|#)\.?\s*[\w\-]{1,6})?"
    r"(?:,\s+[A-Z][a-zA-Z]+(?:\s+[A-Z][a-zA-Z]+){0,2},\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?)?")
_UK_POSTCODE = re.compile(r"\b(?:GIR 0AA|(?:[A-PR-UWYZ][A-HK-Y]?\d[A-HJKPSTUW\d]?) \d[ABD-HJLNP-UW-Z]{2})\b")
_SIZE_UNITS = ("GB", "MB", "KB", "TB", "PB")  # "PS5 4GB" is a console, not a Southend postcode


def _addresses(text: str, has_digit: bool) -> Iterator[Cand]:
    if not has_digit:
        return
    for m in _STREET.finditer(text):
        yield cand("POSTAL_ADDRESS", m.start(), m.end(), 0.7)
    for m in _UK_POSTCODE.finditer(text):
        if m.group()[-2:] not in _SIZE_UNITS:
            yield cand("POSTAL_ADDRESS", m.start(), m.end(), 0.75)


# ---------------------------------------------------------------------------------------------
# PERSON: pluggable named-entity backend.
class PersonBackend(Protocol):
    """Anything that finds person names: returns (start, end, score) spans for each text."""

    name: str

    def find(self, texts: Sequence[str]) -> list[list[tuple[int, int, float]]]: ...


class SpacyPersonBackend:
    """PERSON entities from a spaCy pipeline that has an `ner` component (loaded from disk only)."""

    def __init__(self, nlp: Any, name: str = "spacy"):
        self.nlp, self.name = nlp, name

    def find(self, texts: Sequence[str]) -> list[list[tuple[int, int, float]]]:
        out = []
        for doc in self.nlp.pipe(texts, batch_size=256):
            out.append([(e.start_char, e.end_char, 0.7) for e in doc.ents if e.label_ in ("PERSON", "PER")])
        return out


_UNSET = object()
_backend: Any = _UNSET


def load_person_backend(model: str | None = None) -> PersonBackend | None:
    """The first installed spaCy NER pipeline (env TUNEFORGE_NER_MODEL first), or None. Never downloads."""
    names = [model] if model else [n for n in [os.environ.get("TUNEFORGE_NER_MODEL")] if n] + list(NER_MODELS)
    for name in names:
        if importlib.util.find_spec(name.replace("-", "_")) is None and not os.path.isdir(name):
            continue
        try:
            import spacy

            keep = ("tok2vec", "transformer", "ner")
            nlp = spacy.load(name, exclude=[p for p in spacy.info(name).get("pipeline", []) if p not in keep]
                             if not os.path.isdir(name) else [])
        except Exception:  # a broken model must not break the scan: person detection stays off
            continue
        if "ner" in nlp.pipe_names:
            return SpacyPersonBackend(nlp, name)
    return None


def set_person_backend(backend: PersonBackend | None) -> None:
    """Use this backend for PERSON (None turns person detection off)."""
    global _backend
    _backend = backend


def person_backend() -> PersonBackend | None:
    global _backend
    if _backend is _UNSET:
        _backend = load_person_backend()
    return _backend


def notices() -> list[str]:
    """What the scan could not do, for the summary (e.g. no NER model for person names)."""
    return [] if person_backend() is not None else [NER_OFF_NOTICE]


# ---------------------------------------------------------------------------------------------
# detect / redact
def _regex_candidates(text: str) -> list[Cand]:
    n_digits = sum(map(text.count, "0123456789"))
    has_digit = n_digits > 0
    found: list[Cand] = []
    found += _secrets(text)
    found += _url_credentials(text)
    found += _emails(text)
    found += ibans(text, has_digit)
    found += cards(text, n_digits)
    found += ssns(text, has_digit)
    found += ninos(text, has_digit)
    found += ips(text, has_digit)
    found += phones(text, n_digits >= 7)
    found += _dobs(text, has_digit)
    found += _addresses(text, has_digit)
    if len(text) >= 16:
        found += _high_entropy(text)
    return found


def _resolve(cands: list[Cand]) -> list[Finding]:
    """Keep the best candidate of every overlapping group: priority first, then the longer span."""
    kept: list[Finding] = []
    for _, f in sorted(cands, key=lambda c: (c[0], c[1].start - c[1].end, c[1].start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def detect(text: str) -> list[Finding]:
    """All PII and secrets in `text`, non-overlapping, in order of position."""
    return detect_many([text])[0]


def detect_many(texts: Sequence[str]) -> list[list[Finding]]:
    """`detect` for many texts; person names are found in one batch (NER is much faster batched)."""
    backend = person_backend()
    people = backend.find(texts) if backend is not None and texts else [[] for _ in texts]
    out = []
    for text, spans in zip(texts, people):
        cands = _regex_candidates(text) if text else []
        cands += [cand("PERSON", s, e, sc) for s, e, sc in spans]
        out.append(_resolve(cands))
    return out
