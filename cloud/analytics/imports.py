"""Data fusion: CRM and online data imported from CSV or JSON files beside what the cars send.

Each kind of file has a row model (what a line must hold) and a target table. An import reads the whole
file, validates every line, stages the rows with their line numbers in a temporary table, checks references
(a vehicle's customer, a visit's vehicle, an interaction's account and item) in SQL, and only then upserts,
all in one transaction: a file with any bad line is refused whole with every error by line, and nothing of
it is written. Re-importing a file updates rows by their key. Interactions are events: one logged twice (the
same account, item, kind and time) is stored once, in a file or across imports.

No import brings an erased person back: a line naming a customer, vehicle or account that the erasure ledger
holds (cloud/privacy/ledger.py) and that is not in its table now is skipped and reported by line, not
written — an old CRM export imported again after an erasure. A car of an erased owner sold on comes back
through a ``vehicles`` line naming its new owner. When the ledger holds entries, imports need its key.

Formats: CSV with a header row, a JSON array of objects, or JSON lines (one object per line); the file
ending (``.csv``, ``.json``, ``.jsonl``) decides. Phones are kept as digits only (a leading country code
86 dropped), emails and name keys in lower case, so that identification compares like with like.

Errors::

    ImportError_ (ValueError)      the file as a whole: unknown kind, unreadable, bad header
    └── RowErrors                  one or more lines failed; ``errors`` holds (line, message) pairs
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cloud.privacy.ledger import ErasedIds
from edge_agent.protocol import format_validation_error

MAX_REPORTED_ERRORS = 50


class ImportError_(ValueError):  # the builtin ImportError means something else
    """A file that cannot be imported at all."""


class RowErrors(ImportError_):
    """Lines of a file that failed validation or reference checks; nothing of the file was written."""

    def __init__(self, path: str, errors: list[tuple[int, str]]) -> None:
        self.errors = errors
        shown = "\n".join(f"  line {line}: {message}" for line, message in errors[:MAX_REPORTED_ERRORS])
        more = (
            f"\n  ... and {len(errors) - MAX_REPORTED_ERRORS} more"
            if len(errors) > MAX_REPORTED_ERRORS
            else ""
        )
        super().__init__(f"{path}: {len(errors)} bad line(s), nothing imported:\n{shown}{more}")


def digits(phone: str | None) -> str | None:
    """A phone number as digits only, without the country code 86; None when it has no digits."""
    if not phone:
        return None
    d = re.sub(r"\D", "", phone)
    if len(d) == 13 and d.startswith("86"):
        d = d[2:]
    return d or None


def name_key(name: str | None) -> str | None:
    """A name for matching: lower case, single spaces."""
    return " ".join(name.lower().split()) or None if name else None


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class CustomerRow(_Row):
    """customers: one line per customer."""

    customer_id: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")
    birth_year: int | None = Field(default=None, ge=1900, le=2026)
    gender: str | None = Field(default=None, max_length=16)
    region: str | None = Field(default=None, max_length=64)
    city: str | None = Field(default=None, max_length=64)
    income_band: str | None = Field(default=None, max_length=32)
    education: str | None = Field(default=None, max_length=32)


class DealerRow(_Row):
    """dealers: one line per dealer."""

    dealer_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    region: str | None = Field(default=None, max_length=64)
    city: str | None = Field(default=None, max_length=64)
    #: the dealer's service booking page (service reminders link to it) and its endpoint for fault
    #: notifications (cloud/service/); left as they were when a line has none
    booking_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")
    webhook_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")
    #: for lead routing (cloud/leads/): showroom sales or the call-centre team, the leads it can take a day
    #: (empty: no limit), the models it sells (``a;b``); left as they were when a line has none
    role: str | None = Field(default=None, pattern=r"^(showroom|call_centre)$")
    capacity_per_day: int | None = Field(default=None, ge=0, le=100_000)
    models: list[str] | None = Field(default=None, max_length=100)

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        return _listed(value) if value not in (None, "") else None


class CreditScoreRow(_Row):
    """credit_scores: a customer's credit score as a scorecard gave it (``drivesight models train
    credit_score``, or the lender's own): points (0-1000), the reason codes of a low score (``a;b;c``), the
    model, when."""

    customer_id: str = Field(min_length=1, max_length=64)
    scored_at: datetime
    score: float = Field(ge=0, le=1000)
    reasons: list[str] = Field(default=[], max_length=10)
    model: str = Field(min_length=1, max_length=128)

    @field_validator("reasons", mode="before")
    @classmethod
    def _reasons(cls, value: Any) -> Any:
        return _listed(value)

    @field_validator("scored_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _aware_or_none(value) or value


class TargetRow(_Row):
    """targets: a dealer's monthly targets (cloud/leads/kpis.py reads them against the actuals); ``month`` is
    its first day (``2026-12-01``, or ``2026-12``)."""

    dealer_id: str = Field(min_length=1, max_length=64)
    month: date
    leads: int | None = Field(default=None, ge=0, le=10_000_000)
    contacts: int | None = Field(default=None, ge=0, le=10_000_000)
    test_drives: int | None = Field(default=None, ge=0, le=10_000_000)
    orders: int | None = Field(default=None, ge=0, le=10_000_000)

    @field_validator("month", mode="before")
    @classmethod
    def _month(cls, value: Any) -> Any:
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}", value.strip()):
            return value.strip() + "-01"
        return value

    @field_validator("month")
    @classmethod
    def _first_day(cls, value: date) -> date:
        if value.day != 1:
            raise ValueError("a month is given by its first day, e.g. 2026-12-01 or 2026-12")
        return value


class VehicleRow(_Row):
    """vehicles: master data of a vehicle and its purchase by a customer."""

    vehicle_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    dealer_id: str | None = Field(default=None, max_length=64)
    model: str = Field(min_length=1, max_length=64)
    trim_level: str | None = Field(default=None, max_length=64)
    model_year: int = Field(ge=1990, le=2030)
    powertrain: str = Field(pattern=r"^(ice|ev|hybrid)$")
    region: str | None = Field(default=None, max_length=64)
    purchased_at: date
    price: float | None = Field(default=None, ge=0)
    #: the car's IANA time zone (e.g. Asia/Shanghai): campaigns keep quiet hours in it, and hold a car without
    time_zone: str | None = Field(default=None, max_length=64)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(
                    f"unknown time zone {value!r}: use an IANA name such as Asia/Shanghai"
                ) from exc
        return value


class ServiceVisitRow(_Row):
    """service_visits: one line per workshop visit."""

    visit_id: str = Field(min_length=1, max_length=64)
    vehicle_id: str = Field(min_length=1, max_length=64)
    dealer_id: str | None = Field(default=None, max_length=64)
    visited_at: date
    kind: str = Field(min_length=1, max_length=32)
    cost: float | None = Field(default=None, ge=0)
    #: what the workshop read on the odometer (km): service reminders count mileage from it
    odometer_km: float | None = Field(default=None, ge=0, le=3_000_000)


class BookingRow(_Row):
    """bookings: a service booking from the dealer's CRM; one made after a car became due stops its service
    reminders (cloud/service/), a cancelled one does not. ``status``: booked (default), cancelled, done."""

    booking_id: str = Field(min_length=1, max_length=64)
    vehicle_id: str = Field(min_length=1, max_length=64)
    dealer_id: str | None = Field(default=None, max_length=64)
    booked_at: datetime
    appointment_at: datetime | None = None
    status: str | None = Field(default=None, pattern=r"^(booked|cancelled|done)$")

    @field_validator("booked_at", "appointment_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _aware_or_none(value)


class ComplaintRow(_Row):
    """complaints: one line per complaint; ``resolved_at`` (optional) is the day it was resolved, so that the
    churn features of an earlier day see it as it was then."""

    complaint_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    opened_at: date
    category: str = Field(min_length=1, max_length=32)
    resolved: bool
    resolved_at: date | None = None

    @model_validator(mode="after")
    def _resolution(self) -> ComplaintRow:
        if self.resolved_at is not None:
            if not self.resolved:
                raise ValueError("resolved_at is given but resolved is false")
            if self.resolved_at < self.opened_at:
                raise ValueError(f"resolved_at {self.resolved_at} is before opened_at {self.opened_at}")
        return self


class AccountRow(_Row):
    """accounts: one line per online account (site or app)."""

    account_id: str = Field(min_length=1, max_length=64)
    channel: str = Field(pattern=r"^(site|app)$")
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")
    birth_year: int | None = Field(default=None, ge=1900, le=2026)
    city: str | None = Field(default=None, max_length=64)


def _degree_pairs(value: Any) -> Any:
    """Categories from a file cell, ``suv:0.9;family:0.3`` (a JSON object passes as it is)."""
    if isinstance(value, str):
        pairs = [p.split(":") for p in value.split(";") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("write categories as name:degree;name:degree")
        return {k.strip(): v.strip() for k, v in pairs}
    return value


class ItemRow(_Row):
    """items: a content item and its category memberships, ``categories`` as ``suv:0.9;family:0.3``."""

    item_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32)
    title: str | None = Field(default=None, max_length=300)
    categories: dict[str, float]

    @field_validator("categories", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return _degree_pairs(value)

    @field_validator("categories")
    @classmethod
    def _degrees(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("an item needs at least one category")
        bad = {k: v for k, v in value.items() if not 0 < v <= 1}
        if bad:
            raise ValueError(f"membership degrees must be in (0, 1]: {bad}")
        return value


def _listed(value: Any) -> Any:
    """A list from a file cell: ``a;b;c`` (CSV) or a JSON array."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(";") if v.strip()]
    return [] if value is None else value


