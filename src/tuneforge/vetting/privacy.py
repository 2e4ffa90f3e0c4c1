"""Find and redact personal data (PII) and secrets in training records, fast and offline.

Every detector is a compiled regex behind a cheap literal pre-check ('@' before the email regex,
a digit before the number regexes), confirmed by a checksum or validator where one exists:
Luhn for cards, ISO 7064 mod-97 for IBANs, `phonenumbers` for phones, `ipaddress` for IPs.
Overlaps are resolved by a fixed priority (a prefixed API key beats an email inside it), then
the findings are replaced by typed placeholders (`<EMAIL_1>`), consistent within one record.
Nothing that a report or log holds carries a raw value: findings are (type, start, end, score).

PERSON needs a named-entity model. A spaCy pipeline with an NER component is used when one is
installed (`TUNEFORGE_NER_MODEL`, else en_core_web_sm/md/lg/trf); otherwise person-name
detection is off and the scan summary says so. Nothing is ever downloaded.

Why not Presidio as the default (`bench/scan_bench.py --presidio 200`: 200 planted values per type
from pii_corpus plus 3,000 PII-free texts; Presidio 2.2.366 pattern recognizers, offline, NLP engine
on spacy.blank("en"); speed in CPU time on short records, both on the same busy 2-core machine):

                                 texts/s  recall: EMAIL PHONE CARD IBAN SSN  NINO IP    FP/10k tokens
    Presidio, all its entities       280         1.00  1.00  0.84 0.99 1.00 0.00 1.00  1095 (licence, date, URL)
    Presidio, the shared types                   (same)                                 120 (phone, IP, SSN)
    Presidio, shared, score >= .5                1.00  0.00  0.84 0.99 0.71 0.00 1.00    44
    tuneforge                     14,000         1.00  1.00  1.00 1.00 1.00 1.00 1.00     0

Presidio is ~50x slower (100k records would take ~6 min), fires on dates, numbers and loopback
addresses in ordinary text, and has no NINO, URL-credential, secret, birth-date or address
detectors; its phone matches score 0.4, so any score cut-off drops them all. Our IP rule treats
loopback/unspecified addresses as non-PII, part of Presidio's IP count above; and the corpus was
written with our detectors' definitions (a bare digit run is a phone only after a phone word),
which favours them. The speed gap and the false positives are what rule Presidio out.
On real code and docs (950k tokens of numpy, torch, transformers, requests, spaCy sources and
DESIGN.md) the detectors fire 0.07 times per 10k tokens, on author emails, example IPs and a token.
"""
from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, Sequence

import phonenumbers

from ..data.records import Record
from ..errors import TuneforgeError

MODES = ("off", "warn", "redact", "block")
TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "UK_NINO", "IP_ADDRESS", "URL_CREDENTIALS",
         "SECRET", "DATE_OF_BIRTH", "POSTAL_ADDRESS", "PERSON")
MAX_LOCATIONS = 1000  # the report lists this many places; counts stay exact beyond it
NER_MODELS = ("en_core_web_sm", "en_core_web_md", "en_core_web_lg", "en_core_web_trf")
NER_OFF_NOTICE = ("person-name detection off: no NER model installed "
                  "(python -m spacy download en_core_web_sm, or set TUNEFORGE_NER_MODEL to an installed "
                  "spaCy pipeline)")

