"""Cleaning: a :class:`RawLead` becomes a normalised :class:`Lead`, or a :class:`Rejection` with the reason.

Pure functions, no I/O. What is repaired (full-width characters, a missing country code, ``gmial.com``) is
kept and noted in :attr:`Lead.notes`; what is merely wrong (an invalid phone next to a good e-mail) is dropped
with a note; what is junk is refused with one line a person can act on (:data:`Rejection.reason`):

- ``created_at`` without a time zone, or in the future (beyond :data:`CLOCK_SKEW`);
- a test or junk name (``test``, ``asdf``, ``123``, a keyboard mash, ``测试``);
- a placeholder phone (one digit repeated, ``12345678901``);
- a disposable or placeholder e-mail domain (``mailinator.com``, ``example.com``);
- nothing contactable (no valid phone, no valid e-mail) and no known ``customer_id``.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import phonenumbers
from rapidfuzz.distance import OSA

from cloud.leads.model import Lead, RawLead, Rejection

#: how far in the future a created_at may be before it is refused: source clocks drift a little
CLOCK_SKEW = timedelta(minutes=5)

_SPACES = re.compile(r"\s+")
# everything that is not a letter or a digit in any script (``\W`` keeps ``_``, hence the explicit one)
_NOT_WORD = re.compile(r"[\W_]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_APOSTROPHES_HYPHENS = "['\u2019-]"
_NAME_PARTS = re.compile(f"({_APOSTROPHES_HYPHENS})")
_NON_DIGIT = re.compile(r"\D")
_LATIN_WORD = re.compile(rf"[^\W\d_]+(?:{_APOSTROPHES_HYPHENS}[^\W\d_]+)*")

# Honorifics carry no identity; they only go out of ``name_key``, the displayed name keeps them.
_LATIN_HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "mister"})
_CJK_HONORIFICS = ("先生", "女士", "小姐", "太太", "夫人", "老师", "同学")

# name keys that are junk on their own (compared after case folding and punctuation removal)
_JUNK_NAMES = frozenset(
    {
        "test", "testing", "tester", "testuser", "testtest", "demo", "sample", "dummy", "fake", "foo",
        "bar", "foobar", "xxx", "xx", "x", "abc", "abcd", "abcde", "na", "none", "null", "nil", "unknown",
        "anonymous", "noname", "name", "asdf", "qwer", "qwerty", "zxcv", "aaa",
        "测试", "测试用户", "测试人员", "无", "无名", "匿名", "不详", "未知", "某某", "张三", "李四", "王五",
        "哈哈", "啊啊",
    }
)  # fmt: skip
# Runs along a keyboard row are typed, not named ("asdf", "hjkl", "zxcv"): four keys on the vowel-poor rows,
# five on the top row, whose four-runs occur in real names ("Doherty", "Liberty"); three-runs only count
# when repeated ("sdfsdf").
_KEYBOARD_ROWS = {"qwertyuiop": 5, "asdfghjkl": 4, "zxcvbnm": 4, "1234567890": 4}
_MASH_GRAMS = frozenset(
    row[i : i + n][::step]
    for row, run in _KEYBOARD_ROWS.items()
    for n in (3, run)
    for i in range(len(row) - n + 1)
    for step in (1, -1)
)
_VOWELS = frozenset("aeiouy")

# Disposable and placeholder domains: a small built-in list of the ones seen on dealer forms.
DISPOSABLE_DOMAINS = frozenset(
    {
        "mailinator.com", "10minutemail.com", "guerrillamail.com", "guerrillamail.net", "sharklasers.com",
        "yopmail.com", "temp-mail.org", "tempmail.com", "trashmail.com", "throwawaymail.com", "maildrop.cc",
        "dispostable.com", "fakeinbox.com", "getnada.com", "mailnesia.com", "mohmal.com",
        "linshiyouxiang.net", "bccto.me", "chacuo.net", "027168.com", "example.com", "example.org",
        "example.net", "test.com",
    }
)  # fmt: skip
# Domains people mean; a typo at edit distance 1 from one of these is repaired (``gmial.com``, ``163.cm``).
_PROVIDERS = (
    "qq.com", "163.com", "126.com", "139.com", "sina.com", "sina.cn", "sohu.com", "foxmail.com", "aliyun.com",
    "yeah.net", "gmail.com", "hotmail.com", "outlook.com", "yahoo.com", "icloud.com", "live.com",
)  # fmt: skip
# Real domains one edit away from a provider: never "repaired".
_REAL_NEIGHBOURS = frozenset(
    {"mail.com", "email.com", "ymail.com", "gmx.com", "q.com", "live.cn", "163.net", "126.net", "qq.cn"}
)
# A domain this short is too ambiguous to repair ("qq.co" yes at 5, "q.com" is real and kept above).
_MIN_REPAIR_LEN = 5
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*@[a-z0-9-]+(?:\.[a-z0-9-]+)+$")
_CJK_DOTS = re.compile("[\u3002\uff0c\uff61]")
_TLD = re.compile(r"\.[a-z]{2,24}$")


def normalise_text(value: str | None) -> str | None:
    """NFKC (full-width to half-width), whitespace collapsed and stripped; ``None`` for nothing left."""
    if value is None:
        return None
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", value)).strip()
    return text or None


def normalise_name(value: str | None) -> str | None:
    """A display name: :func:`normalise_text`, Latin words that are all lower or all upper case title-cased.

    Mixed case is left alone because it is usually deliberate ("McDonald", "DeShawn"); CJK has no case.
    """
    text = normalise_text(value)
    if text is None:
        return None

    def fix(word: re.Match[str]) -> str:
        w = word.group(0)
        if _CJK.search(w) or not (w.islower() or w.isupper()):
            return w
        # each part between apostrophes and hyphens capitalised: "O'BRIEN" -> "O'Brien", "jean-luc" too
        return "".join(p.capitalize() for p in _NAME_PARTS.split(w))

    return _LATIN_WORD.sub(fix, text)


def name_key(value: str | None) -> str | None:
    """The key names are matched on: NFKC, case-folded, honorifics, spaces and punctuation removed."""
    text = normalise_text(value)
    if text is None:
        return None
    words = [w for w in _NOT_WORD.split(text.casefold()) if w]
    # "Mr. Wang" -> "wang"; an honorific alone stays (a name of "Mr" is junk, not empty)
    kept = [w for w in words if w not in _LATIN_HONORIFICS] or words
    key = "".join(kept)
    for honorific in _CJK_HONORIFICS:
        if key.endswith(honorific) and len(key) > len(honorific):
            key = key[: -len(honorific)]
            break
    return key or None


def city_key(value: str | None) -> str | None:
    """The key cities are compared on: :func:`name_key` without a trailing 市 or "city" (上海市 = 上海)."""
    key = name_key(value)
    if key is None:
        return None
    for suffix in ("市", "city"):
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return key


def junk_name(key: str) -> bool:
    """Whether a :func:`name_key` is a test entry, digits, one repeated character or a keyboard mash."""
    if key in _JUNK_NAMES or key.isdigit():
        return True
    if len(set(key)) == 1 and len(key) >= (2 if key.isascii() else 3):
        return True  # "aa", "啊啊啊"; but 王 is a surname ("王先生") and 丽丽 a given name
    if key.startswith(("test", "测试")) and (key.rstrip("0123456789") in ("test", "测试", "testtest")):
        return True  # "test1", "测试2"
    latin = key.isascii()
    if latin and any(key[i : i + n] in _MASH_GRAMS for n in (4, 5) for i in range(len(key) - n + 1)):
        return True
    if latin and key.isalpha() and len(key) >= 5 and not (set(key) & _VOWELS):
        return True  # "xkcdq": no romanised name of five letters goes without a vowel
    # a unit repeated three times or more ("ababab", "哈哈哈"); twice is a name ("Lili", "Tingting", "丽丽")
    # unless the unit is itself typed along a row ("sdfsdf")
    for unit in range(1, len(key) // 2 + 1):
        reps, rest = divmod(len(key), unit)
        if rest == 0 and key[:unit] * reps == key:
            return reps >= 3 or (latin and key[:unit] in _MASH_GRAMS)
    return False


def placeholder_digits(digits: str) -> bool:
    """Whether a phone's digits are a placeholder: one digit repeated, a run like 12345678901 or 9876543210,
    or a subscriber part (the last eight digits) of one repeated digit ("138 0000 0000").

    A run in the last eight alone is not enough: "138 1234 5678" is a real, valid number.
    """
    if len(digits) < 7:
        return False
    if len(set(digits)) == 1 or len(set(digits[-8:])) == 1:
        return True
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(digits)}
    return steps in ({1}, {9})


def _clean_phone(
    value: str | None, region: str, notes: list[str]
) -> tuple[str | None, str | None]:  # (E.164, rejection)
    text = normalise_text(value)
    if text is None:
        return None, None
    if text != _SPACES.sub(" ", value or "").strip():
        notes.append("phone: full-width characters converted")
    digits = _NON_DIGIT.sub("", text)
    if placeholder_digits(digits):
        return None, f"placeholder phone {text!r}"
    candidate = text
    # "0086 138..." is the international form from inside China; 00 is the ITU prefix almost everywhere,
    # so it is read as "+" whatever the default region
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        number = phonenumbers.parse(candidate, region)
        valid = phonenumbers.is_valid_number(number)
        if not valid and not candidate.startswith("+"):
            # "86 138 1234 5678": a country code typed without the plus
            plus = phonenumbers.parse("+" + digits, region)
            if phonenumbers.is_valid_number(plus):
                number, candidate, valid = plus, "+" + digits, True
    except phonenumbers.NumberParseException:
        notes.append(f"phone: dropped {text!r}, not a phone number")
        return None, None
    if not valid:
        notes.append(f"phone: dropped {text!r}, not a valid number")
        return None, None
    if not candidate.startswith("+"):
        notes.append(f"phone: added country code +{number.country_code}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def repair_domain(domain: str) -> str | None:
    """The provider domain a typo means (``gmial.com`` -> ``gmail.com``), or ``None`` when it is no typo."""
    if domain in _PROVIDERS or domain in _REAL_NEIGHBOURS or len(domain) < _MIN_REPAIR_LEN:
        return None
    # OSA counts a swap as one edit ("gmial"), which is the commonest typing slip
    near = [p for p in _PROVIDERS if OSA.distance(domain, p, score_cutoff=1) <= 1]
    return near[0] if len(near) == 1 else None


def _clean_email(value: str | None, notes: list[str]) -> tuple[str | None, str | None]:  # (email, rejection)
    text = normalise_text(value)
    if text is None:
        return None, None
    email = text.lower().removeprefix("mailto:").replace(" ", "")
    if _CJK_DOTS.search(email):
        # a Chinese input method's full stop and comma survive NFKC: "name@qq\u3002com"
        email = _CJK_DOTS.sub(".", email)
        notes.append("email: full-width punctuation converted")
    if not _EMAIL.match(email) or ".." in email or len(email) > 254 or not _TLD.search(email):
        notes.append(f"email: dropped {text!r}, not an e-mail address")
        return None, None
    local, _, domain = email.partition("@")
    if len(local) > 64:
        notes.append(f"email: dropped {text!r}, not an e-mail address")
        return None, None
    fixed = repair_domain(domain)
    if fixed is not None:
        notes.append(f"email: domain {domain} repaired to {fixed}")
        domain = fixed
    labels = domain.split(".")
    if any(".".join(labels[i:]) in DISPOSABLE_DOMAINS for i in range(len(labels) - 1)):  # and subdomains
        return None, f"disposable or placeholder e-mail domain {domain}"
    return f"{local}@{domain}", None


def clean(raw: RawLead, *, default_region: str = "CN", now: datetime | None = None) -> Lead | Rejection:
    """Normalise one raw lead's contact fields, or refuse it with the reason (never raises on its text).

    ``now`` (default: the current time) is what a future ``created_at`` is judged against.
    """
    if raw.created_at.tzinfo is None or raw.created_at.utcoffset() is None:
        return Rejection(raw, "created_at has no time zone")
    if raw.created_at > (now or datetime.now(UTC)) + CLOCK_SKEW:
        return Rejection(raw, f"created_at {raw.created_at.isoformat()} is in the future")

    name = normalise_name(raw.name)
    key = name_key(name)
    if key is not None and junk_name(key):
        return Rejection(raw, f"test or junk name {name!r}")

    notes: list[str] = []
    phone, refused = _clean_phone(raw.phone, default_region, notes)
    if refused is not None:
        return Rejection(raw, refused)
    email, refused = _clean_email(raw.email, notes)
    if refused is not None:
        return Rejection(raw, refused)

    contactable = phone is not None or email is not None
    customer_id = normalise_text(raw.customer_id)
    if not contactable and customer_id is None:
        return Rejection(raw, "not contactable: no valid phone or e-mail and no known customer")

    return Lead(
        raw=raw,
        name=name,
        phone=phone,
        email=email,
        city=normalise_name(raw.city),
        region=normalise_name(raw.region),
        model_interest=normalise_text(raw.model_interest),
        name_key=key,
        contactable=contactable,
        notes=tuple(notes),
    )


def clean_many(
    raws: Iterable[RawLead], *, default_region: str = "CN", now: datetime | None = None
) -> tuple[list[Lead], list[Rejection]]:
    """:func:`clean` every raw lead: the leads in input order, and the rejections in input order.

    One ``now`` is taken for the whole batch so that the future check is the same for every lead.
    """
    at = now or datetime.now(UTC)
    leads: list[Lead] = []
    rejections: list[Rejection] = []
    for raw in raws:
        result = clean(raw, default_region=default_region, now=at)
        if isinstance(result, Lead):
            leads.append(result)
        else:
            rejections.append(result)
    return leads, rejections