def _aware_or_none(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("give the time with its UTC offset, e.g. 2026-08-01T10:00:00Z")
    return value


class CatalogueRow(_Row):
    """catalogue: something campaigns can push (cloud/push/): an offer, a test drive, an accessory, a service
    package, insurance, a charging plan or a feature unlockable over the air, with its targets, validity,
    cost per send and value per conversion. Lists (tags, targets) as ``a;b``; categories as for items."""

    item_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(
        pattern=r"^(offer|test_drive|accessory|service_package|insurance|charging_plan|ota_feature|article)$"
    )
    title: str = Field(min_length=1, max_length=120)
    body: str | None = Field(default=None, max_length=1000)
    url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")
    category: str | None = Field(default=None, max_length=64)
    tags: list[str] = Field(default=[], max_length=50)
    target_models: list[str] = Field(default=[], max_length=100)
    target_regions: list[str] = Field(default=[], max_length=100)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    cost_per_send: float = Field(default=0.0, ge=0, le=1e6)
    value_per_conversion: float = Field(default=0.0, ge=0, le=1e9)
    #: a financing or leasing offer: only customers whose newest credit score is at least this get it
    min_credit_score: float | None = Field(default=None, ge=0, le=1000)
    categories: dict[str, float] = {}

    @field_validator("tags", "target_models", "target_regions", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _listed(value)

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _aware_or_none(value)

    @field_validator("categories", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return _degree_pairs(value) if value not in (None, "") else {}

    @field_validator("categories")
    @classmethod
    def _degrees(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0 < v <= 1}
        if bad:
            raise ValueError(f"membership degrees must be in (0, 1]: {bad}")
        return value

    @model_validator(mode="after")
    def _window(self) -> CatalogueRow:
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class ConversionRow(_Row):
    """conversions: a customer bought or took up a catalogue item (from the CRM), attributed to campaigns."""

    customer_id: str = Field(min_length=1, max_length=64)
    item_id: str = Field(min_length=1, max_length=64)
    at: datetime
    value: float | None = Field(default=None, ge=0, le=1e9)

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _aware_or_none(value) or value


class InteractionRow(_Row):
    """interactions: an account viewed, commented on, collected or rated an item."""

    account_id: str = Field(min_length=1, max_length=64)
    item_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(pattern=r"^(view|comment|collect|rate)$")
    at: datetime

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give the time with its UTC offset, e.g. 2026-08-01T10:00:00Z")
        return value


class LifeEventRow(_Row):
    """life_events: a life event the CRM or the dealer recorded for a customer, ``kind`` one of new_child,
    married, moved, new_job, retired (the migration's CHECK holds the same list), on the day it happened (not
    in the future). The upgrade intent reads them (cloud/upgrade/): a car may become too small or too far."""

    customer_id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32)
    happened_on: date

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        kinds = ("new_child", "married", "moved", "new_job", "retired")
        if value not in kinds:
            raise ValueError(f"unknown life event {value!r}; use one of {', '.join(kinds)}")
        return value

    @field_validator("happened_on")
    @classmethod
    def _not_future(cls, value: date) -> date:
        if value > date.today():
            raise ValueError(f"{value} is in the future: a life event is recorded once it happened")
        if value.year < 1950:
            raise ValueError(f"{value} is too early to be a customer's life event")
        return value


class ConsentRow(_Row):
    """consent: a person's grant or withdrawal of a scope (cloud/privacy/consent.py), as a CRM or the app
    logged it; cars report their own and are not imported."""

    customer_id: str = Field(min_length=1, max_length=64)
    scope: str = Field(pattern=r"^(marketing|profiling|location|rd|dealer_sharing)$")
    granted: bool
    at: datetime
    source: str | None = Field(default=None, pattern=r"^(app|dealer|import)$")  # empty: import

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give the time with its UTC offset, e.g. 2026-08-01T10:00:00Z")
        return value


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of import: its row model, staging columns, reference checks and upsert."""

    row: type[_Row]
    table: str
    columns: tuple[str, ...]
    #: (staging column, referenced table, its key): lines whose value is in neither are refused
    references: tuple[tuple[str, str, str], ...]
    upsert: str
    to_record: Callable[[Any], tuple[object, ...]] | None = None


_DEALER_COLS = (
    "dealer_id", "name", "region", "city", "booking_url", "webhook_url", "role", "capacity_per_day", "models",
)  # fmt: skip
_COMPLAINT_COLS = ("complaint_id", "customer_id", "opened_at", "category", "resolved", "resolved_at")


def _upsert(table: str, columns: tuple[str, ...], key: str, stamp: str | None = "imported_at") -> str:
    """Insert or update by ``key``; ``stamp`` records when (incremental analytics runs look at it)."""
    cols = ", ".join(columns)
    stamps = [f"{stamp} = now()"] if stamp else []
    updates = ", ".join([*(f"{c} = excluded.{c}" for c in columns if c != key), *stamps])
    return (
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM staging ORDER BY line"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


_CUSTOMER_COLS = (
    "customer_id",
    "name",
    "phone",
    "email",
    "birth_year",
    "gender",
    "region",
    "city",
    "income_band",
    "education",
)
_ACCOUNT_COLS = ("account_id", "channel", "name", "name_key", "phone", "email", "birth_year", "city")
_VEHICLE_COLS = (
    "vehicle_id",
    "customer_id",
    "dealer_id",
    "model",
    "trim_level",
    "model_year",
    "powertrain",
    "region",
    "purchased_at",
    "price",
    "time_zone",
)

_CATALOGUE_COLS = (
    "item_id", "kind", "title", "body", "url", "category", "tags", "target_models", "target_regions",
    "valid_from", "valid_until", "cost_per_send", "value_per_conversion", "min_credit_score", "categories",
)  # fmt: skip

KINDS: dict[str, Kind] = {
    "dealers": Kind(
        DealerRow,
        "dealers",
        _DEALER_COLS,
        (),
        "INSERT INTO dealers (dealer_id, name, region, city, booking_url, webhook_url, capacity_per_day,"
        " models) SELECT dealer_id, name, region, city, booking_url, webhook_url, capacity_per_day,"
        " coalesce(models, '{}') FROM staging ORDER BY line"
        " ON CONFLICT (dealer_id) DO UPDATE SET name = excluded.name, region = excluded.region,"
        " city = excluded.city, booking_url = coalesce(excluded.booking_url, dealers.booking_url),"
        " webhook_url = coalesce(excluded.webhook_url, dealers.webhook_url),"
        " capacity_per_day = coalesce(excluded.capacity_per_day, dealers.capacity_per_day),"
        " models = CASE WHEN cardinality(excluded.models) = 0 THEN dealers.models ELSE excluded.models END;"
        " UPDATE dealers d SET role = s.role FROM staging s"
        " WHERE s.dealer_id = d.dealer_id AND s.role IS NOT NULL",
    ),
    "credit_scores": Kind(
        CreditScoreRow,
        "credit_scores",
        ("customer_id", "scored_at", "score", "reasons", "model"),
        (("customer_id", "customers", "customer_id"),),
        "INSERT INTO credit_scores (customer_id, scored_at, score, reasons, model)"
        " SELECT DISTINCT ON (customer_id, scored_at) customer_id, scored_at, score, reasons, model"
        " FROM staging ORDER BY customer_id, scored_at, line DESC"
        " ON CONFLICT (customer_id, scored_at) DO UPDATE SET score = excluded.score,"
        " reasons = excluded.reasons, model = excluded.model, imported_at = now()",
    ),
    "targets": Kind(
        TargetRow,
        "dealer_targets",
        ("dealer_id", "month", "leads", "contacts", "test_drives", "orders"),
        (("dealer_id", "dealers", "dealer_id"),),
        "INSERT INTO dealer_targets (dealer_id, month, leads, contacts, test_drives, orders)"
        " SELECT DISTINCT ON (dealer_id, month) dealer_id, month, leads, contacts, test_drives, orders"
        " FROM staging ORDER BY dealer_id, month, line DESC"
        " ON CONFLICT (dealer_id, month) DO UPDATE SET leads = excluded.leads, contacts = excluded.contacts,"
        " test_drives = excluded.test_drives, orders = excluded.orders",
    ),
    "customers": Kind(
        CustomerRow,
        "customers",
        _CUSTOMER_COLS,
        (),
        _upsert("customers", _CUSTOMER_COLS, "customer_id", "updated_at"),
        lambda r: (
            *(getattr(r, c) for c in _CUSTOMER_COLS[:2]),
            digits(r.phone),
            r.email.lower() if r.email else None,
            *(getattr(r, c) for c in _CUSTOMER_COLS[4:]),
        ),
    ),
    "vehicles": Kind(
        VehicleRow,
        "vehicles",
        _VEHICLE_COLS,
        (("customer_id", "customers", "customer_id"), ("dealer_id", "dealers", "dealer_id")),
        "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, customer_id, dealer_id, model, trim_level,"
        " model_year, powertrain, region, time_zone) SELECT vehicle_id, now(), now(), customer_id, dealer_id,"
        " model, trim_level, model_year, powertrain, region, time_zone FROM staging ORDER BY line"
        " ON CONFLICT (vehicle_id) DO UPDATE SET customer_id = excluded.customer_id,"
        " dealer_id = excluded.dealer_id, model = excluded.model, trim_level = excluded.trim_level,"
        " model_year = excluded.model_year, powertrain = excluded.powertrain, region = excluded.region,"
        " time_zone = coalesce(excluded.time_zone, vehicles.time_zone);"
        " INSERT INTO purchases (vehicle_id, customer_id, dealer_id, purchased_at, price)"
        " SELECT vehicle_id, customer_id, dealer_id, purchased_at, price FROM staging ORDER BY line"
        " ON CONFLICT (vehicle_id) DO UPDATE SET customer_id = excluded.customer_id,"
        " dealer_id = excluded.dealer_id, purchased_at = excluded.purchased_at, price = excluded.price",
    ),
    "service_visits": Kind(
        ServiceVisitRow,
        "service_visits",
        ("visit_id", "vehicle_id", "dealer_id", "visited_at", "kind", "cost", "odometer_km"),
        (("vehicle_id", "vehicles", "vehicle_id"), ("dealer_id", "dealers", "dealer_id")),
        _upsert(
            "service_visits",
            ("visit_id", "vehicle_id", "dealer_id", "visited_at", "kind", "cost", "odometer_km"),
            "visit_id",
        ),
    ),
    "bookings": Kind(
        BookingRow,
        "service_bookings",
        ("booking_id", "vehicle_id", "dealer_id", "booked_at", "appointment_at", "status"),
        (("vehicle_id", "vehicles", "vehicle_id"), ("dealer_id", "dealers", "dealer_id")),
        _upsert(
            "service_bookings",
            ("booking_id", "vehicle_id", "dealer_id", "booked_at", "appointment_at", "status"),
            "booking_id",
        ),
        lambda r: (
            r.booking_id,
            r.vehicle_id,
            r.dealer_id,
            r.booked_at,
            r.appointment_at,
            r.status or "booked",
        ),
    ),
    "complaints": Kind(
        ComplaintRow,
        "complaints",
        _COMPLAINT_COLS,
        (("customer_id", "customers", "customer_id"),),
        _upsert("complaints", _COMPLAINT_COLS, "complaint_id"),
    ),
    "accounts": Kind(
        AccountRow,
        "online_accounts",
        _ACCOUNT_COLS,
        (),
        _upsert("online_accounts", _ACCOUNT_COLS, "account_id"),
        lambda r: (
            r.account_id,
            r.channel,
            r.name,
            name_key(r.name),
            digits(r.phone),
            r.email.lower() if r.email else None,
            r.birth_year,
            r.city,
        ),
    ),
    "items": Kind(
        ItemRow,
        "content_items",
        ("item_id", "kind", "title", "categories"),
        (),
        "INSERT INTO content_items (item_id, kind, title)"
        " SELECT item_id, kind, title FROM staging ORDER BY line"
        " ON CONFLICT (item_id) DO UPDATE SET kind = excluded.kind, title = excluded.title;"
        " DELETE FROM item_categories WHERE item_id IN (SELECT item_id FROM staging);"
        " INSERT INTO item_categories (item_id, category, membership)"
        " SELECT item_id, c.key, c.value::real FROM staging, jsonb_each_text(categories) c",
        lambda r: (r.item_id, r.kind, r.title, json.dumps(r.categories)),
    ),
    "consent": Kind(
        ConsentRow,
        "consent_events",
        ("customer_id", "scope", "granted", "at", "source"),
        (("customer_id", "customers", "customer_id"),),
        # events: one already recorded (same person, scope, decision, time and source) is not added again
        "INSERT INTO consent_events (customer_id, scope, granted, at, source)"
        " SELECT DISTINCT s.customer_id, s.scope, s.granted, s.at, s.source FROM staging s"
        " WHERE NOT EXISTS (SELECT 1 FROM consent_events e WHERE e.customer_id = s.customer_id"
        " AND e.scope = s.scope AND e.granted = s.granted AND e.at = s.at AND e.source = s.source)",
        lambda r: (r.customer_id, r.scope, r.granted, r.at, r.source or "import"),
    ),
    "catalogue": Kind(
        CatalogueRow,
        "content_items",
        _CATALOGUE_COLS,
        (),
        "INSERT INTO content_items (" + ", ".join(_CATALOGUE_COLS[:-1]) + ", updated_at)"
        " SELECT " + ", ".join(_CATALOGUE_COLS[:-1]) + ", now() FROM staging ORDER BY line"
        " ON CONFLICT (item_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in _CATALOGUE_COLS[1:-1])
        + ", updated_at = now();"
        # categories given replace the item's; none given keep them (a catalogue update of prices only)
        " DELETE FROM item_categories"
        " WHERE item_id IN (SELECT item_id FROM staging WHERE categories <> '{}');"
        " INSERT INTO item_categories (item_id, category, membership)"
        " SELECT item_id, c.key, c.value::real FROM staging, jsonb_each_text(categories) c",
        lambda r: (
            r.item_id,
            r.kind,
            r.title,
            r.body,
            r.url,
            r.category,
            r.tags,
            r.target_models,
            r.target_regions,
            r.valid_from,
            r.valid_until,
            r.cost_per_send,
            r.value_per_conversion,
            r.min_credit_score,
            json.dumps(r.categories),
        ),
    ),
    "conversions": Kind(
        ConversionRow,
        "conversions",
        ("customer_id", "item_id", "at", "value"),
        (("customer_id", "customers", "customer_id"), ("item_id", "content_items", "item_id")),
        "INSERT INTO conversions (customer_id, item_id, at, value) SELECT customer_id, item_id, at, value"
        " FROM staging ORDER BY line ON CONFLICT DO NOTHING",
    ),
    "life_events": Kind(
        LifeEventRow,
        "life_events",
        ("customer_id", "kind", "happened_on"),
        (("customer_id", "customers", "customer_id"),),
        "INSERT INTO life_events (customer_id, kind, happened_on) SELECT customer_id, kind, happened_on"
        " FROM staging ORDER BY line ON CONFLICT DO NOTHING",
    ),
    "interactions": Kind(
        InteractionRow,
        "interactions",
        ("account_id", "item_id", "kind", "at"),
        (("account_id", "online_accounts", "account_id"), ("item_id", "content_items", "item_id")),
        "INSERT INTO interactions (account_id, item_id, kind, at) SELECT account_id, item_id, kind, at"
        " FROM staging ORDER BY line ON CONFLICT DO NOTHING",
    ),
}


#: per kind, the columns that name a person or their car: (column, ledger kind, table holding the id); a line
#: whose id the erasure ledger names and that table lacks is an erased person's, skipped. A ``vehicles`` line
#: is judged by its customer only: a car of an erased owner sold to someone new is registered again.
_PERSON_COLUMNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "customers": (("customer_id", "customer", "customers"),),
    "vehicles": (("customer_id", "customer", "customers"),),
    "service_visits": (("vehicle_id", "vehicle", "vehicles"),),
    "bookings": (("vehicle_id", "vehicle", "vehicles"),),
    "complaints": (("customer_id", "customer", "customers"),),
    "consent": (("customer_id", "customer", "customers"),),
    "accounts": (("account_id", "account", "online_accounts"),),
    "interactions": (("account_id", "account", "online_accounts"),),
    "conversions": (("customer_id", "customer", "customers"),),
    "life_events": (("customer_id", "customer", "customers"),),
    "credit_scores": (("customer_id", "customer", "customers"),),
}


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What one file's import did: rows written, and the lines skipped as an erased person's."""

    imported: int
    erased_lines: tuple[int, ...] = ()


#: kinds whose lines are events (a line twice is stored once), not entities with a key
_EVENT_TABLES = ("interactions", "consent_events", "conversions", "life_events")
#: kinds keyed by more than their first column (a customer's scores, a dealer's months): a key twice in a file
#: is taken from its last line
_COMPOSITE_KEYS = ("credit_scores", "dealer_targets")


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, fields) per record of a CSV, JSON or JSON-lines file (UTF-8); a line that is not a JSON
    object or has more values than the header is yielded with ``__json_error__`` or ``__extra_values__``."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json", ".jsonl"):
        raise ImportError_(f"{path}: use .csv, .json or .jsonl")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportError_(f"{path}: cannot read: {exc}") from exc
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise ImportError_(f"{path}: no header row")
        for record in reader:
            if None in record:
                yield reader.line_num, {"__extra_values__": record.pop(None), **record}
            else:
                yield reader.line_num, record
    elif suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, {"__json_error__": exc.msg}
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportError_(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from exc
        if not isinstance(data, list):
            raise ImportError_(f"{path}: expected a JSON array of objects")
        yield from enumerate(data, start=1)  # JSON arrays: the record's position stands for its line


def _validate(kind: Kind, path: Path) -> tuple[list[tuple[int, tuple[object, ...]]], list[tuple[int, str]]]:
    rows: list[tuple[int, tuple[object, ...]]] = []
    errors: list[tuple[int, str]] = []
    for line, record in read_records(path):
        if not isinstance(record, dict):
            errors.append((line, "expected an object of fields"))
            continue
        if "__json_error__" in record:
            errors.append((line, f"not valid JSON: {record['__json_error__']}"))
            continue
        if "__extra_values__" in record:
            errors.append((line, "more values than the header has columns"))
            continue
        try:
            row = kind.row.model_validate(record)
        except ValidationError as exc:
            errors.append((line, format_validation_error(exc)))
            continue
        values = kind.to_record(row) if kind.to_record else tuple(getattr(row, c) for c in kind.columns)
        rows.append((line, values))
    return rows, errors


def import_file(
    conn: psycopg.Connection[tuple[object, ...]],
    kind_name: str,
    path: Path,
    *,
    ledger_key: bytes | None = None,
) -> ImportResult:
    """Validate and import one file of ``kind_name`` in one transaction; return the rows imported and the
    lines skipped as erased people's (``ledger_key``: the erasure ledger's, needed once it holds entries)."""
    kind = KINDS.get(kind_name)
    if kind is None:
        raise ImportError_(f"unknown kind {kind_name!r}; kinds: {', '.join(KINDS)}")
    rows, errors = _validate(kind, path)
    if errors:
        raise RowErrors(str(path), errors)
    return _store(conn, kind_name, kind, rows, str(path), ledger_key)


def import_rows(
    conn: psycopg.Connection[Any],
    kind_name: str,
    rows: list[BaseModel],
    *,
    source: str = "request",
    ledger_key: bytes | None = None,
) -> ImportResult:
    """Import rows validated already (an API body: ``rows`` of the kind's row model, numbered from 1 in
    errors) through the same staging, checks and upsert as a file."""
    kind = KINDS[kind_name]
    numbered = [
        (n, kind.to_record(r) if kind.to_record else tuple(getattr(r, c) for c in kind.columns))
        for n, r in enumerate(rows, start=1)
    ]
    return _store(conn, kind_name, kind, numbered, source, ledger_key)


def _store(
    conn: psycopg.Connection[tuple[object, ...]],
    kind_name: str,
    kind: Kind,
    rows: list[tuple[int, tuple[object, ...]]],
    source: str,
    ledger_key: bytes | None,
) -> ImportResult:
    """Stage ``rows`` (line, values), check erased people, references and duplicates in SQL, upsert; all
    in one transaction, nothing written when a line is refused."""
    errors: list[tuple[int, str]] = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE staging ON COMMIT DROP AS SELECT 0 AS line, {', '.join(kind.columns)}"
            f" FROM ({_staging_source(kind)}) s LIMIT 0"
        )
        with cur.copy(f"COPY staging (line, {', '.join(kind.columns)}) FROM STDIN") as copy:
            for line, values in rows:
                copy.write_row((line, *values))
        erased_lines = _skip_erased(cur, kind_name, ledger_key)
        for column, table, key in kind.references:
            missing = cur.execute(
                f"SELECT s.line, s.{column} FROM staging s WHERE s.{column} IS NOT NULL AND NOT EXISTS"
                f" (SELECT 1 FROM {table} t WHERE t.{key} = s.{column}) ORDER BY s.line"
            ).fetchall()
            errors += [(int(str(line)), f"{column} {value!r} is not in {table}") for line, value in missing]
        if (
            kind.table not in _EVENT_TABLES + _COMPOSITE_KEYS
        ):  # an event logged twice is stored once; an entity twice: a conflict
            duplicates = cur.execute(
                f"SELECT min(line), {kind.columns[0]} FROM staging"
                f" GROUP BY {kind.columns[0]} HAVING count(*) > 1"
            ).fetchall()
            errors += [
                (int(str(line)), f"{kind.columns[0]} {key!r} appears more than once")
                for line, key in duplicates
            ]
        if errors:
            raise RowErrors(source, sorted(errors))  # the transaction rolls back: nothing written
        for statement in kind.upsert.split(";"):
            cur.execute(statement.encode())
    return ImportResult(len(rows) - len(erased_lines), erased_lines)