PiiReport = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected value: its type and character span in the scanned text. Never the value itself."""

    type: str
    start: int
    end: int
    score: float


# A candidate is (priority, finding); lower priority wins an overlap. Specific, checksummed or
# prefixed detectors come first; the fuzzy ones (entropy, person names) yield to all others.
_Cand = tuple[int, Finding]
_PRIO = {"SECRET": 0, "URL_CREDENTIALS": 1, "EMAIL": 2, "IBAN": 3, "CREDIT_CARD": 4, "US_SSN": 5,
         "UK_NINO": 6, "IP_ADDRESS": 7, "PHONE": 8, "DATE_OF_BIRTH": 9, "POSTAL_ADDRESS": 10,
         "PERSON": 11, "SECRET_ENTROPY": 12}


def _cand(kind: str, start: int, end: int, score: float, prio: str | None = None) -> _Cand:
    return _PRIO[prio or kind], Finding(kind, start, end, score)


def _context(text: str, start: int, width: int = 40) -> str:
    return text[max(0, start - width):start]


# ---------------------------------------------------------------------------------------------
# EMAIL and URL credentials
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@"
                    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.\w)")
# scheme://user:password@host -- the span is user:password, so the host stays readable.
_URL_CREDS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://([^\s:/@]*:[^\s/@]+)@[^\s/?#@]+")


def _emails(text: str) -> Iterator[_Cand]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield _cand("EMAIL", m.start(), m.end(), 0.95)


def _url_credentials(text: str) -> Iterator[_Cand]:
    if "://" not in text or "@" not in text:
        return
    for m in _URL_CREDS.finditer(text):
        yield _cand("URL_CREDENTIALS", m.start(1), m.end(1), 0.95)


# ---------------------------------------------------------------------------------------------
# PHONE: find digit groups that could be a phone number, then let `phonenumbers` validate them.
# Bare digit runs (no '+', no separators) are IDs, timestamps or amounts far more often than
# phones, so they count only after a phone word ("tel", "call", ...).
_SEP = r"[ .\-/\u00a0]"
_PHONE_CAND = re.compile(
    r"(?<![\w+.\-/@#$€£%])(?<!\d,)"
    r"(?:(?:\+|\b00)\d{1,3}" + _SEP + r"?(?:\(0\)" + _SEP + r"?)?)?"   # +44 or 0044, optional (0)
    r"(?:\(\d{1,5}\)" + _SEP + r"?)?"                                   # (415) or (020)
    r"\d{1,6}(?:" + _SEP + r"?\d{1,6}){0,6}"
    r"(?![\w/@%]|[.,\-]\d)")
_PHONE_WORDS = re.compile(r"(?i)(?:\b(?:phone|tel|telephone|mobile|mob|cell|call|calling|fax|whatsapp|sms|"
                          r"text|ring|contact|reach|number|no|ph|hotline|landline)\b|☎|📞)[^\d\n]{0,25}$")
_DATE_IN = re.compile(r"(?:19|20)\d\d" + _SEP + r"\d{1,2}" + _SEP + r"\d{1,2}|"
                      r"\b\d{1,2}" + _SEP + r"\d{1,2}" + _SEP + r"(?:19|20)\d\d\b")
_DECIMAL = re.compile(r"\d+\.\d+")
_NANP_GROUPS = ((3, 3, 4), (1, 3, 3, 4), (3, 7))
_NATIONAL_REGIONS = ("GB", "DE", "FR", "IN", "IT", "NL", "AU")  # national numbers written with a leading 0


def _phones(text: str, has_digit: bool) -> Iterator[_Cand]:
    if not has_digit:
        return
    for m in _PHONE_CAND.finditer(text):
        span = m.group()
        if sum(c.isdigit() for c in span) < 7:
            continue
        found = _phone_in(text, m.start(), span)
        if found:
            yield found


def _phone_in(text: str, offset: int, span: str) -> _Cand | None:
    """Try the whole candidate, then with trailing space-separated groups dropped (a count or a year
    may follow the number). Never a piece from the middle or the end of a longer run of digits: the
    tail of a mistyped IBAN or an ISBN is not a phone number."""
    groups = [(g.start(), g.end()) for g in re.finditer(r"\S+", span)]
    for n in range(len(groups), max(0, len(groups) - 3), -1):
        end = groups[n - 1][1]
        score = _phone_score(text, offset, span[:end])
        if score:
            return _cand("PHONE", offset, offset + end, score)
    return None


def _phone_score(text: str, start: int, s: str) -> float:
    """0 unless `s` (at `start` in `text`) is a valid phone number written like one; else a score."""
    digits = re.sub(r"\D", "", s)
    intl = s.startswith("+") or s.startswith("00")
    if not 7 <= len(digits) <= 15 or (not intl and _DATE_IN.search(s)) or _DECIMAL.fullmatch(s) \
            or set(digits) <= {"0", "1"}:  # "0100 0000" is a byte
        return 0.0  # a '+' number is never a date; "2024-05-01 12" and "3.14159265" are never phones
    bare = not intl and s.isdigit()
    if bare and not _PHONE_WORDS.search(_context(text, start, 45)):
        return 0.0
    if intl:
        return 0.95 if _valid_phone("+" + (digits[2:] if s.startswith("00") else digits), None) else 0.0
    if digits[0] == "0":
        ok = any(_valid_phone(digits, r) for r in _NATIONAL_REGIONS)
        return 0.85 if ok else 0.0
    lens = tuple(len(g) for g in re.findall(r"\d+", s))
    if (bare or lens in _NANP_GROUPS) and _valid_phone(digits, "US"):
        return 0.85
    if (bare or lens in ((5, 5), (4, 3, 3), (3, 3, 4))) and len(digits) == 10 and digits[0] in "6789" \
            and _valid_phone(digits, "IN"):
        return 0.8
    return 0.0


def _valid_phone(number: str, region: str | None) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False


# ---------------------------------------------------------------------------------------------
# Numbers with checksums: cards (Luhn), IBAN (mod 97); US SSN and UK NINO by their structure.
_CARD = re.compile(r"(?<![\w\-./+])(?<!\d,)\d(?:[ \-]?\d){12,18}(?![\w\-]|[.,/]\d)")
_CARD_GROUPS = ((4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4), (4, 4, 4, 1), (4, 4, 4, 2), (4, 4, 5))
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|6(?:011|5|4[4-9])|35|62")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str, n_digits: int) -> Iterator[_Cand]:
    if n_digits < 13:
        return
    for m in _CARD.finditer(text):
        s = m.group()
        groups = tuple(len(g) for g in re.split(r"[ \-]", s))
        digits = s.replace(" ", "").replace("-", "")
        if len(groups) > 1 and (groups not in _CARD_GROUPS or len(set(re.findall(r"[ \-]", s))) > 1):
            continue  # real cards are written 4-4-4-4 or 4-6-5 with one kind of separator
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and _luhn(digits):
            yield _cand("CREDIT_CARD", m.start(), m.end(), 0.9)


_IBAN_LEN = {"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
             "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
             "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
             "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
             "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
             "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
             "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
             "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20}
_IBAN = re.compile(r"(?<![\w])([A-Za-z]{2})(\d{2})((?:[ \-]?[A-Za-z0-9]){11,30})")


def _ibans(text: str, has_digit: bool) -> Iterator[_Cand]:
    if not has_digit:
        return
    for m in _IBAN.finditer(text):
        country = m.group(1).upper()
        want = _IBAN_LEN.get(country)
        if want is None:
            continue
        end = _take_alnum(text, m.start(), want)
        if end is None:
            continue
        compact = re.sub(r"[ \-]", "", text[m.start():end]).upper()
        if _mod97(compact):
            yield _cand("IBAN", m.start(), end, 0.95)


def _take_alnum(text: str, start: int, count: int) -> int | None:
    """End of the span holding `count` alphanumerics from `start`; None unless it ends at a word edge."""
    seen, i = 0, start
    while i < len(text) and seen < count:
        if text[i].isalnum():
            seen += 1
        elif text[i] not in " -":
            return None
        i += 1
    if seen < count or (i < len(text) and text[i].isalnum()):
        return None
    return i


def _mod97(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


_SSN = re.compile(r"(?<![\w\-.])(?<!\d,)(?!000|666|9\d\d)(\d{3})([ \-]?)(?!00)(\d{2})\2(?!0000)(\d{4})(?![\w\-]|\.\d)")
_SSN_WORDS = re.compile(r"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no))?|ss#|taxpayer|tin)\b[^\d\n]{0,15}$")
_NINO = re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
                   r"(?: ?\d{2}){3} ?[A-D]\b")


def _ssns(text: str, has_digit: bool) -> Iterator[_Cand]:
    if not has_digit:
        return
    for m in _SSN.finditer(text):
        if not m.group(2) and not _SSN_WORDS.search(_context(text, m.start(), 30)):
            continue  # nine bare digits are an order number until someone calls them an SSN
        yield _cand("US_SSN", m.start(), m.end(), 0.85)


def _ninos(text: str, has_digit: bool) -> Iterator[_Cand]:
    if not has_digit:
        return
    for m in _NINO.finditer(text):
        yield _cand("UK_NINO", m.start(), m.end(), 0.85)


# ---------------------------------------------------------------------------------------------
# IP addresses. Loopback, unspecified addresses and netmasks (255.x) identify nobody: not reported.
_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:|::?)(?:[0-9A-Fa-f]{0,4}:){1,7}"
                   r"(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%[\w.]+)?(?![\w:]|\.\w)")
_VERSION_WORDS = re.compile(r"(?i)(?:\bv|version\s*|release\s*|build\s*)$")


def _ips(text: str, has_digit: bool) -> Iterator[_Cand]:
    if not has_digit:
        return
    if "." in text:
        for m in _IPV4.finditer(text):
            ip = ipaddress.IPv4Address(m.group())
            if ip.is_loopback or ip.is_unspecified or m.group().startswith("255.") \
                    or _VERSION_WORDS.search(_context(text, m.start(), 12)):
                continue
            yield _cand("IP_ADDRESS", m.start(), m.end(), 0.9)
    if ":" in text:
        for m in _IPV6.finditer(text):
            s = m.group().split("%")[0]
            if s.count(":") < 2 or (s.count(":") < 3 and max(len(g) for g in s.split(":")) < 3):
                continue  # "a::b" in C++ or a clock time is not an address
            try:
                ip = ipaddress.IPv6Address(s)
            except ValueError:
                continue
            if not (ip.is_loopback or ip.is_unspecified):
                yield _cand("IP_ADDRESS", m.start(), m.end(), 0.9)


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


def _secrets(text: str) -> Iterator[_Cand]:
    if "-----BEGIN" in text:
        for m in _PEM.finditer(text):
            yield _cand("SECRET", m.start(), m.end(), 0.99)
    if _SECRET_HINT.search(text):
        for m in _SECRET_PREFIXED.finditer(text):
            yield _cand("SECRET", m.start(), m.end(), 0.95)
    if "=" in text or ":" in text or " is " in text or " was " in text:
        yield from _passwords(text)


def _passwords(text: str) -> Iterator[_Cand]:
    pos = 0
    while m := _PASSWORD.search(text, pos):
        quoted = m.group(1) is not None
        i = 1 if quoted else 2
        value = m.group(i)
        pos = m.start(i)  # a rejected value may itself start the next key ("token: password: ...")
        if _NOT_A_PASSWORD.match(value) or (not quoted and not _mixed(value)):
            continue
        pos = m.end(i)
        yield _cand("SECRET", m.start(i), m.end(i), 0.8)


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
# Tuned on random keys vs identifiers (bench numbers in the module docstring): 99.5% of random
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


def _high_entropy(text: str) -> Iterator[_Cand]:
    for m in _TOKEN.finditer(text):
        tok = m.group().rstrip("=")
        ctx = bool(_SECRET_WORDS.search(_context(text, m.start(), 30)))
        if _looks_random(tok, ctx):
            yield _cand("SECRET", m.start(), m.end(), 0.6 if ctx else 0.5, prio="SECRET_ENTROPY")


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


def _dobs(text: str, has_digit: bool) -> Iterator[_Cand]:
    if not has_digit:
        return
    for w in _DOB_WORDS.finditer(text):
        window = text[w.end():w.end() + 60]
        m = _DATE.search(window)
        if m and _DOB_GAP.fullmatch(window[:m.start()]):
            yield _cand("DATE_OF_BIRTH", w.end() + m.start(), w.end() + m.end(), 0.85)


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


def _addresses(text: str, has_digit: bool) -> Iterator[_Cand]:
    if not has_digit:
        return
    for m in _STREET.finditer(text):
        yield _cand("POSTAL_ADDRESS", m.start(), m.end(), 0.7)
    for m in _UK_POSTCODE.finditer(text):
        if m.group()[-2:] not in _SIZE_UNITS:
            yield _cand("POSTAL_ADDRESS", m.start(), m.end(), 0.75)


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
def _regex_candidates(text: str) -> list[_Cand]:
    n_digits = sum(map(text.count, "0123456789"))
    has_digit = n_digits > 0
    found: list[_Cand] = []
    found += _secrets(text)
    found += _url_credentials(text)
    found += _emails(text)
    found += _ibans(text, has_digit)
    found += _cards(text, n_digits)
    found += _ssns(text, has_digit)
    found += _ninos(text, has_digit)
    found += _ips(text, has_digit)
    found += _phones(text, n_digits >= 7)
    found += _dobs(text, has_digit)
    found += _addresses(text, has_digit)
    if len(text) >= 16:
        found += _high_entropy(text)
    return found


def _resolve(cands: list[_Cand]) -> list[Finding]:
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
        cands += [_cand("PERSON", s, e, sc) for s, e, sc in spans]
        out.append(_resolve(cands))
    return out


class Placeholders:
    """Per-record map from a value to its placeholder (`<EMAIL_1>`), keyed by a digest, not the value."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, bytes], str] = {}
        self._counts: Counter[str] = Counter()

    def get(self, kind: str, value: str) -> str:
        key = (kind, hashlib.blake2b(_canonical(kind, value).encode(), digest_size=16).digest())
        if key not in self._ids:
            self._counts[kind] += 1
            self._ids[key] = f"<{kind}_{self._counts[kind]}>"
        return self._ids[key]


