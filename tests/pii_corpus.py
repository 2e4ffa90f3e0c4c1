"""A seeded, stdlib-only corpus for measuring the PII detectors and the leakage checks.

`planted(per_type)` writes texts with known PII of every type, in many formats and contexts, and
records where each value sits. `clean(n)` writes PII-free text that looks like what training data
holds: prose with numbers and prices, Python code, log lines with timestamps and versions, number
tables, UUIDs and git SHAs, dates that are not birthdays, localhost addresses. `evaluate` scores any
detector on both. Everything is synthetic: names, numbers and keys are random and meaningless.

Rules of the corpus (they are also the detectors' definitions):
- a bare run of digits is a phone number / SSN only next to a word that says so ("tel", "SSN");
  formatted numbers (+44 ..., (415) 555-..., 01 23 45 67 89) stand alone;
- a date is a date of birth only in birth context ("born", "DOB", "date of birth");
- hex strings (hashes, UUIDs) are secrets only after a key word ("token", "secret", "api key").
"""
from __future__ import annotations

import base64
import ipaddress
import json
import random
import re
import string
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import phonenumbers

from tuneforge.data.records import Record

FIRST = ("James Mary Wei Aisha Lukas Chloé Priya Mateo Olga Kwame Yuki Fatima Liam Sofia Arjun Noah Emma "
         "Hannah Omar Ines Pierre Ana Jonas Leila Raj Zoe Diego Mei Tom Sara Ahmed Julia Kofi Nina Ivan Lucía "
         "Amit Grace Hugo Elif").split()
LAST = ("Smith Garcia Müller Chen Okafor Dubois Sharma Rossi Kowalski Nakamura Haddad Johnson Silva Novak Kim "
        "Fischer Martin Patel Brown Nguyen Schmidt Bernard Singh Lopez Jensen Murphy O'Brien Ivanova Tanaka "
        "Mensah Cohen Wright Moreau Das Costa Weber Bianchi Andersen Hughes Reyes").split()
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so no will more what out up into "
         "can do time only about could new other some than them these two may first then any like my now over "
         "such our man me even most made after also did many before must through back years where much your way "
         "well down should because each just those people how too little state good very make world still own "
         "see men work long get here between both life being under never day same another know while last might "
         "us great old year off come since against go came right used take three states himself few house use "
         "during without again place around however home small found thought went say part once general high "
         "upon school every does got united left number course war until always away something fact though water "
         "less public put think almost hand enough far took head yet government system better set told nothing "
         "night end why called didn eyes find going look asked later knew point next program city business give "
         "group toward young days let room president side social given present several order national possible "
         "rather second face per among form important often things looked early white case john become large big "
         "need four within felt along children saw best church ever least power development light thing seemed "
         "family interest want members mind country area others done turned although open problem god service "
         "certain kind thus began door help means sense whole matter perhaps itself york times law human line "
         "above name example action company local show whether five history gave today either act feet across "
         "taken past quite anything seen having death experience body word half really week field car words "
         "already themselves information tell together college shall money period held keep sure probably free "
         "seems political real behind cannot miss question air office making brought whose special major heard "
         "problems federal became study ago moment available known result street economic boy reason change "
         "position south board individual job society areas west close turn love community true court force full "
         "seem am wife age policy voice center sound stood model dataset training loss accuracy epoch learning "
         "rate batch layer token vector gradient network output input value label score metric validation test "
         "sample feature weight function memory server client request response cache queue latency throughput "
         "release version branch commit merge review deploy cluster node storage backup invoice shipment order "
         "customer product price discount warehouse supplier contract meeting budget forecast quarter revenue "
         "report garden river mountain coffee bread music movie story chapter author museum bridge harbor island "
         "weather summer winter morning evening kitchen window garden forest village market teacher student").split()
STREETS = ("Main Oak Maple Elm Washington Lake Hill Park Cedar Sunset Pine Church Mill High Station Victoria "
           "Baker Queen King Green Spring Willow River Chestnut Highland Jefferson Lincoln Madison").split()
STREET_TYPES = ("Street St St. Avenue Ave Ave. Road Rd Boulevard Blvd Lane Ln Drive Dr Court Way Place Terrace "
                "Close Crescent Gardens").split()
TOWNS = ("London Leeds Manchester Bristol Glasgow Cardiff Oxford York Brighton Norwich Springfield Austin Denver "
         "Portland Boston Chicago Seattle Madison Dayton Tulsa").split()
UK_AREAS = ("SW N E W NW SE EC WC M B LS G EH CF BS L NE OX CB BN NR YO S DN PL EX KT CR TW").split()
BASE62 = string.ascii_letters + string.digits
INWARD = "ABDEFGHJLNPQRSTUWXYZ"


@dataclass(frozen=True)
class Sample:
    """A text and the places of the PII planted in it: (type, start, end)."""

    text: str
    spans: tuple[tuple[str, int, int], ...]


