"""The lead records every step of cloud/leads/ passes along (no I/O here).

A :class:`RawLead` is what a source gave (a file line, a campaign response, the car, a score); cleaning
(:mod:`cloud.leads.clean`) turns it into a :class:`Lead` or a :class:`Rejection` with the reason; duplicate
finding (:mod:`cloud.leads.dedupe`) compares leads with each other and with :class:`Person` records of known
customers and gives :class:`Match` es; rating (:mod:`cloud.leads.rate`) gives each lead a :class:`Rating`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

#: where a lead came from
Source = Literal["form", "event", "campaign", "car", "upgrade", "service", "import"]
SOURCES: tuple[str, ...] = ("form", "event", "campaign", "car", "upgrade", "service", "import")
#: what the person asked for or showed, strongest intent first
Intent = Literal["order", "quote", "test_drive", "service", "brochure", "newsletter", "unknown"]
INTENTS: tuple[str, ...] = ("order", "quote", "test_drive", "service", "brochure", "newsletter", "unknown")


@dataclass(frozen=True, slots=True)
class RawLead:
    """One lead as its source gave it; every text field may be messy, empty or junk."""

    source: Source
    channel: str  # how it reached us: "website", "app", "wechat", "autoshow", "call_centre", "in_car", ...
    created_at: datetime  # aware
    external_id: str | None = None  # the source's own id (a form submission id, a campaign push id)
    activity: str | None = None  # the campaign or event it answered (campaign_id, "autoshow-2026-guangzhou")
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    city: str | None = None
    region: str | None = None
    model_interest: str | None = None  # the car model asked about
    intent: Intent = "unknown"
    message: str | None = None
    customer_id: str | None = None  # when the source knows the person (the car's owner, a scored customer)
    vehicle_id: str | None = None
    consent_contact: bool | None = None  # the person agreed to be contacted (None: the source did not say)
    line: int | None = None  # the file line it came from, for the import report


@dataclass(frozen=True, slots=True)
class Lead:
    """A cleaned lead: normalised contact fields (``phone`` E.164, ``email`` lower case, ``name`` NFKC with
    single spaces), the key fields for matching, and what cleaning noticed."""

    raw: RawLead
    name: str | None
    phone: str | None  # E.164, "+8613812345678"
    email: str | None
    city: str | None
    region: str | None
    model_interest: str | None
    name_key: str | None  # for matching: case-folded, spaces and punctuation removed
    contactable: bool  # a valid phone or e-mail
    notes: tuple[str, ...] = ()  # what was repaired ("phone: added country code +86")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A raw lead cleaning refused, and why (one line a person can act on)."""

    raw: RawLead
    reason: str


@dataclass(frozen=True, slots=True)
class Person:
    """A known customer's contact fields, to match leads against (already normalised as :class:`Lead`)."""

    customer_id: str
    name: str | None
    phone: str | None
    email: str | None
    city: str | None
    name_key: str | None


@dataclass(frozen=True, slots=True)
class Match:
    """Lead ``index`` is the same person as ``other`` (another lead's index, or a known customer's id),
    found by ``rule`` with ``score`` in [0, 1]."""

    index: int
    other: int | str
    rule: str  # "phone", "email", "name_city_fuzzy", ...
    score: float


@dataclass(frozen=True, slots=True)
class Rating:
    """A lead's grade (A best), its score in [0, 100] and the reasons that made it, strongest first."""

    grade: Literal["A", "B", "C"]
    score: float
    reasons: tuple[str, ...] = field(default=())