def _canonical(kind: str, value: str) -> str:
    """The same phone, card or email written two ways gets the same placeholder."""
    if kind == "PHONE":
        return _e164(value) or re.sub(r"\D", "", value)
    if kind in ("CREDIT_CARD", "IBAN", "US_SSN", "UK_NINO"):
        return re.sub(r"[\s().\-/]", "", value).upper()
    return value.lower() if kind == "EMAIL" else value


def _e164(value: str) -> str | None:
    """+442079460958 for "+44 20 7946 0958" and for "020 7946 0958" (the first region that fits)."""
    digits = re.sub(r"\D", "", value)
    intl = value.lstrip("(").startswith(("+", "00"))
    regions = _NATIONAL_REGIONS if digits.startswith("0") else ("US", "IN")  # as the detector reads it
    candidates = [("+" + (digits[2:] if value.startswith("00") else digits), None)] if intl else \
        [(digits, r) for r in regions]
    for number, region in candidates:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None


def redact(text: str, findings: Iterable[Finding], registry: Placeholders) -> str:
    """Replace every finding by its typed placeholder; `registry` keeps them consistent in a record."""
    parts, pos = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos:
            continue  # overlapping findings (detect never makes them): the first one wins
        parts += [text[pos:f.start], registry.get(f.type, text[f.start:f.end])]
        pos = f.end
    return "".join(parts) + text[pos:]


