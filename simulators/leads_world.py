"""Dealer lead management: a seeded world of dealers, known customers and leads, with its hidden truth.

The world (:func:`simulate_leads_world`) holds what the lead pipeline (cloud/leads/) sees — dealers, the
known customers of the CRM and :class:`~cloud.leads.model.RawLead` s from forms, events, campaigns, the car,
upgrade scores and service — and what it never sees:

- **who is who**: each lead's true person (shared by its duplicates; -1 for junk), whether it is a
  duplicate (the person is a known customer or sent an earlier lead, and the source did not name them), of
  which lead (``duplicate_of``), and how the duplicate differs (``variant``): the same phone in another
  format, the same e-mail in another case, or a name variant in the same city with a phone that differs
  only in its operator prefix. Every person's last eight phone digits are unique, so no variant can become
  another person's number: duplicates stay findable and never point at the wrong person;
- **junk**: test names, placeholder phones (13800000000, 12345678901), disposable e-mail domains, or no
  contact at all;
- **purchase intent** (``purchase_p``): the probability that the lead orders when an average dealer
  reaches them at once. It grows with the stated intent (order, quote and test-drive requests highest), the
  source (the car and upgrade scores know the person is in the market) and the channel (an autoshow visit
  means more than a newsletter sign-up), times a lognormal per-person factor.

Dealers have a daily capacity, a hidden skill (a lognormal conversion multiplier, mean 1) and the models they
know. :func:`simulate_follow_up` plays the dealers' side for a given distribution of leads: queueing at
capacity, the chance to reach a lead falling with the delay (``exp(-hours / 48)``), then appointment, test
drive and order with probabilities from intent, skill and expertise. Every lead's fate is drawn from its own
fixed random numbers, so two distributions of the same world compare lead by lead (common random numbers):
a difference in orders is the distribution's, not the dice's.

The generator touches no database; :func:`write_leads_csv`, :func:`write_dealers_csv` and
:func:`write_customers_csv` write the import formats.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cloud.leads.model import Intent, RawLead, Source

CST = timezone(timedelta(hours=8), "CST")  # China has one zone and no daylight saving
MODELS = ("DS-SUV", "DS-Compact", "DS-EV", "DS-Sedan")
REGIONS: dict[str, tuple[str, ...]] = {
    "Guangdong": ("Guangzhou", "Shenzhen", "Foshan", "Dongguan"),
    "Shanghai": ("Shanghai",),
    "Beijing": ("Beijing",),
    "Zhejiang": ("Hangzhou", "Ningbo", "Wenzhou"),
    "Jiangsu": ("Nanjing", "Suzhou", "Wuxi"),
    "Sichuan": ("Chengdu", "Mianyang"),
    "Hubei": ("Wuhan", "Yichang"),
}
REGION_WEIGHTS = (0.22, 0.15, 0.12, 0.15, 0.16, 0.10, 0.10)
SURNAMES = (("王", "Wang"), ("李", "Li"), ("张", "Zhang"), ("刘", "Liu"), ("陈", "Chen"), ("杨", "Yang"),
            ("黄", "Huang"), ("赵", "Zhao"), ("吴", "Wu"), ("周", "Zhou"), ("徐", "Xu"), ("孙", "Sun"),
            ("马", "Ma"), ("朱", "Zhu"), ("胡", "Hu"), ("郭", "Guo"), ("何", "He"), ("林", "Lin"),
            ("罗", "Luo"), ("高", "Gao"))  # fmt: skip
GIVEN = (("伟", "Wei"), ("芳", "Fang"), ("娜", "Na"), ("秀英", "Xiuying"), ("敏", "Min"), ("静", "Jing"),
         ("丽", "Li"), ("强", "Qiang"), ("磊", "Lei"), ("军", "Jun"), ("洋", "Yang"), ("勇", "Yong"),
         ("艳", "Yan"), ("杰", "Jie"), ("涛", "Tao"), ("明", "Ming"), ("超", "Chao"), ("秀兰", "Xiulan"),
         ("建华", "Jianhua"), ("子涵", "Zihan"), ("浩然", "Haoran"), ("欣怡", "Xinyi"), ("宇轩", "Yuxuan"),
         ("思雨", "Siyu"))  # fmt: skip
ENGLISH = ("David", "Emily", "Kevin", "Grace", "Jason", "Linda", "Tony", "Cindy", "Eric", "Vivian", "Jack")
#: mobile prefixes phonenumbers accepts as valid Chinese mobiles
PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153",
            "155", "156", "157", "158", "159", "166", "176", "177", "178", "180", "181", "182", "183",
            "185", "186", "187", "188", "189", "198", "199")  # fmt: skip
MAIL_DOMAINS = ("qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "sina.com")
MAIL_WEIGHTS = (0.4, 0.25, 0.1, 0.1, 0.1, 0.05)
JUNK_NAMES = ("test", "Test", "测试", "asdf", "aaa", "xxx", "123", "Test User")
JUNK_PHONES = ("13800000000", "12345678901", "11111111111", "00000000000", "13800138000")
DISPOSABLE = ("mailinator.com", "10minutemail.com", "guerrillamail.com", "yopmail.com", "temp-mail.org")

# where leads come from: (probability, channels, channel weights, activities) per source
_PROSPECT_SOURCES: tuple[Source, ...] = ("form", "event", "campaign")
_PROSPECT_WEIGHTS = (0.5, 0.2, 0.3)
_KNOWN_SOURCES: tuple[Source, ...] = ("car", "upgrade", "service")
_KNOWN_WEIGHTS = (0.4, 0.3, 0.3)
_CHANNELS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "form": (("website", "app", "wechat"), (0.5, 0.3, 0.2)),
    "event": (("autoshow", "wechat"), (0.7, 0.3)),
    "campaign": (("wechat", "app", "website", "call_centre"), (0.4, 0.3, 0.2, 0.1)),
    "car": (("in_car",), (1.0,)),
    "upgrade": (("in_car", "app"), (0.5, 0.5)),
    "service": (("call_centre", "app"), (0.5, 0.5)),
}
_ACTIVITIES: dict[str, tuple[str | None, ...]] = {
    "form": (None, None, "website-test-drive"),
    "event": ("autoshow-2026-guangzhou", "autoshow-2026-shanghai", "roadshow-2026-chengdu", "test-drive-day"),
    "campaign": ("cmp-2026-summer-ev", "cmp-2026-suv-trade-in", "cmp-2026-618", "cmp-2026-loyalty"),
    "car": (None,),
    "upgrade": ("upgrade-score",),
    "service": (None, "service-visit"),
}
_INTENTS: dict[str, tuple[tuple[Intent, ...], tuple[float, ...]]] = {
    "form": (("test_drive", "quote", "brochure", "order", "newsletter", "unknown"),
             (0.35, 0.2, 0.25, 0.05, 0.1, 0.05)),
    "event": (("test_drive", "brochure", "quote", "unknown"), (0.4, 0.3, 0.1, 0.2)),
    "campaign": (("brochure", "newsletter", "test_drive", "quote", "unknown"), (0.3, 0.2, 0.2, 0.15, 0.15)),
    "car": (("test_drive", "quote", "service", "unknown"), (0.4, 0.3, 0.2, 0.1)),
    "upgrade": (("quote", "test_drive", "order", "unknown"), (0.4, 0.4, 0.1, 0.1)),
    "service": (("service", "quote", "test_drive", "unknown"), (0.6, 0.2, 0.1, 0.1)),
}  # fmt: skip
#: purchase probability by stated intent, and the multipliers of source and channel
_INTENT_P = {"order": 0.35, "quote": 0.2, "test_drive": 0.25, "service": 0.05, "brochure": 0.06,
             "newsletter": 0.02, "unknown": 0.04}  # fmt: skip
_SOURCE_X = {"form": 1.0, "event": 1.2, "campaign": 0.8, "car": 1.6, "upgrade": 1.8, "service": 1.0}
_CHANNEL_X = {"website": 1.0, "app": 1.0, "wechat": 0.9, "autoshow": 1.2, "call_centre": 1.1, "in_car": 1.2}
_MESSAGES: dict[str, tuple[str, ...]] = {
    "order": ("想尽快下单", "What is the delivery time?"),
    "quote": ("请报价", "最低价多少?", "Please send me a quote"),
    "test_drive": ("想预约试驾", "周末可以试驾吗", "I'd like a test drive"),
    "service": ("保养预约", "车有异响"),
    "brochure": ("想了解电动车续航", "请发资料"),
}
KNOWN_SHARE = 0.15  # of the first leads of a person, the share from known customers (car, upgrade, service)
STATUSES = ("new", "contacted", "appointment", "test_drive", "order", "lost")
LOST_REASONS = ("no_answer", "bought_elsewhere", "not_interested", "price")


@dataclass(frozen=True, slots=True)
class Dealer:
    """A dealer (or the call centre) with its hidden skill: a conversion multiplier, mean 1."""

    dealer_id: str
    name: str
    region: str
    city: str
    role: str  # "showroom" or "call_centre"
    capacity: int  # leads it can contact a day
    skill: float
    models: tuple[str, ...]  # the models its staff know well (a call centre: none)


@dataclass(frozen=True, slots=True)
class Customer:
    """A known customer as the CRM holds them (phone E.164)."""

    customer_id: str
    name: str
    phone: str
    email: str | None
    city: str
    region: str


@dataclass(frozen=True)
class LeadsWorld:
    """Dealers, known customers and leads (sorted by ``created_at``), and the hidden truth per lead."""

    start: datetime
    days: int
    dealers: tuple[Dealer, ...]
    customers: tuple[Customer, ...]
    leads: tuple[RawLead, ...]
    person: np.ndarray  # int64: the true person (known customer k is person k); -1 for junk
    is_duplicate: np.ndarray  # bool
    is_junk: np.ndarray  # bool
    duplicate_of: np.ndarray  # int64: the earlier lead a duplicate repeats, -1 (a known customer, or none)
    true_customer: np.ndarray  # object: the person's customer_id when a known customer, else None
    variant: np.ndarray  # object: how a duplicate differs ("phone_format", "email_case", "name_variant"), ""
    purchase_p: np.ndarray  # float: the hidden purchase intent (0 for junk)

    def dealer(self, dealer_id: str) -> Dealer:
        """The dealer with this id (KeyError when there is none)."""
        for d in self.dealers:
            if d.dealer_id == dealer_id:
                return d
        raise KeyError(dealer_id)


def _pick(rng: np.random.Generator, options: Sequence[Any], weights: Sequence[float], n: int) -> np.ndarray:
    return np.asarray(rng.choice(len(options), size=n, p=np.asarray(weights) / sum(weights)))


def _persons(rng: np.random.Generator, n: int) -> dict[str, list[Any]]:
    """Contact fields of ``n`` people; the last eight phone digits are unique across them."""
    sur = rng.integers(0, len(SURNAMES), n)
    giv = rng.integers(0, len(GIVEN), n)
    english = rng.random(n) < 0.12
    eng = rng.integers(0, len(ENGLISH), n)
    # without replacement: a typo in the operator prefix can then never hit another person's number
    suffix = rng.choice(99_999_999, size=n, replace=False) + 1
    prefix = rng.integers(0, len(PREFIXES), n)
    has_mail = rng.random(n) < 0.65
    domain = _pick(rng, MAIL_DOMAINS, MAIL_WEIGHTS, n)
    region = _pick(rng, list(REGIONS), REGION_WEIGHTS, n)
    city_u = rng.random(n)
    regions = list(REGIONS)
    out: dict[str, list[Any]] = {k: [] for k in ("name", "phone", "email", "city", "region", "suffix")}
    for i in range(n):
        s_zh, s_py = SURNAMES[sur[i]]
        g_zh, g_py = GIVEN[giv[i]]
        out["name"].append(f"{ENGLISH[eng[i]]} {s_py}" if english[i] else s_zh + g_zh)
        out["phone"].append(f"+86{PREFIXES[prefix[i]]}{suffix[i]:08d}")
        out["suffix"].append(f"{suffix[i]:08d}")
        dom = MAIL_DOMAINS[domain[i]]
        # the person index in the local part keeps addresses unique: a shared address would be a false match
        local = str(20_000_000 + 7 * i) if dom == "qq.com" else f"{g_py.lower()}.{s_py.lower()}{i}"
        out["email"].append(f"{local}@{dom}" if has_mail[i] else None)
        r = regions[region[i]]
        out["region"].append(r)
        out["city"].append(REGIONS[r][int(city_u[i] * len(REGIONS[r]))])
    return out


#: the digits as a Chinese input method types them (U+FF10..U+FF19)
_FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + k) for k in range(10)))


def _phone_format(e164: str, style: int) -> str:
    """The same number as people type it."""
    d = e164[3:]
    return (
        f"{d[:3]} {d[3:7]} {d[7:]}",
        f"+86-{d[:3]}-{d[3:7]}-{d[7:]}",
        f"+86 {d}",
        f"0086{d}",
        d.translate(_FULLWIDTH),
        f"(+86) {d[:3]}-{d[3:7]}-{d[7:]}",
    )[style % 6]


def _name_variant(name: str, style: int) -> str:
    """The same name written differently: a space, a title, another order or case."""
    if name.isascii():
        first, last = name.split(" ", 1)
        return (f"{last} {first}", name.lower(), f"{first}  {last.upper()}")[style % 3]
    return (f"{name[0]} {name[1:]}", f"{name}先生", f"{name}女士")[style % 3]


def simulate_leads_world(
    leads: int,
    seed: int,
    *,
    dealers: int = 40,
    customers: int | None = None,
    days: int = 30,
    duplicate_share: float = 0.15,
    junk_share: float = 0.05,
    start: datetime = datetime(2026, 6, 1, tzinfo=CST),
) -> LeadsWorld:
    """``leads`` leads over ``days`` days from ``start``, ``dealers`` dealers and ``customers`` known
    customers (half as many as leads when None); ``duplicate_share`` and ``junk_share`` of the leads are
    duplicates and junk (see the module docstring)."""
    if not 0 <= duplicate_share + junk_share <= 1:
        raise ValueError("duplicate_share + junk_share must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    n = leads
    n_cust = n // 2 if customers is None else customers

    # dealers: one in every region first, so that every lead has a dealer nearby
    regions = list(REGIONS)
    d_region = [regions[k] for k in range(min(dealers, len(regions)))]
    d_region += [regions[k] for k in _pick(rng, regions, REGION_WEIGHTS, max(0, dealers - len(regions)))]
    skill = rng.lognormal(-(0.35**2) / 2, 0.35, dealers)
    dealer_list = []
    for k, r in enumerate(d_region):
        city = REGIONS[r][int(rng.integers(0, len(REGIONS[r])))]
        centre = k % 10 == 9  # one in ten is a call centre: many calls, no showroom, a little less skill
        known = rng.choice(len(MODELS), size=int(rng.integers(1, 4)), replace=False)
        dealer_list.append(
            Dealer(
                dealer_id=f"D{k + 1:03d}",
                name=f"DS {'Call Centre' if centre else 'Store'} {city} {k + 1}",
                region=r,
                city=city,
                role="call_centre" if centre else "showroom",
                capacity=int(rng.integers(150, 301) if centre else rng.integers(20, 61)),
                skill=float(skill[k] * (0.85 if centre else 1.0)),
                models=() if centre else tuple(MODELS[m] for m in sorted(known)),
            )
        )

    # which lead is what; leads are in time order, so "earlier" is "lower index"
    offset = rng.integers(0, days, n) * 86400.0 + _pick(rng, range(24), _HOURLY, n) * 3600.0
    offset = np.sort(offset + rng.random(n) * 3600.0)
    kind = np.zeros(n, dtype=np.int8)  # 0 a person's first lead, 1 duplicate, 2 junk
    order = rng.permutation(n)
    n_junk = round(junk_share * n)
    n_dup = round(duplicate_share * n)
    kind[order[:n_junk]] = 2
    kind[order[n_junk : n_junk + n_dup]] = 1
    if n_cust == 0:
        # with no known customers a duplicate needs an earlier lead: those before the first one are firsts
        firsts = np.flatnonzero(kind == 0)
        kind[(kind == 1) & (np.arange(n) < (firsts[0] if len(firsts) else n))] = 0
    first = np.flatnonzero(kind == 0)
    known_first = (rng.random(n) < KNOWN_SHARE) & (kind == 0) & (n_cust > 0)
    n_prospects = int((kind == 0).sum() - known_first.sum())
    people = _persons(rng, n_cust + n_prospects)

    person = np.full(n, -1, dtype=np.int64)
    person[known_first] = rng.integers(0, max(n_cust, 1), int(known_first.sum()))
    person[(kind == 0) & ~known_first] = n_cust + np.arange(n_prospects)
    # a duplicate repeats an earlier first lead or, a third of the time, a known customer
    duplicate_of = np.full(n, -1, dtype=np.int64)
    dups = np.flatnonzero(kind == 1)
    earlier = np.searchsorted(first, dups)  # how many first leads came before
    to_lead = (earlier > 0) & ((rng.random(len(dups)) >= 1 / 3) | (n_cust == 0))
    pick = (rng.random(len(dups)) * earlier).astype(np.int64)
    duplicate_of[dups[to_lead]] = first[pick[to_lead]]
    person[dups[to_lead]] = person[first[pick[to_lead]]]
    person[dups[~to_lead]] = rng.integers(0, max(n_cust, 1), int((~to_lead).sum()))
    is_dup = kind == 1
    source_u = rng.random(n)
    variant_u = rng.integers(0, 6, n)
    variant_k = rng.random(n)
    draws = rng.random((n, 9))
    person_x = rng.lognormal(-(0.5**2) / 2, 0.5, len(people["name"]))

    out: list[RawLead] = []
    variant = np.full(n, "", dtype=object)
    true_customer = np.full(n, None, dtype=object)
    purchase_p = np.zeros(n)
    for i in range(n):
        created = start + timedelta(seconds=int(offset[i]))
        u = draws[i]
        if kind[i] == 2:
            out.append(_junk(i, created, u, variant_u[i]))
            continue
        p = int(person[i])
        if known_first[i]:
            src: Source = _KNOWN_SOURCES[_index(_KNOWN_WEIGHTS, source_u[i])]
        else:
            src = _PROSPECT_SOURCES[_index(_PROSPECT_WEIGHTS, source_u[i])]
        channels, cw = _CHANNELS[src]
        channel = channels[_index(cw, u[0])]
        intents, iw = _INTENTS[src]
        intent = intents[_index(iw, u[1])]
        acts = _ACTIVITIES[src]
        name, phone, email = people["name"][p], people["phone"][p], people["email"][p]
        if is_dup[i]:
            if duplicate_of[i] >= 0:  # findable from what the earlier lead gave, not from the person
                email = out[duplicate_of[i]].email
            # which variant: a name variant a third of the time, the e-mail's case when there is one
            if variant_k[i] < 1 / 3:
                variant[i] = "name_variant"
                name = _name_variant(name, variant_u[i])
                other = PREFIXES[(PREFIXES.index(phone[3:6]) + 1 + variant_u[i]) % len(PREFIXES)]
                phone, email = other + phone[6:], None  # a mistyped operator prefix, same last 8 digits
            elif variant_k[i] < 0.6 and email is not None:
                variant[i] = "email_case"
                local, domain = email.split("@")
                email = email.upper() if variant_u[i] % 2 else f"{local.capitalize()}@{domain.capitalize()}"
                phone = None if u[2] < 0.7 else phone[3:]
            else:
                variant[i] = "phone_format"
                phone = _phone_format(phone, variant_u[i])
                email = email if u[2] < 0.3 else None
        else:
            # as people give it: mostly the bare 11 digits, some E.164, some dashed (no duplicate's format)
            d = phone[3:]
            phone = d if u[2] < 0.7 else (phone if u[2] < 0.9 else f"{d[:3]}-{d[3:7]}-{d[7:]}")
            email = email if u[3] < 0.8 else None
        cust = f"C{p + 1:06d}" if p < n_cust else None
        true_customer[i] = cust
        purchase_p[i] = min(0.9, _INTENT_P[intent] * _SOURCE_X[src] * _CHANNEL_X[channel] * person_x[p])
        msgs = _MESSAGES.get(intent, ())
        named = src in _KNOWN_SOURCES  # only the car, the upgrade score and service know the customer
        out.append(
            RawLead(
                source=src,
                channel=channel,
                created_at=created,
                external_id=f"{src[:3].upper()}-{i + 1:07d}",
                activity=acts[int(u[4] * len(acts))],
                name=name,
                phone=phone,
                email=email,
                city=people["city"][p],
                region=people["region"][p] if u[5] < 0.8 else None,
                model_interest=MODELS[int(u[6] / 0.85 * len(MODELS))] if u[6] < 0.85 else None,
                intent=intent,
                message=msgs[int(u[7] * len(msgs))] if msgs and u[7] < 0.5 else None,
                customer_id=cust if named else None,
                vehicle_id=f"V{p + 1:06d}" if named else None,
                consent_contact=True if named or u[8] < 0.75 else (False if u[8] < 0.8 else None),
            )
        )
    cust_list = tuple(
        Customer(f"C{k + 1:06d}", people["name"][k], people["phone"][k], people["email"][k],
                 people["city"][k], people["region"][k])
        for k in range(n_cust)
    )  # fmt: skip
    return LeadsWorld(
        start=start,
        days=days,
        dealers=tuple(dealer_list),
        customers=cust_list,
        leads=tuple(out),
        person=person,
        is_duplicate=is_dup,
        is_junk=kind == 2,
        duplicate_of=duplicate_of,
        true_customer=true_customer,
        variant=variant,
        purchase_p=purchase_p,
    )


#: when leads arrive over the day (people fill in forms in the evening, not at 4 a.m.)
_HOURLY = (1, 0.5, 0.3, 0.2, 0.2, 0.3, 1, 2, 4, 6, 7, 7, 6, 6, 6, 6, 6, 7, 8, 9, 10, 9, 6, 3)


def _index(weights: Sequence[float], u: float) -> int:
    """The option a uniform draw ``u`` falls on, by cumulative weight."""
    acc, total = 0.0, sum(weights)
    for k, w in enumerate(weights):
        acc += w / total
        if u < acc:
            return k
    return len(weights) - 1


def _junk(i: int, created: datetime, u: np.ndarray, style: int) -> RawLead:
    """A junk lead: a test entry, a placeholder phone, a disposable address, or no contact at all."""
    kind = int(u[0] * 4)
    name: str | None = JUNK_NAMES[int(u[1] * len(JUNK_NAMES))]
    phone: str | None = None
    email: str | None = None
    if kind == 0:
        phone = JUNK_PHONES[int(u[2] * len(JUNK_PHONES))]
    elif kind == 1:
        name = SURNAMES[style % len(SURNAMES)][0] + GIVEN[int(u[2] * len(GIVEN))][0]
        email = f"x{int(u[3] * 1e6)}@{DISPOSABLE[int(u[4] * len(DISPOSABLE))]}"
    elif kind == 2:
        name = None if u[2] < 0.5 else name
    else:
        email = "test@test.com"
    return RawLead(
        source="form",
        channel=("website", "app", "wechat")[style % 3],
        created_at=created,
        external_id=f"FOR-{i + 1:07d}",
        name=name,
        phone=phone,
        email=email,
        intent="unknown",
    )


@dataclass(frozen=True)
class FollowUp:
    """What the dealers did with the leads and what came of it, aligned with the world's lead indexes.

    ``status`` is the last step reached; each step's time is in its list (None: not reached). ``delay_hours``
    is the time from the lead to the first contact attempt, capacity queueing included (inf: never);
    ``queued_hours`` the part of it the dealer's full days added. ``load`` counts each dealer's contact
    attempts per day from the world's first day."""

    dealer: list[str | None]
    status: list[str]
    lost_reason: list[str | None]
    delay_hours: np.ndarray
    queued_hours: np.ndarray
    attempted_at: list[datetime | None]
    contacted_at: list[datetime | None]
    appointment_at: list[datetime | None]
    test_drive_at: list[datetime | None]
    order_at: list[datetime | None]
    lost_at: list[datetime | None]
    load: dict[str, np.ndarray]

    def count(self, status: str) -> int:
        """How many leads ended in ``status``."""
        return sum(s == status for s in self.status)


