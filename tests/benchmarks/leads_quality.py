"""Lead quality at scale: cleaning, duplicate finding and rating of synthetic dealer leads with known truth.

A synthetic population (Chinese names in pinyin and in characters, some English names; mobile numbers;
qq/163/gmail addresses; 40 cities with the usual surname collisions: many "Wang Wei" in Shanghai) gives
``--known`` customers and ``--leads`` raw leads, of which about ``--dup-share`` come again from a person
already seen (an earlier lead, or a known customer) with typing variants: swapped letters, case, an
honorific, word order, full-width characters, the country code missing or as 0086, dashes, a swapped digit,
an e-mail in other case or with a domain typo, a field left out. About ``--junk-share`` are junk (test
names, placeholder phones, disposable addresses, a created_at in the future).

Printed (one JSON line): ``clean_s``, ``dedupe_s``, ``rate_s`` (wall time of clean_many, find_duplicates
and rating every lead), ``duplicates_found_precision`` (matches that point at the same person / all
matches), ``duplicates_found_recall`` (leads of a person seen before that were matched to that person /
all such leads), ``rejected``; the truth counts next to them.

    python tests/benchmarks/leads_quality.py                 # 100,000 leads, 50,000 known customers
    python tests/benchmarks/leads_quality.py --leads 5000    # smoke size
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.leads.clean import clean_many, name_key, normalise_name
from cloud.leads.dedupe import find_duplicates
from cloud.leads.model import INTENTS, Lead, Match, Person, RawLead
from cloud.leads.rate import rate

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# the commonest surnames first, so that namesakes are as frequent as in life
SURNAMES = [
    ("Wang", "王"), ("Li", "李"), ("Zhang", "张"), ("Liu", "刘"), ("Chen", "陈"), ("Yang", "杨"),
    ("Huang", "黄"), ("Zhao", "赵"), ("Wu", "吴"), ("Zhou", "周"), ("Xu", "徐"), ("Sun", "孙"), ("Ma", "马"),
    ("Zhu", "朱"), ("Hu", "胡"), ("Guo", "郭"), ("He", "何"), ("Gao", "高"), ("Lin", "林"), ("Luo", "罗"),
]  # fmt: skip
GIVEN = [
    ("Wei", "伟"), ("Fang", "芳"), ("Na", "娜"), ("Min", "敏"), ("Jing", "静"), ("Li", "丽"),
    ("Qiang", "强"), ("Lei", "磊"), ("Jun", "军"), ("Yang", "洋"), ("Yong", "勇"), ("Yan", "艳"),
    ("Jie", "杰"), ("Juan", "娟"), ("Tao", "涛"), ("Ming", "明"), ("Chao", "超"), ("Xiu", "秀"),
    ("Hua", "华"), ("Ping", "平"), ("Gang", "刚"), ("Hui", "慧"), ("Xin", "欣"), ("Yu", "宇"),
    ("Hao", "浩"), ("Kai", "凯"), ("Lan", "兰"), ("Bo", "博"),
]  # fmt: skip
ENGLISH = ["James", "Mary", "John", "Linda", "David", "Susan", "Peter", "Emma", "Oliver", "Sophia", "Lucas"]
ENGLISH_SURNAMES = ["Smith", "Brown", "Miller", "Wilson", "Taylor", "Clark", "Walker", "Young", "King"]
CITIES = [
    ("Shanghai", "上海"), ("Beijing", "北京"), ("Guangzhou", "广州"), ("Shenzhen", "深圳"),
    ("Chengdu", "成都"), ("Hangzhou", "杭州"), ("Wuhan", "武汉"), ("Chongqing", "重庆"),
    ("Nanjing", "南京"), ("Tianjin", "天津"), ("Suzhou", "苏州"), ("Xi'an", "西安"),
    ("Changsha", "长沙"), ("Shenyang", "沈阳"), ("Qingdao", "青岛"), ("Zhengzhou", "郑州"),
    ("Dalian", "大连"), ("Dongguan", "东莞"), ("Ningbo", "宁波"), ("Xiamen", "厦门"),
    ("Fuzhou", "福州"), ("Wuxi", "无锡"), ("Hefei", "合肥"), ("Kunming", "昆明"),
    ("Harbin", "哈尔滨"), ("Jinan", "济南"), ("Foshan", "佛山"), ("Changchun", "长春"),
    ("Wenzhou", "温州"), ("Shijiazhuang", "石家庄"), ("Nanning", "南宁"), ("Changzhou", "常州"),
    ("Quanzhou", "泉州"), ("Nanchang", "南昌"), ("Guiyang", "贵阳"), ("Taiyuan", "太原"),
    ("Yantai", "烟台"), ("Jiaxing", "嘉兴"), ("Nantong", "南通"), ("Jinhua", "金华"),
]  # fmt: skip
MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153",
                   "155", "156", "157", "158", "159", "166", "176", "177", "178", "180", "181", "182", "183",
                   "185", "186", "187", "188", "189", "191", "198", "199"]  # fmt: skip
DOMAINS = [
    "qq.com",
    "qq.com",
    "qq.com",
    "163.com",
    "163.com",
    "126.com",
    "gmail.com",
    "sina.com",
    "outlook.com",
]
DOMAIN_TYPOS = {"qq.com": "qq.con", "163.com": "163.cm", "gmail.com": "gmial.com", "126.com": "126.con"}
CHANNELS = ["in_car", "showroom", "call_centre", "website", "app", "wechat", "autoshow", "purchased_list"]
MODELS = ["DS-3", "DS-5", "DS-7", "DS-9 EV", None]
_WIDE = {c: c + 0xFEE0 for c in range(0x21, 0x7F)} | {0x20: 0x3000}


@dataclass(frozen=True, slots=True)
class Human:
    """One synthetic person: the true contact fields (``city`` index into CITIES, ``cjk`` writes in 汉字)."""

    name: str
    phone: str  # 11 national digits
    email: str | None
    city: int
    cjk: bool


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _weighted(rng: random.Random, n: int) -> int:
    # weight 1/(rank + 3): the first surname (Wang) about a seventh of people, the first city (Shanghai) an
    # eighth, much as in a national lead pool where a few names and cities dominate
    return rng.choices(range(n), cum_weights=_CUMULATIVE[n])[0]


_CUMULATIVE = {
    n: list(itertools.accumulate(1.0 / (rank + 3) for rank in range(n))) for n in (len(SURNAMES), len(CITIES))
}


def make_human(rng: random.Random, phones: set[str], emails: set[str]) -> Human:
    """A new person with a phone and e-mail nobody else has."""
    kind = rng.random()
    surname = SURNAMES[_weighted(rng, len(SURNAMES))]
    given = [GIVEN[rng.randrange(len(GIVEN))] for _ in range(1 if rng.random() < 0.6 else 2)]
    cjk = kind < 0.3
    if kind < 0.3:
        name = surname[1] + "".join(g[1] for g in given)
        local_base = surname[0].lower() + "".join(g[0].lower() for g in given)
    elif kind < 0.95:
        name = f"{surname[0]} {''.join(g[0] for g in given).capitalize()}"
        local_base = name.replace(" ", "").lower()
    else:
        first, last = rng.choice(ENGLISH), rng.choice(ENGLISH_SURNAMES)
        name = f"{first} {last}"
        local_base = f"{first}.{last}".lower()
    while True:
        phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        if phone not in phones and len(set(phone[-8:])) > 1:
            phones.add(phone)
            break
    email = None
    if rng.random() < 0.7:
        while email is None or email in emails:
            # the forms addresses take: name and a number or a birth year (namesakes collide here), a qq
            # number, a nickname
            form = rng.random()
            local = (
                f"{local_base}{rng.randrange(10, 10000)}"
                if form < 0.4
                else f"{local_base}{rng.randrange(1960, 2006)}"
                if form < 0.55
                else str(rng.randrange(10**5, 10**10))
                if form < 0.8
                else "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randrange(4, 9)))
                + str(rng.randrange(100))
            )
            email = f"{local}@{rng.choice(DOMAINS)}"
        emails.add(email)
    return Human(name, phone, email, _weighted(rng, len(CITIES)), cjk)


def _swap(rng: random.Random, text: str, lo: int = 0) -> str:
    if len(text) - lo < 2:
        return text
    i = rng.randrange(lo, len(text) - 1)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def typed_phone(rng: random.Random, phone: str, typo: bool) -> str:
    """How a person types their number: formats vary; ``typo`` swaps two digits of the subscriber part."""
    if typo:
        phone = _swap(rng, phone, 3)
    form = rng.random()
    text = (
        phone
        if form < 0.35
        else f"+86 {phone}"
        if form < 0.5
        else f"0086{phone}"
        if form < 0.6
        else f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"
        if form < 0.8
        else f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    )
    return text.translate(_WIDE) if rng.random() < 0.1 else text


def typed_name(rng: random.Random, human: Human, again: bool) -> str:
    """The name as typed; a returning person's name may vary more (case, swaps, honorifics, word order)."""
    name = human.name
    if not again:
        return name.lower() if rng.random() < 0.1 else name
    r = rng.random()
    if human.cjk:
        if r < 0.2:
            name += rng.choice(["先生", "女士"])
        elif r < 0.3:
            name = " ".join(name)
    elif r < 0.2:
        name = name.upper() if rng.random() < 0.5 else name.lower()
    elif r < 0.32:
        name = " ".join(reversed(name.split()))
    elif r < 0.44:
        name = _swap(rng, name, 1)
    elif r < 0.54:
        name = rng.choice(["Mr. ", "Ms. "]) + name
    return name.translate(_WIDE) if rng.random() < 0.05 else name


