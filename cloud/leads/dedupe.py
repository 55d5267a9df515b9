"""Duplicate finding: which cleaned leads are the same person as an earlier lead or a known customer.

Rules, strongest first (a lead's reported rule is its strongest evidence):

- ``customer_id``: the source named the customer (the car's owner): a known customer, or another lead's;
- ``phone``: the same E.164 number;
- ``email``: the same (lower-cased) address;
- ``name_city_fuzzy``: a similar name (:data:`NAME_THRESHOLD`) in the same city, backed by a similar phone
  (same last eight digits, or one digit wrong or two swapped) or, when one of the two has no phone, a
  similar e-mail local part (the same at another provider; or one letter wrong or swapped, the digits the
  same, with the same name). A name alone never matches: a city has many "Wang Wei".

No all-pairs comparison: exact rules are dictionary look-ups, and the fuzzy rule only compares records that
share a block: the same city and part of the phone's tail or of the e-mail local part such that one wrong or
two swapped characters leave a block in common (see ``_block_keys``). Names are not blocked on: the name is
checked only for records whose contacts are already close, and a block of every "Wang Wei" in Shanghai would
be quadratic.

Leads that are the same person form a group (union-find, so chains A~B, B~C resolve to one group). A lead
with direct evidence for a known customer is reported against that customer; the other leads of a group that
has one are reported against the customer the group's earliest such lead matched (rule ``chain:<rule>``);
in a group without one, every lead but the earliest (by ``created_at``, then index) is reported against the
earliest.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from cloud.leads.clean import city_key
from cloud.leads.model import Lead, Match, Person

#: Minimum name similarity (rapidfuzz 0-100, best of ``ratio`` on the name keys and ``token_sort_ratio`` on
#: the names) for the fuzzy rule. 85 lets one swapped or wrong letter through in a romanised name of seven
#: letters or more ("wagnwei", ratio 85.7) and any word order ("Wei Wang"), and keeps "wangwei" apart from
#: "wangjun" (71) or "liwei" (67). CJK names of two or three characters must be equal: one different
#: character is a different name as often as a typo, and the contact evidence must carry the rest.
NAME_THRESHOLD = 85.0
#: digits compared for a partial phone match: the subscriber part, without country and area codes
PHONE_TAIL = 8
#: A block larger than this (a placeholder-like value shared by thousands) is not compared: it would cost
#: quadratic time and says little; the other blocks of its members still are.
MAX_BLOCK = 1000
#: shortest e-mail local part whose one-edit variants count as similar ("li1" vs "li2" are not)
MIN_LOCAL = 5
#: longest local part blocked on (each adds one key per character)
MAX_LOCAL = 40

_RULE_RANK = {"customer_id": 4, "phone": 3, "email": 2, "name_city_fuzzy": 1}
_NON_DIGIT = re.compile(r"\D")
_NON_ALNUM = re.compile(r"[\W_]+")


@dataclass(slots=True)
class _Record:
    """What matching needs of a lead or a known person, computed once."""

    phone: str | None
    email: str | None
    digits: str  # the phone's digits, country code first; "" without one
    local: str  # e-mail local part, "" without one
    city: str | None
    key: str | None
    name: str  # "" without one


@dataclass(frozen=True, slots=True)
class _Edge:
    rule: str
    score: float
    other: int  # a node: a lead index below n, a known person at n + j

    def strength(self) -> tuple[int, float, int]:
        # strongest rule, then score, then the smallest node, so that the choice is deterministic
        return (_RULE_RANK[self.rule], self.score, -self.other)


def _record(
    phone: str | None,
    email: str | None,
    city: str | None,
    name: str | None,
    key: str | None,
    cities: dict[str | None, str | None],
) -> _Record:
    digits = _NON_DIGIT.sub("", phone or "")
    local = (email or "").partition("@")[0]
    if city not in cities:  # a few hundred distinct cities among any number of records
        cities[city] = city_key(city)
    return _Record(phone or None, email or None, digits, local, cities[city], key or None, name or "")


def _words(name: str) -> str:
    """The name case-folded, words separated by single spaces (for ``token_sort_ratio``)."""
    return " ".join(w for w in _NON_ALNUM.split(name.casefold()) if w)


def _block_keys(record: _Record) -> list[str]:
    """The fuzzy rule's blocks of one record (empty without a city or a name: the rule needs both).

    Phone: the tail cut in two halves, and the tail without its two middle digits: one wrong digit leaves
    a half whole, two swapped digits leave a half whole or sit in the middle. E-mail: the local part itself
    (the same address at another provider), and without each of its characters in turn (symmetric delete:
    one wrong, missing or swapped letter leaves one key in common).
    """
    if record.city is None or record.key is None:
        return []
    keys: list[str] = []
    city = record.city + "\x1f"
    tail = record.digits[-PHONE_TAIL:]
    if len(tail) == PHONE_TAIL:
        half = PHONE_TAIL // 2
        keys += [
            city + "p0" + tail[:half],
            city + "p1" + tail[half:],
            city + "pm" + tail[: half - 1] + tail[half + 1 :],
        ]
    local = record.local
    if MIN_LOCAL <= len(local) <= MAX_LOCAL:
        keys.append(city + "l=" + local)
        keys += [city + "l-" + local[:i] + local[i + 1 :] for i in range(len(local))]
    return keys


def phone_similarity(a: str, b: str) -> float:
    """Similarity of two phones' digits in [0, 1]: 1 for the same last eight, 0.9 for one digit wrong or two
    swapped (same length), 0 otherwise."""
    if not a or not b:
        return 0.0
    if len(a) >= PHONE_TAIL and len(b) >= PHONE_TAIL and a[-PHONE_TAIL:] == b[-PHONE_TAIL:]:
        return 1.0
    if len(a) == len(b) and OSA.distance(a, b, score_cutoff=1) <= 1:
        return 0.9
    return 0.0


def local_similarity(a: str, b: str) -> float:
    """Similarity of two e-mail local parts in [0, 1]: 1 equal (the same address at another provider), 0.9
    one letter wrong, missing or swapped with the digits in them the same ("wangwei88" ~ "wnagwei88", not
    "wangwei89": numbered addresses are how namesakes tell themselves apart), 0 otherwise."""
    if len(a) < MIN_LOCAL or len(b) < MIN_LOCAL:
        return 0.0
    if a == b:
        return 1.0
    if _NON_DIGIT.sub("", a) != _NON_DIGIT.sub("", b):
        return 0.0
    return 0.9 if OSA.distance(a, b, score_cutoff=1) <= 1 else 0.0


def name_similarity(a: _Record, b: _Record) -> float:
    """Similarity of two records' names, 0-100 (see :data:`NAME_THRESHOLD`)."""
    if a.key is None or b.key is None:
        return 0.0
    if a.key == b.key:
        return 100.0
    if not (a.key.isascii() and b.key.isascii()):
        return 0.0  # CJK: equal or different, see NAME_THRESHOLD
    return max(
        fuzz.ratio(a.key, b.key, score_cutoff=NAME_THRESHOLD),
        fuzz.token_sort_ratio(_words(a.name), _words(b.name), score_cutoff=NAME_THRESHOLD),
    )