SHOW_UP = 0.85  # booked test drives that happen


def simulate_follow_up(
    world: LeadsWorld,
    assignments: Mapping[int, tuple[str, float]],
    seed: int,
    *,
    as_of: datetime | None = None,
) -> FollowUp:
    """Play the dealers' side: ``assignments`` maps a lead index to (dealer_id, hours until the first contact
    attempt; ``inf``: never). Each dealer attempts at most ``capacity`` leads a day, in assignment order; the
    rest wait for the next day with room. Reached with probability ``exp(-delay / 48)``; then an appointment
    with ``sqrt(p) * skill * (1.3 when the dealer knows the model)``, a test drive with 0.85 and an order with
    ``sqrt(p) * skill / 0.85`` (p the lead's purchase intent; each capped at 0.95), so a prompt, average
    dealer converts a lead with about its intent. Steps after ``as_of`` (when given) have not happened yet."""
    n = len(world.leads)
    # one fixed row of draws per lead: a lead's fate depends on its own dealer and delay only
    draws = np.random.default_rng([seed, 71]).random((n, 8))
    dealers = {d.dealer_id: d for d in world.dealers}
    day0 = world.start.replace(hour=0, minute=0, second=0, microsecond=0)
    used: dict[str, dict[int, int]] = {d: {} for d in dealers}
    full_next: dict[str, dict[int, int]] = {d: {} for d in dealers}  # a full day -> a later day to try
    days: dict[str, list[int]] = {d: [] for d in dealers}
    f = FollowUp(
        dealer=[None] * n, status=["new"] * n, lost_reason=[None] * n, delay_hours=np.full(n, np.inf),
        queued_hours=np.zeros(n), attempted_at=[None] * n, contacted_at=[None] * n,
        appointment_at=[None] * n, test_drive_at=[None] * n, order_at=[None] * n, lost_at=[None] * n,
        load={},
    )  # fmt: skip
    for i, (dealer_id, hours) in assignments.items():
        if dealer_id not in dealers:
            raise ValueError(f"lead {i}: no dealer {dealer_id!r}")
        if dealers[dealer_id].capacity < 1:
            raise ValueError(f"lead {i}: dealer {dealer_id!r} has no capacity")
        f.dealer[i] = dealer_id
        if math.isinf(hours):
            continue
        d = dealers[dealer_id]
        created = world.leads[i].created_at
        planned = created + timedelta(hours=hours)
        day = (planned - day0) // timedelta(days=1)
        free = _free_day(full_next[dealer_id], day)
        slot = used[dealer_id].get(free, 0)
        used[dealer_id][free] = slot + 1
        if slot + 1 >= d.capacity:
            full_next[dealer_id][free] = free + 1
        days[dealer_id].append(free)
        # a day's overflow is called the next working day from 9:00, spread over ten hours
        at = planned if free == day else day0 + timedelta(days=free, hours=9 + 10 * slot / d.capacity)
        f.attempted_at[i] = at
        f.delay_hours[i] = (at - created) / timedelta(hours=1)
        f.queued_hours[i] = (at - planned) / timedelta(hours=1)
        _outcome(f, i, at, d, world, draws[i])
    f.load.update({k: np.bincount(v, minlength=world.days) for k, v in days.items() if v})
    if as_of is not None:
        _cut(f, as_of)
    return f