def typed_email(rng: random.Random, email: str | None, again: bool) -> str | None:
    """The e-mail as typed: on a return, in another case, with a domain typo, or left out."""
    if email is None or not again:
        return email
    r = rng.random()
    if r < 0.1:
        return None
    if r < 0.4:
        return email.upper() if rng.random() < 0.5 else email.capitalize()
    if r < 0.5:
        local, _, domain = email.partition("@")
        return f"{local}@{DOMAIN_TYPOS.get(domain, domain)}"
    return email


def junk(rng: random.Random, created_at: datetime) -> RawLead:
    """A lead cleaning must refuse."""
    kind = rng.randrange(4)
    base = RawLead("form", "website", created_at, name="Li Na", phone="13912345670", city="Shanghai")
    if kind == 0:
        return replace(base, name=rng.choice(["test", "asdf", "测试", "123", "qwerty"]))
    if kind == 1:
        return replace(base, phone=rng.choice(["13800000000", "12345678901", "11111111111"]))
    if kind == 2:
        return replace(base, phone=None, email=f"x{rng.randrange(999)}@mailinator.com")
    return replace(base, created_at=NOW + timedelta(days=3))


def person_of(human: Human, customer_id: str) -> Person:
    """A known customer as the CRM holds it: normalised like a cleaned lead."""
    name = normalise_name(human.name)
    city = CITIES[human.city][1 if human.cjk else 0]
    return Person(customer_id, name, "+86" + human.phone, human.email, normalise_name(city), name_key(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--known", type=int, default=50_000)
    parser.add_argument("--dup-share", type=float, default=0.15)
    parser.add_argument("--junk-share", type=float, default=0.02)
    parser.add_argument(
        "--phone-typo", type=float, default=0.1, help="share of returns with two digits swapped"
    )
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    _say(f"generating {args.known:,} known customers and {args.leads:,} leads")
    phones: set[str] = set()
    emails: set[str] = set()
    known_humans = [make_human(rng, phones, emails) for _ in range(args.known)]
    known = [person_of(h, f"K{j:07d}") for j, h in enumerate(known_humans)]

    # raw leads in creation order; truth: the person behind each (negative: known customer -1 - j)
    raws: list[RawLead] = []
    who: list[int] = []
    batch_humans: list[Human] = []
    seen: list[int] = []  # person ids that already have a lead
    span = timedelta(days=60).total_seconds()
    for i in range(args.leads):
        created_at = NOW - timedelta(seconds=span * (1 - i / args.leads)) - timedelta(seconds=1)
        if rng.random() < args.junk_share:
            raws.append(replace(junk(rng, created_at), external_id=f"L{i}"))
            who.append(-(10**9))
            continue
        again = rng.random() < args.dup_share and (seen or known_humans)
        if again and (rng.random() < 0.5 or not seen):
            j = rng.randrange(len(known_humans))
            pid, human = -1 - j, known_humans[j]
        elif again:
            pid = rng.choice(seen)
            human = batch_humans[pid]
        else:
            pid, human = len(batch_humans), make_human(rng, phones, emails)
            batch_humans.append(human)
            seen.append(pid)
        returning = bool(again)
        has_phone = not (returning and human.email is not None and rng.random() < 0.05)
        city = CITIES[human.city][1 if human.cjk else 0]
        if returning and human.cjk and rng.random() < 0.2:
            city += "市"
        raws.append(
            RawLead(
                source="form",
                channel=rng.choice(CHANNELS),
                created_at=created_at,
                external_id=f"L{i}",
                name=typed_name(rng, human, returning),
                phone=typed_phone(rng, human.phone, returning and rng.random() < args.phone_typo)
                if has_phone
                else None,
                email=typed_email(rng, human.email, returning),
                city=None if rng.random() < 0.02 else city,
                model_interest=rng.choice(MODELS),
                intent=rng.choice(INTENTS),  # type: ignore[arg-type]
                consent_contact=rng.choice([True, True, None, False]),
            )
        )
        who.append(pid)
    # sources deliver out of order: the pipeline must not rely on the input order
    order = list(range(len(raws)))
    rng.shuffle(order)
    raws = [raws[k] for k in order]
    who = [who[k] for k in order]

    _say("cleaning")
    started = time.perf_counter()
    leads, rejections = clean_many(raws, now=NOW)
    clean_s = time.perf_counter() - started

    _say(f"finding duplicates among {len(leads):,} leads and {len(known):,} known customers")
    started = time.perf_counter()
    matches = find_duplicates(leads, known)
    dedupe_s = time.perf_counter() - started

    _say("rating")
    started = time.perf_counter()
    for k, lead in enumerate(leads):
        signals = {"upgrade_probability": (k % 10) / 10} if k % 3 == 0 else None
        rate(lead, now=NOW, signals=signals)
    rate_s = time.perf_counter() - started

    precision, recall, truth, correct = _score(leads, matches, raws, who, known)
    print(
        json.dumps(
            {
                "leads": args.leads,
                "known": len(known),
                "clean_s": round(clean_s, 2),
                "dedupe_s": round(dedupe_s, 2),
                "rate_s": round(rate_s, 2),
                "duplicates_found_precision": round(precision, 4),
                "duplicates_found_recall": round(recall, 4),
                "duplicates_true": truth,
                "duplicates_found": len(matches),
                "duplicates_correct": correct,
                "by_rule": dict(sorted(Counter(m.rule for m in matches).items())),
                "rejected": len(rejections),
            }
        )
    )


def _score(
    leads: list[Lead], matches: list[Match], raws: list[RawLead], who: list[int], known: list[Person]
) -> tuple[float, float, int, int]:
    """Precision and recall of the matches against the generator's truth, over the leads cleaning kept."""
    person_by_raw = {raw.external_id: pid for raw, pid in zip(raws, who, strict=True)}
    person = [person_by_raw[lead.raw.external_id] for lead in leads]
    known_person = {p.customer_id: -1 - j for j, p in enumerate(known)}
    earliest: dict[int, tuple[datetime, int]] = {}
    for k, lead in enumerate(leads):
        key = (lead.raw.created_at, k)
        if person[k] not in earliest or key < earliest[person[k]]:
            earliest[person[k]] = key
    truth = {k for k in range(len(leads)) if person[k] < 0 or earliest[person[k]][1] != k}
    correct = 0
    for m in matches:
        target = known_person[m.other] if isinstance(m.other, str) else person[m.other]
        correct += target == person[m.index] and m.index in truth
    precision = correct / len(matches) if matches else 1.0
    recall = correct / len(truth) if truth else 1.0
    return precision, recall, len(truth), correct


if __name__ == "__main__":
    main()