# ---------------------------------------------------------------------------------------------
# values. Each returns (value, (start, end) of the sensitive part or None for all, needs a key word)
Value = tuple[str, "tuple[int, int] | None", bool]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def email(rng: random.Random) -> Value:
    first, last = rng.choice(FIRST).lower(), rng.choice(LAST).lower().replace("'", "")
    first = first.replace("é", "e").replace("í", "i").replace("ü", "u")
    last = last.replace("ü", "u")
    local = rng.choice([f"{first}.{last}", f"{first}{last}{rng.randint(1, 99)}", f"{first[0]}_{last}",
                        f"{first}+{rng.choice(['news', 'work', 'shop'])}", f"{last}.{first}-{rng.randint(1, 9)}",
                        f"{first.upper()}.{last.capitalize()}"])
    domain = rng.choice(["example.com", "gmail.com", "mail.co.uk", "uni-heidelberg.de", "dept.cs.example.org",
                         "company.io", "posteo.net", "yahoo.fr", "hospital.health", "x.ai"])
    return f"{local}@{domain}", None, False


def _valid(number: str) -> bool:
    return phonenumbers.is_valid_number(phonenumbers.parse(number, None))


def phone(rng: random.Random) -> Value:
    country = rng.choice(["US", "US", "GB", "DE", "FR", "IN"])
    make = {"US": _us_phone, "GB": _gb_phone, "DE": _de_phone, "FR": _fr_phone, "IN": _in_phone}[country]
    value, bare = make(rng)
    return value, None, bare


def _retry(rng: random.Random, cc: str, make: Callable[[], str]) -> str:
    while True:
        nsn = make()
        if _valid(f"+{cc}{nsn}"):
            return nsn


def _us_phone(rng: random.Random) -> tuple[str, bool]:
    areas = ["201", "212", "213", "305", "312", "404", "415", "503", "512", "617", "646", "702", "718", "773",
             "805", "818", "917", "206", "303", "480"]
    n = _retry(rng, "1", lambda: rng.choice(areas) + str(rng.randint(200, 999)) + _digits(rng, 4))
    a, b, c = n[:3], n[3:6], n[6:]
    fmts = [f"+1 {a} {b} {c}", f"+1{n}", f"+1-{a}-{b}-{c}", f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}",
            f"{a} {b} {c}", f"1-{a}-{b}-{c}", f"+1 ({a}) {b}-{c}", f"({a}){b}-{c}"]
    i = rng.randrange(len(fmts) + 1)
    return (n, True) if i == len(fmts) else (fmts[i], False)


def _gb_phone(rng: random.Random) -> tuple[str, bool]:
    kind = rng.choice(["london", "mobile", "city"])
    if kind == "london":
        n = _retry(rng, "44", lambda: "20" + rng.choice("378") + _digits(rng, 7))
        a, b, c = n[:2], n[2:6], n[6:]
        fmts = [f"+44 {a} {b} {c}", f"0{a} {b} {c}", f"(0{a}) {b} {c}", f"+44 (0){a} {b} {c}", f"+44{n}",
                f"0044 {a} {b} {c}", f"0{a}-{b}-{c}"]
    elif kind == "mobile":
        n = _retry(rng, "44", lambda: "7" + rng.choice("4589") + _digits(rng, 8))
        fmts = [f"0{n[:4]} {n[4:]}", f"+44 {n[:4]} {n[4:]}", f"+44{n}", f"0{n[:4]}-{n[4:]}", f"0{n[:4]} {n[4:7]} {n[7:]}"]
    else:
        n = _retry(rng, "44", lambda: rng.choice(["161", "121", "113", "117", "131"]) + _digits(rng, 7))
        fmts = [f"0{n[:3]} {n[3:6]} {n[6:]}", f"+44 {n[:3]} {n[3:6]} {n[6:]}", f"(0{n[:3]}) {n[3:6]} {n[6:]}"]
    i = rng.randrange(len(fmts) + 1)
    return (f"0{n}", True) if i == len(fmts) else (fmts[i], False)


def _de_phone(rng: random.Random) -> tuple[str, bool]:
    if rng.random() < 0.5:
        n = _retry(rng, "49", lambda: rng.choice(["30", "89", "40", "69", "221"]) + _digits(rng, 7 if rng.random() < .3 else 8))
        k = 3 if n.startswith("221") else 2
        a, b = n[:k], n[k:]
        fmts = [f"+49 {a} {b}", f"0{a} {b}", f"0{a}-{b}", f"0{a}/{b}", f"(0{a}) {b}", f"+49 (0){a} {b}", f"+49{n}",
                f"0{a} {b[:3]} {b[3:]}"]
    else:
        n = _retry(rng, "49", lambda: rng.choice(["151", "152", "160", "170", "171", "176"]) + _digits(rng, 8))
        a, b = n[:3], n[3:]
        fmts = [f"0{a} {b}", f"+49 {a} {b}", f"+49{n}", f"0{a}-{b}", f"0{a}/{b}", f"+49 {a} {b[:4]} {b[4:]}"]
    i = rng.randrange(len(fmts) + 1)
    return (f"0{n}", True) if i == len(fmts) else (fmts[i], False)