# ---------------------------------------------------------------------------------------------
# scanning records
_Path = tuple[Any, ...]  # ("text",) or ("messages", 2, "content")
_MESSAGE_KEYS = ("content", "value", "text")  # OpenAI/chat, ShareGPT, content parts


def texts_of(fields: dict[str, Any], columns: Sequence[str]) -> list[tuple[_Path, str]]:
    """Every string to scan in the record's text columns, with its path inside `fields`."""
    out: list[tuple[_Path, str]] = []
    for col in columns:
        _collect(fields.get(col), (col,), out)
    return out


def _collect(value: Any, path: _Path, out: list[tuple[_Path, str]]) -> None:
    if isinstance(value, str):
        out.append((path, value))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _collect(item, path + (i,), out)
    elif isinstance(value, dict):
        for key in _MESSAGE_KEYS:
            if key in value:
                _collect(value[key], path + (key,), out)


def path_name(path: _Path) -> str:
    """("messages", 2, "content") -> "messages[2].content"."""
    name = str(path[0])
    for p in path[1:]:
        name += f"[{p}]" if isinstance(p, int) else f".{p}"
    return name


def _set_path(fields: dict[str, Any], path: _Path, value: str) -> None:
    """Set a nested value, copying each container on the way so the input record is untouched."""
    node: Any = fields
    for key in path[:-1]:
        child = node[key]
        child = list(child) if isinstance(child, list) else dict(child)
        node[key] = child
        node = child
    node[path[-1]] = value