def _free_day(full_next: dict[int, int], day: int) -> int:
    """The first day from ``day`` with room, skipping full days with path compression (fast when many are)."""
    path = []
    while day in full_next:
        path.append(day)
        day = full_next[day]
    for p in path:
        full_next[p] = day
    return day


def _outcome(f: FollowUp, i: int, at: datetime, d: Dealer, world: LeadsWorld, u: np.ndarray) -> None:
    """Lead ``i``'s steps after a first attempt at ``at`` by dealer ``d``."""
    p = float(world.purchase_p[i])
    delay = float(f.delay_hours[i])
    if world.is_junk[i] or u[0] >= math.exp(-delay / 48):
        # never reached: a keen buyer goes elsewhere, the others simply never answer
        reason = "bought_elsewhere" if not world.is_junk[i] and u[1] < min(0.9, 2 * p) else "no_answer"
        _lose(f, i, at + timedelta(days=3), reason)
        return
    f.status[i], f.contacted_at[i] = "contacted", at
    knows = world.leads[i].model_interest in d.models
    if u[2] >= min(0.95, math.sqrt(p) * d.skill * (1.3 if knows else 1.0)):
        _lose(f, i, at + timedelta(hours=1), "price" if u[3] < 0.3 else "not_interested")
        return
    booked = at + timedelta(minutes=10)
    f.status[i], f.appointment_at[i] = "appointment", booked
    if u[4] >= SHOW_UP:
        _lose(f, i, booked + timedelta(days=3), "not_interested")
        return
    drive = booked + timedelta(days=1 + 6 * float(u[5]))
    f.status[i], f.test_drive_at[i] = "test_drive", drive
    if u[6] >= min(0.95, math.sqrt(p) * d.skill / SHOW_UP):
        _lose(f, i, drive + timedelta(days=2), "price" if u[7] < 0.5 else "bought_elsewhere")
        return
    f.status[i], f.order_at[i] = "order", drive + timedelta(days=1 + 13 * float(u[7]))