def _fr_phone(rng: random.Random) -> tuple[str, bool]:
    n = _retry(rng, "33", lambda: rng.choice("1234567") + _digits(rng, 8))
    p = [n[0]] + [n[i:i + 2] for i in range(1, 9, 2)]
    fmts = ["0" + " ".join(p), "0" + ".".join(p), "0" + "-".join(p), "+33 " + " ".join(p), f"+33{n}",
            "+33 (0)" + " ".join(p), "0033 " + " ".join(p)]
    i = rng.randrange(len(fmts) + 1)
    return (f"0{n}", True) if i == len(fmts) else (fmts[i], False)


def _in_phone(rng: random.Random) -> tuple[str, bool]:
    if rng.random() < 0.75:
        n = _retry(rng, "91", lambda: rng.choice("6789") + _digits(rng, 9))
        fmts = [f"+91 {n[:5]} {n[5:]}", f"+91-{n}", f"+91{n}", f"0{n[:5]} {n[5:]}", f"{n[:5]} {n[5:]}",
                f"+91 {n[:4]} {n[4:7]} {n[7:]}", f"0{n[:5]}-{n[5:]}"]
    else:
        n = _retry(rng, "91", lambda: "11" + rng.choice("23456") + _digits(rng, 7))
        fmts = [f"011-{n[2:]}", f"+91 11 {n[2:6]} {n[6:]}", f"011 {n[2:6]} {n[6:]}", f"+91-11-{n[2:]}"]
    i = rng.randrange(len(fmts) + 1)
    return (n if n[0] in "6789" else f"0{n}", True) if i == len(fmts) else (fmts[i], False)


def luhn_complete(body: str) -> str:
    """Append the Luhn check digit."""
    for d in "0123456789":
        total = 0
        for i, ch in enumerate(reversed(body + d)):
            x = int(ch)
            if i % 2:
                x = x * 2 - 9 if x > 4 else x * 2
            total += x
        if total % 10 == 0:
            return body + d
    raise AssertionError("unreachable")


def credit_card(rng: random.Random) -> Value:
    brand = rng.choice(["visa", "visa", "mc", "mc2", "amex", "discover"])
    prefix, length = {"visa": ("4", 16), "mc": (str(rng.randint(51, 55)), 16), "mc2": (str(rng.randint(2221, 2720)), 16),
                      "amex": (rng.choice(["34", "37"]), 15), "discover": ("6011", 16)}[brand]
    num = luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))
    groups = [num[:4], num[4:10], num[10:]] if length == 15 else [num[i:i + 4] for i in range(0, 16, 4)]
    sep = rng.choice(["", " ", "-", " "])
    return sep.join(groups), None, False


_BBAN = {"DE": "n18", "GB": "a4n14", "FR": "n10c11n2", "ES": "n20", "NL": "a4n10", "IT": "a1n10c12", "CH": "n5c12",
         "BE": "n12", "PL": "n24", "AT": "n16", "IE": "a4n14", "PT": "n21", "SE": "n20", "NO": "n11", "DK": "n14"}


def iban_check(country: str, bban: str) -> str:
    """ISO 13616 check digits."""
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{98 - num % 97:02d}"


def iban(rng: random.Random) -> Value:
    country = rng.choice(sorted(_BBAN))
    bban = ""
    for kind, count in re.findall(r"([nac])(\d+)", _BBAN[country]):
        pool = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[kind]
        bban += "".join(rng.choice(pool) for _ in range(int(count)))
    compact = country + iban_check(country, bban) + bban
    style = rng.choice(["compact", "spaced", "spaced", "lower"])
    if style == "spaced":
        return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4)), None, False
    return (compact.lower() if style == "lower" else compact), None, False


def us_ssn(rng: random.Random) -> Value:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    a, g, s = f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"
    style = rng.choice(["-", "-", " ", ""])
    return style.join([a, g, s]), None, style == ""


def uk_nino(rng: random.Random) -> Value:
    while True:
        pre = rng.choice("ABCEGHJKLMNOPRSTWXYZ") + rng.choice("ABCEGHJKLMNPRSTWXYZ")
        if pre not in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
            break
    d = _digits(rng, 6)
    suffix = rng.choice("ABCD")
    return rng.choice([f"{pre} {d[:2]} {d[2:4]} {d[4:]} {suffix}", f"{pre}{d}{suffix}", f"{pre} {d} {suffix}"]), None, False