@dataclass(frozen=True, slots=True)
class Hit:
    """Where one finding sits: file, line, field path and type (never the value)."""

    file: str
    line: int
    field: str
    type: str


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise TuneforgeError(f"privacy.pii is '{mode}', expected one of {', '.join(MODES)}")


def scan(records: Sequence[Record], columns: Sequence[str], redact_values: bool
         ) -> tuple[list[Record], list[Hit], int]:
    """Detect (and optionally redact) PII in every record; returns (records, hits, records with PII)."""
    entries = [texts_of(r.fields, columns) for r in records]
    flat = [text for e in entries for _, text in e]
    found = iter(detect_many(flat))
    out, hits, n_with = [], [], 0
    for rec, entry in zip(records, entries):
        registry, fields = Placeholders(), None
        before = len(hits)
        for path, text in entry:
            fs = next(found)
            hits += [Hit(rec.file, rec.line, path_name(path), f.type) for f in fs]
            if fs and redact_values:
                fields = fields if fields is not None else dict(rec.fields)
                _set_path(fields, path, redact(text, fs, registry))
        n_with += len(hits) > before
        out.append(rec if fields is None else Record(fields, rec.file, rec.line, dict(rec.meta)))
    return out, hits, n_with


def report(hits: Sequence[Hit], mode: str, n_records: int, n_with: int, split: str | None = None) -> PiiReport:
    """Counts by type and the first MAX_LOCATIONS places; no raw values."""
    locations = [{"file": h.file, "line": h.line, "type": h.type, "field": h.field} for h in hits[:MAX_LOCATIONS]]
    if split is not None:
        for loc in locations:
            loc["split"] = split
    return {"mode": mode, "total": len(hits), "records_scanned": n_records, "records_with_pii": n_with,
            "by_type": dict(Counter(h.type for h in hits).most_common()), "locations": locations,
            "locations_truncated": max(0, len(hits) - MAX_LOCATIONS), "notices": notices()}