def _lose(f: FollowUp, i: int, at: datetime, reason: str) -> None:
    f.status[i], f.lost_at[i], f.lost_reason[i] = "lost", at, reason


def _cut(f: FollowUp, as_of: datetime) -> None:
    """Forget the steps after ``as_of``: the status is the last step that has happened by then."""
    steps = (("contacted", f.contacted_at), ("appointment", f.appointment_at),
             ("test_drive", f.test_drive_at), ("order", f.order_at))  # fmt: skip
    for i in range(len(f.status)):
        status = "new"
        for name, times in steps:
            t = times[i]
            if t is not None and t > as_of:
                times[i] = None
            elif t is not None:
                status = name
        lost = f.lost_at[i]
        if lost is not None and lost > as_of:
            f.lost_at[i], f.lost_reason[i], lost = None, None, None
        if lost is None:
            f.status[i] = status


LEAD_COLUMNS = ("external_id", "source", "channel", "activity", "created_at", "name", "phone", "email",
                "city", "region", "model_interest", "intent", "message", "customer_id", "vehicle_id",
                "consent_contact")  # fmt: skip


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _write(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, object]]) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        w.writerows([_cell(r.get(c)) for c in columns] for r in rows)


def write_leads_csv(world: LeadsWorld, path: Path) -> None:
    """The leads in the lead import format (created_at ISO 8601 with offset, empty cells for None)."""
    _write(path, LEAD_COLUMNS, [{c: getattr(lead, c) for c in LEAD_COLUMNS} for lead in world.leads])