def ip_address(rng: random.Random) -> Value:
    if rng.random() < 0.55:
        first = rng.choice([rng.randint(1, 126), rng.randint(128, 223), 10, 192, 172])
        ip = f"{first}." + ".".join(str(rng.randint(0, 255)) for _ in range(2)) + f".{rng.randint(1, 254)}"
        style = rng.choice(["plain", "plain", "port", "url"])
        if style == "port":
            return f"{ip}:{rng.choice([22, 443, 8080, 5432])}", (0, len(ip)), False
        if style == "url":
            return f"http://{ip}/admin", (7, 7 + len(ip)), False
        return ip, None, False
    groups = [rng.getrandbits(16) if rng.random() < 0.7 else 0 for _ in range(8)]
    groups[0] = rng.choice([0x2001, 0x2a02, 0xfe80, 0x2607, 0x2400])
    addr = ipaddress.IPv6Address(int("".join(f"{g:04x}" for g in groups), 16))
    text = addr.exploded if rng.random() < 0.3 else str(addr)
    if rng.random() < 0.2:
        return f"[{text}]:443", (1, 1 + len(text)), False
    return text, None, False


def url_credentials(rng: random.Random) -> Value:
    scheme = rng.choice(["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp", "https", "ftp", "smtp"])
    user = rng.choice(["admin", "root", "app_user", rng.choice(FIRST).lower().replace("é", "e"), "svc-etl", ""])
    pw = "".join(rng.choice(BASE62 + "!$%^&*-_.~+=") for _ in range(rng.randint(6, 20)))
    host = rng.choice(["db.internal.example.com", "10.0.3.7", "cache.example.net", "mq.corp.example", "localhost"])
    port = rng.choice(["", ":5432", ":6379", ":3306", ":5672"])
    start = len(scheme) + 3
    return f"{scheme}://{user}:{pw}@{host}{port}/{rng.choice(['app', 'prod', '', 'queue'])}", \
        (start, start + len(user) + 1 + len(pw)), False


def _rand(rng: random.Random, n: int, pool: str = BASE62) -> str:
    return "".join(rng.choice(pool) for _ in range(n))


def secret(rng: random.Random) -> Value:
    kind = rng.choice(["aws", "aws_secret", "ghp", "github_pat", "slack", "openai", "stripe", "google", "pem", "jwt",
                       "random", "random", "password", "hf"])
    if kind == "aws":
        return "AKIA" + _rand(rng, 16, string.ascii_uppercase + string.digits), None, False
    if kind == "aws_secret":
        return _rand(rng, 40, BASE62 + "/+"), None, False
    if kind == "ghp":
        return "ghp_" + _rand(rng, 36), None, False
    if kind == "github_pat":
        return f"github_pat_{_rand(rng, 22)}_{_rand(rng, 59)}", None, False
    if kind == "slack":
        return f"xox{rng.choice('bpa')}-{_digits(rng, 12)}-{_digits(rng, 13)}-{_rand(rng, 24)}", None, False
    if kind == "openai":
        return rng.choice(["sk-", "sk-proj-"]) + _rand(rng, rng.randint(40, 64), BASE62 + "_-"), None, False
    if kind == "stripe":
        return rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + _rand(rng, rng.randint(24, 99)), None, False
    if kind == "google":
        return "AIza" + _rand(rng, 35, BASE62 + "_-"), None, False
    if kind == "hf":
        return "hf_" + _rand(rng, 34), None, False
    if kind == "pem":
        label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
        body = "\n".join(_rand(rng, 64, BASE62 + "+/") for _ in range(rng.randint(3, 8)))
        return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----", None, False
    if kind == "jwt":
        def b64(obj: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
        head = b64({"alg": "HS256", "typ": "JWT"})
        body = b64({"sub": _digits(rng, 8), "name": _name(rng), "iat": rng.randint(1_500_000_000, 1_800_000_000)})
        return f"{head}.{body}.{_rand(rng, 43, BASE62 + '_-')}", None, False
    if kind == "password":
        pw = _rand(rng, rng.randint(4, 8), string.ascii_letters) + _digits(rng, rng.randint(1, 3)) + \
            rng.choice(["", "!", "#", "&x", "_"]) + _rand(rng, rng.randint(3, 5))  # 8+ characters, as policies ask
        lead = rng.choice(['password = "', "password: ", "my password is ", "PASSWORD=", "pwd: ", "passwd='",
                           "the wifi password is ", '"password": "'])
        tail = {'"': '"', "'": "'"}.get(lead[-1], "")
        return f"{lead}{pw}{tail}", (len(lead), len(lead) + len(pw)), False
    return _rand(rng, rng.randint(24, 48)), None, False


_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(1935, 2012), rng.randint(1, 12), rng.randint(1, 28)
    mon = _MONTHS[m - 1]
    return rng.choice([f"{d:02d}/{m:02d}/{y}", f"{m}/{d}/{y % 100:02d}", f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}",
                       f"{mon} {d}, {y}", f"{d} {mon} {y}", f"{d}th {mon} {y}", f"{mon[:3]} {d} {y}",
                       f"{d:02d}-{m:02d}-{y}", f"{d} {mon[:3]} {y}", f"{d}th of {mon} {y}"])