def _fuzzy(a: _Record, b: _Record) -> float | None:
    """The fuzzy rule's score in [0, 1] for two records in the same city, or ``None`` for no match."""
    phone = phone_similarity(a.digits, b.digits)
    local = local_similarity(a.local, b.local)
    if phone == 0.0 and (local == 0.0 or (a.digits and b.digits)):
        # Two different phones contradict what the e-mail suggests: namesakes pick the same local part at
        # other providers ("wanglei1962@qq.com" and "wanglei1962@163.com" are two people as often as one).
        return None
    name = name_similarity(a, b)
    if name < NAME_THRESHOLD:
        return None
    if phone == 0.0 and local < 1.0 and name < 100.0:
        # Local parts are made of the name ("wanghao4427" / "wangtao4427"): a letter off in both is one
        # difference seen twice, not two pieces of evidence.
        return None
    return round((name / 100.0 + max(phone, local)) / 2.0, 3)


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, node: int) -> int:
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:  # path compression keeps the chains short
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class _Evidence:
    """What was found so far: the groups of leads, and each lead's strongest edge to another lead and to a
    known person (nodes below ``n`` are leads, ``n + j`` is known person ``j``)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.groups = _UnionFind(n)
        self.best_lead: list[_Edge | None] = [None] * n
        self.best_known: list[_Edge | None] = [None] * n

    def link(self, i: int, other: int, rule: str, score: float) -> None:
        if other >= self.n:
            edge, current = _Edge(rule, score, other), self.best_known[i]
            if current is None or edge.strength() > current.strength():
                self.best_known[i] = edge
            return
        self.groups.union(i, other)
        for a, b in ((i, other), (other, i)):
            edge, current = _Edge(rule, score, b), self.best_lead[a]
            if current is None or edge.strength() > current.strength():
                self.best_lead[a] = edge


def _link_exact(
    evidence: _Evidence, leads: Sequence[Lead], records: list[_Record], ids: list[str], order: list[int]
) -> None:
    """Customer id, phone and e-mail: each lead links to the earliest lead with the same value and to the
    known person with it (a customer id the known list lacks still joins the leads that carry it)."""
    n = evidence.n
    # known customers by id, phone and e-mail; the smallest customer id wins when the CRM holds twins
    known_by: tuple[dict[str, int], dict[str, int], dict[str, int]] = ({}, {}, {})
    for j in sorted(range(len(ids)), key=lambda j: ids[j], reverse=True):
        for index, value in zip(known_by, (ids[j], records[n + j].phone, records[n + j].email), strict=True):
            if value:
                index[value] = n + j
    first_by: tuple[dict[str, int], dict[str, int], dict[str, int]] = ({}, {}, {})
    for i in order:
        values = (leads[i].raw.customer_id, records[i].phone, records[i].email)
        for value, known, first, rule in zip(
            values, known_by, first_by, ("customer_id", "phone", "email"), strict=True
        ):
            if value is None:
                continue
            if value in known:
                evidence.link(i, known[value], rule, 1.0)
            if value in first:
                evidence.link(i, first[value], rule, 1.0)
            else:
                first[value] = i


def _link_fuzzy(evidence: _Evidence, records: list[_Record]) -> None:
    """The fuzzy rule, within blocks; known persons are not compared with each other."""
    n = evidence.n
    # most keys are unique: a list is made only for a key seen twice
    first_in: dict[str, int] = {}
    shared: dict[str, list[int]] = {}
    for node, record in enumerate(records):
        for key in _block_keys(record):
            seen = first_in.setdefault(key, node)
            if seen != node:
                members = shared.get(key)
                if members is None:
                    shared[key] = [seen, node]
                elif len(members) <= MAX_BLOCK:
                    members.append(node)
    compared: set[tuple[int, int]] = set()
    for members in shared.values():
        if len(members) > MAX_BLOCK:
            continue
        for x, a in enumerate(members):
            if a >= n:
                break  # nodes are in order: leads first, then known persons
            for b in members[x + 1 :]:
                if b < n and evidence.groups.find(a) == evidence.groups.find(b):
                    continue  # already the same person by a stronger rule
                if b >= n and evidence.best_known[a] is not None:
                    continue  # already matched a known customer, by a rule at least as strong
                if (a, b) in compared:
                    continue
                compared.add((a, b))
                score = _fuzzy(records[a], records[b])
                if score is not None:
                    evidence.link(a, b, "name_city_fuzzy", score)


def _resolve(evidence: _Evidence, ids: list[str], order: list[int]) -> list[Match]:
    """One match per duplicate lead from the groups and edges (see the module docstring)."""
    n = evidence.n
    members_of: dict[int, list[int]] = defaultdict(list)
    for i in order:
        members_of[evidence.groups.find(i)].append(i)  # earliest first
    matches: list[Match] = []
    for group in members_of.values():
        earliest = group[0]
        group_known = next(
            (evidence.best_known[i] for i in group if evidence.best_known[i] is not None), None
        )
        for i in group:
            own_known, own = evidence.best_known[i], evidence.best_lead[i]
            if own_known is not None:
                matches.append(Match(i, ids[own_known.other - n], own_known.rule, own_known.score))
            elif group_known is not None:
                assert own is not None  # a group with a known match and more than this lead
                matches.append(Match(i, ids[group_known.other - n], f"chain:{own.rule}", own.score))
            elif i != earliest:
                assert own is not None  # a lead in a group of two or more has an edge
                rule = own.rule if own.other == earliest else f"chain:{own.rule}"
                matches.append(Match(i, earliest, rule, own.score))
    matches.sort(key=lambda m: m.index)
    return matches


def find_duplicates(leads: Sequence[Lead], known: Sequence[Person]) -> list[Match]:
    """One :class:`Match` for each lead that is the same person as an earlier lead of the batch or a known
    customer (a known customer preferred), ordered by lead index; the same input gives the same output."""
    cities: dict[str | None, str | None] = {}
    records = [_record(x.phone, x.email, x.city, x.name, x.name_key, cities) for x in leads]
    records += [_record(p.phone, p.email, p.city, p.name, p.name_key, cities) for p in known]
    ids = [p.customer_id for p in known]
    # earliest first: created_at, then index (a stable sort keeps the index order among equal times)
    order = sorted(range(len(leads)), key=lambda i: leads[i].raw.created_at)
    evidence = _Evidence(len(leads))
    _link_exact(evidence, leads, records, ids, order)
    _link_fuzzy(evidence, records)
    return _resolve(evidence, ids, order)