def write_dealers_csv(world: LeadsWorld, path: Path) -> None:
    """The dealers in the ``dealers`` import format of cloud/analytics/imports.py: every column its row model
    has, filled where the world knows the value (role, capacity and models when the model takes them)."""
    from cloud.analytics.imports import DealerRow

    rows = [
        {"dealer_id": d.dealer_id, "name": d.name, "region": d.region, "city": d.city, "role": d.role,
         "capacity_per_day": d.capacity, "models": ";".join(d.models) or None}
        for d in world.dealers
    ]  # fmt: skip
    _write(path, list(DealerRow.model_fields), rows)


def write_customers_csv(world: LeadsWorld, path: Path) -> None:
    """The known customers in the ``customers`` import format of cloud/analytics/imports.py (the columns
    the world has no value for stay empty)."""
    from cloud.analytics.imports import CustomerRow

    rows = [asdict(k) for k in world.customers]
    _write(path, list(CustomerRow.model_fields), rows)


def dealer_profiles(world: LeadsWorld) -> list[dict[str, object]]:
    """What routing needs beside the dealers table: role, daily capacity and the models each dealer knows
    (skill stays hidden)."""
    return [
        {"dealer_id": d.dealer_id, "role": d.role, "capacity": d.capacity, "models": list(d.models)}
        for d in world.dealers
    ]