def date_of_birth(rng: random.Random) -> Value:
    date = _date(rng)
    lead = rng.choice(["born on ", "Born: ", "DOB: ", "D.O.B. ", "date of birth: ", "Date of Birth ", "birthdate ",
                       "Birthday: ", "I was born in Lyon on ", "dob=", "born ", "was born on ", "DOB "])
    return f"{lead}{date}", (len(lead), len(lead) + len(date)), False


def postal_address(rng: random.Random) -> Value:
    if rng.random() < 0.35:
        area = rng.choice(UK_AREAS)
        district = str(rng.randint(1, 20)) if len(area) == 2 else str(rng.randint(1, 9)) + rng.choice(["", "A", "", ""])
        pc = f"{area}{district} {rng.randint(0, 9)}{rng.choice(INWARD)}{rng.choice(INWARD)}"
        if pc[-2:] in ("GB", "MB", "KB", "TB", "PB"):
            pc = pc[:-1] + "A"
        lead = rng.choice(["", f"{rng.choice(TOWNS)} ", "postcode ", f"{rng.choice(TOWNS)}, "])
        return f"{lead}{pc}", (len(lead), len(lead) + len(pc)), False
    num = rng.choice([str(rng.randint(1, 9999)), str(rng.randint(1, 400)) + rng.choice("ABC")])
    name = rng.choice(STREETS + [f"{rng.randint(1, 99)}th", "Martin Luther King Jr", "W 34th", "North Oak"])
    street = f"{num} {name} {rng.choice(STREET_TYPES)}"
    street += rng.choice(["", "", f", Apt {rng.randint(1, 40)}{rng.choice('AB')}", f", Suite {rng.randint(100, 900)}"])
    if rng.random() < 0.3:
        street += f", {rng.choice(TOWNS)}, {rng.choice(['IL', 'TX', 'CA', 'NY', 'OR', 'MA'])} {_digits(rng, 5)}"
    return street, None, False


GENERATORS: dict[str, Callable[[random.Random], Value]] = {
    "EMAIL": email, "PHONE": phone, "CREDIT_CARD": credit_card, "IBAN": iban, "US_SSN": us_ssn, "UK_NINO": uk_nino,
    "IP_ADDRESS": ip_address, "URL_CREDENTIALS": url_credentials, "SECRET": secret, "DATE_OF_BIRTH": date_of_birth,
    "POSTAL_ADDRESS": postal_address}

# ---------------------------------------------------------------------------------------------
# contexts. {v} is the value; {n} a random person name.
GENERIC = [
    "{v}", "Contact: {v}", "Please update the record to {v} before Friday.", '{{"user_id": 4821, "value": "{v}"}}',
    "id,name,value\n17,{n},{v}", "2024-05-03 10:22:13 INFO saved field={v} status=ok",
    "User: can you check {v} for me?\nAssistant: Sure, one moment.", "Note to self — {v} (from the call with {n}).",
    "<td>{v}</td>", "as discussed, {v}; thanks!", "RE: your request\n\n{v}\n\nBest, {n}", "{n}: {v}",
    "The form lists {v}, which looks right to me.", "- {v}\n- pending review", "[{v}]", "({v})",
    "Ticket #5531: customer gave {v} and asked for a callback.", "'{v}'", "value:\t{v}\n",
]
SPECIFIC = {
    "EMAIL": ["Email {n} at {v}.", "mailto:{v}", "Reply-To: <{v}>", "send it to {v}, cc the team", "From: {n} <{v}>"],
    "PHONE": ["Call me at {v}.", "Tel: {v}", "Phone: {v}", "my mobile is {v}", "reach the desk on {v} from 9 to 5",
              "WhatsApp {v}", "Fax {v}", "phone number {v}", "call {n} on {v} tomorrow", "tel.: {v}"],
    "CREDIT_CARD": ["card number {v} exp 04/27", "paid with {v}", "CC: {v}", "Card: {v} (Visa)"],
    "IBAN": ["IBAN: {v}", "please wire it to {v} by Monday", "account {v}", "Bank details: {n}, {v}"],
    "US_SSN": ["SSN: {v}", "social security number {v}", "SSN {v} on file", "her ssn is {v}"],
    "UK_NINO": ["NI number {v}", "National Insurance: {v}", "NINO {v}"],
    "IP_ADDRESS": ["client {v} connected", "Failed password for root from {v} port 22 ssh2", "X-Forwarded-For: {v}",
                   "ping {v}", "GET /index.html from {v} 200"],
    "URL_CREDENTIALS": ["DATABASE_URL={v}", "connect with {v}", "git clone {v}", "url: {v}"],
    "SECRET": ["export TOKEN={v}", "token: {v}", "Authorization: Bearer {v}", 'api_key = "{v}"', "use {v} for the API",
               "secrets:\n  key: {v}\n"],
    "DATE_OF_BIRTH": ["Patient {n}, {v}.", "{n} ({v})", "Profile — {v}, lives in Leeds"],
    "POSTAL_ADDRESS": ["Ship to {v}.", "Our office: {v}", "{n}, {v}", "Address: {v}", "deliver to {v} please"],
}
NEEDS_WORD = {"PHONE": SPECIFIC["PHONE"], "US_SSN": SPECIFIC["US_SSN"]}