def _skip_erased(
    cur: psycopg.Cursor[tuple[object, ...]], kind_name: str, ledger_key: bytes | None
) -> tuple[int, ...]:
    """Delete from staging the lines of people the erasure ledger names (see ``_PERSON_COLUMNS``); return
    their line numbers. Refuses the file when the ledger holds entries and no key was given."""
    columns = _PERSON_COLUMNS.get(kind_name, ())
    if not columns:
        return ()
    erased = ErasedIds(ledger_key)
    erased.refresh(cur.connection)
    if not erased.usable:
        raise ImportError_(
            f"the erasure ledger holds {erased.entries} entries and no ledger key was given: importing"
            f" {kind_name} could bring an erased person back; set DRIVESIGHT_PRIVACY_LEDGER_KEY"
            " (or _KEY_FILE)"
        )
    lines: list[int] = []
    for column, ledger_kind, table in columns:
        values = [
            str(r[0])
            for r in cur.execute(
                sql.SQL("SELECT DISTINCT {} FROM staging WHERE {} IS NOT NULL").format(
                    sql.Identifier(column), sql.Identifier(column)
                )
            )
        ]
        named = [v for v in values if erased.named(ledger_kind, v)]
        if not named:
            continue
        gone = cur.execute(
            sql.SQL(
                "DELETE FROM staging WHERE {col} = ANY(%s)"
                " AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{col} = staging.{col}) RETURNING line"
            ).format(col=sql.Identifier(column), table=sql.Identifier(table)),
            (named,),
        ).fetchall()
        lines += [int(str(r[0])) for r in gone]
    return tuple(sorted(lines))


def _staging_source(kind: Kind) -> str:
    """A SELECT whose columns have the staging table's types (the target's, or jsonb for categories)."""
    if kind.row is CatalogueRow:
        return "SELECT " + ", ".join(_CATALOGUE_COLS[:-1]) + ", '{}'::jsonb AS categories FROM content_items"
    if kind.table == "content_items":
        return "SELECT item_id, kind, title, '{}'::jsonb AS categories FROM content_items"
    if kind.table == "vehicles":
        return (
            "SELECT v.vehicle_id, v.customer_id, v.dealer_id, v.model, v.trim_level, v.model_year,"
            " v.powertrain, v.region, p.purchased_at, p.price, v.time_zone FROM vehicles v, purchases p"
        )
    return f"SELECT * FROM {kind.table}"