def block_message(rep: PiiReport) -> str:
    """The error for privacy.pii: block: first places, total count, the fix."""
    first = ", ".join(f"{x['file']}:{x['line']} {x['type']} in '{x['field']}'" for x in rep["locations"][:3])
    more = f" and {rep['total'] - 3} more" if rep["total"] > 3 else ""
    return (f"found {rep['total']} PII value(s) in {rep['records_with_pii']} record(s) with privacy.pii: block — "
            f"{first}{more} (set privacy.pii: redact, or remove them)")


def scan_records(records: Sequence[Record], columns: Sequence[str], mode: str) -> tuple[list[Record], PiiReport]:
    """Scan the text columns of `records` under a privacy mode.

    off: nothing is scanned. warn: records unchanged, findings reported. redact: returns new Records
    with typed placeholders. block: raises TuneforgeError (first places, total, fix) if anything is found.
    """
    _check_mode(mode)
    if mode == "off":
        return list(records), {"mode": "off", "total": 0, "records_scanned": 0, "records_with_pii": 0,
                               "by_type": {}, "locations": [], "locations_truncated": 0,
                               "notices": ["privacy scan off (privacy.pii: off)"]}
    out, hits, n_with = scan(records, columns, redact_values=(mode == "redact"))
    rep = report(hits, mode, len(records), n_with)
    if mode == "block" and hits:
        raise TuneforgeError(block_message(rep))
    return out, rep


__all__ = ["Finding", "Hit", "Placeholders", "PersonBackend", "SpacyPersonBackend", "detect", "detect_many", "redact",
           "scan_records", "scan", "report", "block_message", "texts_of", "path_name", "load_person_backend",
           "set_person_backend", "person_backend", "notices", "MODES", "TYPES"]