def planted(per_type: int = 200, seed: int = 0, types: Iterable[str] = tuple(GENERATORS)) -> list[Sample]:
    """`per_type` texts for each type, each with one planted value in a random context."""
    rng = random.Random(seed)
    out = []
    for kind in types:
        for _ in range(per_type):
            value, part, bare = GENERATORS[kind](rng)
            contexts = NEEDS_WORD[kind] if bare else GENERIC + SPECIFIC[kind] * 2
            out.append(_fill(rng, kind, rng.choice(contexts), value, part))
    return out


def _fill(rng: random.Random, kind: str, template: str, value: str, part: tuple[int, int] | None) -> Sample:
    head, tail = template.split("{v}")
    head, tail = head.replace("{n}", _name(rng)), tail.replace("{n}", _name(rng))
    head, tail = head.replace("{{", "{").replace("}}", "}"), tail.replace("{{", "{").replace("}}", "}")
    s, e = part if part else (0, len(value))
    return Sample(head + value + tail, ((kind, len(head) + s, len(head) + e),))


# ---------------------------------------------------------------------------------------------
# PII-free text
def prose(rng: random.Random, n_words: int) -> str:
    """Sentences of random words (Zipf-weighted), capitalised and punctuated."""
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(WORDS))]
    words = rng.choices(WORDS, weights, k=n_words)
    out, i = [], 0
    while i < n_words:
        k = min(n_words - i, rng.randint(6, 16))
        sent = words[i:i + k]
        sent[0] = sent[0].capitalize()
        if k > 8 and rng.random() < 0.4:
            sent[k // 2] += ","
        out.append(" ".join(sent) + rng.choice([".", ".", ".", "?", "!"]))
        i += k
    return " ".join(out)


def _sha(rng: random.Random, n: int = 40) -> str:
    return _rand(rng, n, "0123456789abcdef")


def _clean_prose(rng: random.Random) -> str:
    facts = [f"{rng.randint(2, 95)}%", f"${rng.randint(1, 9)},{rng.randint(100, 999)}.{rng.randint(10, 99)}",
             f"{rng.randint(2, 40)} releases", f"in {rng.randint(1990, 2025)}", f"€{rng.randint(5, 500)},{rng.randint(10, 99)}",
             f"{rng.randint(10, 999)} ms", f"Q{rng.randint(1, 4)} {rng.randint(2019, 2026)}",
             f"{rng.randint(1, 12)}.{rng.randint(0, 9)} million users", f"{rng.randint(100, 99999):,} units",
             f"page {rng.randint(1, 400)}", f"{rng.randint(2, 48)} GB of RAM", f"the PS5 {rng.choice([4, 8])}GB",
             f"{rng.randint(640, 3840)}x{rng.randint(480, 2160)}", f"room {rng.randint(100, 999)}",
             f"ISBN 978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}"]
    return f"{prose(rng, rng.randint(6, 14))} {rng.choice(facts)} {prose(rng, rng.randint(4, 10))}"


def _clean_code(rng: random.Random) -> str:
    name = rng.choice(["load_batch", "train_step", "compute_loss", "parse_config", "HTTPServerRequestHandler",
                       "getUserAccountBalance", "TokenizerFastWrapper", "normalize_whitespace"])
    n = rng.randint(2, 512)
    return rng.choice([
        f"def {name}(x, lr={rng.choice(['1e-3', '5.0e-4', '0.01'])}):\n    for i in range({n}):\n        x = x * 0.{rng.randint(1, 99)}\n    return x",
        f"self.assertEqual(result.shape, ({n}, {rng.randint(1, 64)}))",
        f"password = request.form['password']\ntoken = self.tokenizer(text, max_length={n})",
        f"api_key = os.environ['API_KEY']\nclient = Client(api_key=api_key, timeout={rng.randint(5, 60)})",
        f"if ret < 0:\n    raise ValueError(f'bad value {{ret}} at step {n}')",
        f"x = torch.randn({n}, {rng.randint(2, 256)}, dtype=torch.bfloat16)  # shape (B, T)",
        f"assert abs(loss - {rng.random():.6f}) < 1e-5, loss",
        f"import numpy as np\narr = np.arange({n}).reshape(-1, {rng.choice([2, 4, 8])})",
        f"{name}_{_sha(rng, 8)} = {rng.randint(1000000, 99999999)}",
        f"CACHE_DIR = '/home/user/.cache/{name}/v{rng.randint(1, 9)}'",
        f"static constexpr std::size_t kMaxItems = {n}; std::vector<int> v(kMaxItems);",
        f"SELECT id, total FROM orders WHERE created_at > '2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}' LIMIT {n};",
        f"color: #{_sha(rng, 6)}; margin: {rng.randint(0, 40)}px;",
        f"pip install torch=={rng.randint(1, 2)}.{rng.randint(0, 13)}.{rng.randint(0, 3)} transformers>=4.{rng.randint(30, 50)}",
    ])


def _clean_log(rng: random.Random) -> str:
    ts = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:" \
         f"{rng.randint(0, 59):02d},{rng.randint(0, 999):03d}"
    return rng.choice([
        f"{ts} INFO [worker-{rng.randint(1, 16)}] processed {rng.randint(1, 99999)} items in {rng.random() * 9:.2f}s "
        f"(v{rng.randint(1, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 9)})",
        f"{ts} WARN listening on 127.0.0.1:{rng.randint(1024, 65535)}, bind 0.0.0.0:{rng.randint(1024, 65535)}",
        f"{ts} ERROR request_id={uuid.UUID(int=rng.getrandbits(128), version=4)} status=500 latency_ms={rng.randint(1, 9999)}",
        f"{ts} DEBUG cache hit key=sha256:{_sha(rng, 64)} size={rng.randint(1, 10**6)}",
        f"[{rng.randint(1_600_000_000, 1_800_000_000)}.{rng.randint(100, 999)}] kernel: eth0 link up {rng.choice([100, 1000])} Mbps",
        f"{ts} INFO epoch={rng.randint(1, 50)} step={rng.randint(1, 10**5)} loss={rng.random() * 3:.4f} lr={rng.random() * 1e-3:.2e}",
        f"{ts} INFO build {rng.randint(1000, 99999)} finished: {rng.randint(1, 900)} passed, {rng.randint(0, 9)} failed",
        f"{ts} INFO mac=0a:1b:2c:{rng.randint(10, 99)}:{rng.randint(10, 99)}:5f interface up",
    ])


def _clean_table(rng: random.Random) -> str:
    rows = []
    for _ in range(rng.randint(2, 5)):
        cells = [str(rng.randint(0, 10 ** rng.randint(1, 7))) if rng.random() < .6 else f"{rng.random() * 1000:.2f}"
                 for _ in range(rng.randint(3, 6))]
        rows.append(rng.choice(["| " + " | ".join(cells) + " |", ",".join(cells), "\t".join(cells), "  ".join(cells)]))
    return "\n".join(rows)


def _clean_ids(rng: random.Random) -> str:
    u = uuid.UUID(int=rng.getrandbits(128), version=4)
    return rng.choice([
        f"Fixed in commit {_sha(rng)} (see PR #{rng.randint(10, 9999)}).",
        f"The job {u} failed after {rng.randint(2, 90)} minutes; retrying.",
        f"Merged {_sha(rng, 7)} into main and tagged v{rng.randint(0, 3)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}.",
        f"docker pull ghcr.io/example/app@sha256:{_sha(rng, 64)}",
        f"Order {rng.randint(10**6, 10**9)} shipped on {rng.randint(1, 28)} {rng.choice(_MONTHS)} {rng.randint(2015, 2025)}.",
        f"Invoice INV-{rng.randint(2019, 2025)}-{rng.randint(1, 99999):05d} is due on {rng.randint(1, 12)}/{rng.randint(1, 28)}/{rng.randint(2019, 2026)}.",
        f"The file {_sha(rng, 32)}.parquet is {rng.randint(1, 900)} MB.",
        f"Coordinates {rng.uniform(-80, 80):.4f}, {rng.uniform(-170, 170):.4f} were logged.",
        f"Upgrade to Python 3.{rng.randint(8, 13)}.{rng.randint(0, 9)} and numpy {rng.randint(1, 2)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}.",
        f"Tracking code 1Z{_rand(rng, 6, string.ascii_uppercase + string.digits)}{rng.randint(10**9, 10**10 - 1)}.",
        f"Model checkpoint step-{rng.randint(100, 90000)} scored {rng.random():.3f} on {rng.randint(100, 9999)} samples.",
    ])


def _clean_dates(rng: random.Random) -> str:
    return rng.choice([
        f"The meeting moved to {_date(rng)}.", f"Released on {_date(rng)} after a long beta.",
        f"Contract signed {_date(rng)}, renewal due {_date(rng)}.", f"Since {_date(rng)} the office has been closed.",
        f"Deadline: {_date(rng)} at 17:00.", f"Between {_date(rng)} and {_date(rng)} sales rose {rng.randint(2, 60)}%.",
    ])


def _clean_web(rng: random.Random) -> str:
    return rng.choice([
        f"See https://example.com/search?q=deep+learning&page={rng.randint(2, 40)}&utm_source=newsletter for more.",
        f"@{rng.choice(FIRST).lower()}_{rng.randint(1, 99)} thanks, the fix is in #{rng.randint(100, 9999)}",
        f"Use the @property decorator; see docs.python.org/3/library/functions.html#property (section {rng.randint(1, 9)}.{rng.randint(1, 9)}).",
        f"Open {rng.randint(9, 11)}:30-{rng.randint(12, 18)}:45, {rng.randint(1, 9)} days a week, {rng.randint(2015, 2020)}-{rng.randint(2021, 2026)}.",
        f"Final score {rng.randint(0, 5)}-{rng.randint(0, 5)}; attendance {rng.randint(1, 99)},{rng.randint(100, 999)},{rng.randint(100, 999)}.",
        f"pi = 3.14159265358979; e = 2.718281828459045; n = {rng.randint(10**9, 10**12):,}",
        f"Call the function twice; the number {rng.randint(2, 9)} appears {rng.randint(10, 99)} times in row {rng.randint(100, 999)}.",
        f"Flight {rng.choice(['BA', 'LH', 'AF'])}{rng.randint(100, 9999)} departs at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} from gate {rng.choice('ABC')}{rng.randint(1, 60)}.",
        f"Reset your password via the link; tokens expire after {rng.randint(5, 60)} minutes.",
        f"The SSN field is optional and the phone field accepts digits only ({rng.randint(7, 15)} max).",
        f"Route {rng.randint(1, 99)} and I-{rng.randint(5, 95)} are closed near exit {rng.randint(1, 300)}.",
        f"Temperature {rng.uniform(-10, 40):.1f} °C, humidity {rng.randint(10, 99)}%, pressure {rng.randint(980, 1040)} hPa.",
    ])


CLEAN_KINDS: dict[str, Callable[[random.Random], str]] = {
    "prose": _clean_prose, "code": _clean_code, "log": _clean_log, "table": _clean_table, "ids": _clean_ids,
    "dates": _clean_dates, "web": _clean_web}


def clean(n: int = 6000, seed: int = 1) -> list[str]:
    """`n` PII-free texts, evenly drawn from prose, code, logs, number tables, ids, plain dates, web text."""
    rng = random.Random(seed)
    kinds = list(CLEAN_KINDS.values())
    return [kinds[i % len(kinds)](rng) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# scoring
Detector = Callable[[str], Sequence[tuple[str, int, int]]]


def evaluate(detector: Detector, samples: Sequence[Sample], clean_texts: Sequence[str]) -> dict:
    """Recall per type (a planted span counts when findings of its type cover all of it) and false
    positives per 10k whitespace tokens on the PII-free texts. `misses` is for debugging only."""
    planted_n: dict[str, int] = {}
    found_n: dict[str, int] = {}
    misses: list[tuple[str, str]] = []
    for s in samples:
        hits = detector(s.text)
        for kind, start, end in s.spans:
            planted_n[kind] = planted_n.get(kind, 0) + 1
            covered = set()
            for t, a, b in hits:
                if t == kind:
                    covered.update(range(max(a, start), min(b, end)))
            if len(covered) == end - start:
                found_n[kind] = found_n.get(kind, 0) + 1
            else:
                misses.append((kind, s.text))
    fp_by_type: dict[str, int] = {}
    fp_examples: list[tuple[str, str]] = []
    tokens = 0
    for text in clean_texts:
        tokens += len(text.split())
        for t, a, b in detector(text):
            fp_by_type[t] = fp_by_type.get(t, 0) + 1
            fp_examples.append((t, text[a:b]))
    fp = sum(fp_by_type.values())
    return {"recall": {k: found_n.get(k, 0) / n for k, n in planted_n.items()}, "planted": planted_n,
            "fp": fp, "tokens": tokens, "fp_per_10k": fp * 10_000 / max(tokens, 1), "fp_by_type": fp_by_type,
            "misses": misses, "fp_examples": fp_examples}


# ---------------------------------------------------------------------------------------------
# records for benchmarks
def records(n: int, pii_rate: float = 0.03, seed: int = 0, file: str = "bench.jsonl") -> list[Record]:
    """`n` short records with a "text" field; about `pii_rate` of them carry one planted value."""
    rng = random.Random(seed)
    n_pii = int(n * pii_rate)
    pii = planted(per_type=n_pii // len(GENERATORS) + 1, seed=seed + 1)
    rng.shuffle(pii)
    kinds = list(CLEAN_KINDS.values())
    texts = [s.text for s in pii[:n_pii]]
    texts += [rng.choice(kinds)(rng) if rng.random() < 0.3 else prose(rng, rng.randint(8, 40)) for _ in range(n - n_pii)]
    rng.shuffle(texts)
    return [Record({"text": t, "label": rng.choice(["pos", "neg"])}, file, i + 1) for i, t in enumerate(texts)]
