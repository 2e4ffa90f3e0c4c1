"""PII detectors for numbers with structure: phone numbers (validated by `phonenumbers`), card numbers
(Luhn), IBANs (ISO 7064 mod 97), US SSNs and UK NINOs (by their structure) and IP addresses (`ipaddress`).
Each takes a text (and whether it holds digits at all, a cheap pre-check) and yields candidates.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Iterator

import phonenumbers

from .findings import Cand, cand, context


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
NATIONAL_REGIONS = ("GB", "DE", "FR", "IN", "IT", "NL", "AU")  # national numbers written with a leading 0


def phones(text: str, has_digit: bool) -> Iterator[Cand]:
    if not has_digit:
        return
    for m in _PHONE_CAND.finditer(text):
        span = m.group()
        if sum(c.isdigit() for c in span) < 7:
            continue
        found = _phone_in(text, m.start(), span)
        if found:
            yield found


def _phone_in(text: str, offset: int, span: str) -> Cand | None:
    """Try the whole candidate, then with trailing space-separated groups dropped (a count or a year
    may follow the number). Never a piece from the middle or the end of a longer run of digits: the
    tail of a mistyped IBAN or an ISBN is not a phone number."""
    groups = [(g.start(), g.end()) for g in re.finditer(r"\S+", span)]
    for n in range(len(groups), max(0, len(groups) - 3), -1):
        end = groups[n - 1][1]
        score = _phone_score(text, offset, span[:end])
        if score:
            return cand("PHONE", offset, offset + end, score)
    return None


def _phone_score(text: str, start: int, s: str) -> float:
    """0 unless `s` (at `start` in `text`) is a valid phone number written like one; else a score."""
    digits = re.sub(r"\D", "", s)
    intl = s.startswith("+") or s.startswith("00")
    if not 7 <= len(digits) <= 15 or (not intl and _DATE_IN.search(s)) or _DECIMAL.fullmatch(s) \
            or set(digits) <= {"0", "1"}:  # "0100 0000" is a byte
        return 0.0  # a '+' number is never a date; "2024-05-01 12" and "3.14159265" are never phones
    bare = not intl and s.isdigit()
    if bare and not _PHONE_WORDS.search(context(text, start, 45)):
        return 0.0
    if intl:
        return 0.95 if _valid_phone("+" + (digits[2:] if s.startswith("00") else digits), None) else 0.0
    if digits[0] == "0":
        ok = any(_valid_phone(digits, r) for r in NATIONAL_REGIONS)
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


def cards(text: str, n_digits: int) -> Iterator[Cand]:
    if n_digits < 13:
        return
    for m in _CARD.finditer(text):
        s = m.group()
        groups = tuple(len(g) for g in re.split(r"[ \-]", s))
        digits = s.replace(" ", "").replace("-", "")
        if len(groups) > 1 and (groups not in _CARD_GROUPS or len(set(re.findall(r"[ \-]", s))) > 1):
            continue  # real cards are written 4-4-4-4 or 4-6-5 with one kind of separator
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and _luhn(digits):
            yield cand("CREDIT_CARD", m.start(), m.end(), 0.9)


_IBAN_LEN = {"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
             "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
             "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
             "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
             "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
             "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
             "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
             "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20}
_IBAN = re.compile(r"(?<![\w])([A-Za-z]{2})(\d{2})((?:[ \-]?[A-Za-z0-9]){11,30})")


def ibans(text: str, has_digit: bool) -> Iterator[Cand]:
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
            yield cand("IBAN", m.start(), end, 0.95)


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


def ssns(text: str, has_digit: bool) -> Iterator[Cand]:
    if not has_digit:
        return
    for m in _SSN.finditer(text):
        if not m.group(2) and not _SSN_WORDS.search(context(text, m.start(), 30)):
            continue  # nine bare digits are an order number until someone calls them an SSN
        yield cand("US_SSN", m.start(), m.end(), 0.85)


def ninos(text: str, has_digit: bool) -> Iterator[Cand]:
    if not has_digit:
        return
    for m in _NINO.finditer(text):
        yield cand("UK_NINO", m.start(), m.end(), 0.85)


# ---------------------------------------------------------------------------------------------
# IP addresses. Loopback, unspecified addresses and netmasks (255.x) identify nobody: not reported.
_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:|::?)(?:[0-9A-Fa-f]{0,4}:){1,7}"
                   r"(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%[\w.]+)?(?![\w:]|\.\w)")
_VERSION_WORDS = re.compile(r"(?i)(?:\bv|version\s*|release\s*|build\s*)$")


def ips(text: str, has_digit: bool) -> Iterator[Cand]:
    if not has_digit:
        return
    if "." in text:
        for m in _IPV4.finditer(text):
            ip = ipaddress.IPv4Address(m.group())
            if ip.is_loopback or ip.is_unspecified or m.group().startswith("255.") \
                    or _VERSION_WORDS.search(context(text, m.start(), 12)):
                continue
            yield cand("IP_ADDRESS", m.start(), m.end(), 0.9)
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
                yield cand("IP_ADDRESS", m.start(), m.end(), 0.9)
