"""Consent per person and scope: a history of grants and withdrawals; the current consent is derived from it.

Scopes (:data:`SCOPES`): ``marketing`` (a person may be addressed and shown to marketing), ``profiling``
(portraits, tags, preferences may be computed), ``location`` (precise positions may be used), ``rd`` (their
vehicle data may feed product R&D), ``dealer_sharing`` (their dealer may be told of their car's severe
faults). Sources: ``car``, ``app``, ``dealer``, ``import``.

The current consent of a scope is its latest event by the time the person decided (``at``; ties go to the
event recorded later). Privacy by default: a scope without any event is not granted, and so is every scope of
an unknown customer.

Cars feed the history on their own (migration 0014, a trigger on ``consent_history``): a status message's
consent counts for the car's owner at arrival, mapped as telemetry -> ``rd``, location -> ``location``,
profiling -> ``profiling``; a car has no marketing switch, so it never grants or withdraws ``marketing``.
A scope is recorded from a car only when it differs from the last event that car gave its owner.

Errors::

    ConsentError (ValueError)   an unknown scope or source, or an unknown customer when recording
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from . import audit


class Scope(StrEnum):
    """What a person may allow."""

    MARKETING = "marketing"
    PROFILING = "profiling"
    LOCATION = "location"
    RD = "rd"
    #: the person's dealer may be told of their car's severe faults (cloud/service/: a dealer webhook)
    DEALER_SHARING = "dealer_sharing"


class Source(StrEnum):
    """Where a grant or withdrawal came from."""

    CAR = "car"
    APP = "app"
    DEALER = "dealer"
    IMPORT = "import"


SCOPES: tuple[str, ...] = tuple(s.value for s in Scope)
SOURCES: tuple[str, ...] = tuple(s.value for s in Source)

#: the person scope each of the car's consent switches (``consent_history`` columns) stands for
CAR_SCOPES: dict[str, str] = {"telemetry": Scope.RD, "location": Scope.LOCATION, "profiling": Scope.PROFILING}


class ConsentError(ValueError):
    """A consent that cannot be recorded or read: unknown scope, source or customer."""


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One grant or withdrawal."""

    event_id: int
    scope: str
    granted: bool
    at: datetime
    source: str
    key_id: int | None
    vehicle_id: str | None
    recorded_at: datetime


def _scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ConsentError(f"unknown consent scope {scope!r}; scopes: {', '.join(SCOPES)}")
    return scope


def record(
    conn: psycopg.Connection[Any],
    customer_id: str,
    scope: str,
    granted: bool,
    source: str,
    *,
    at: datetime | None = None,
    key_id: int | None = None,
) -> ConsentEvent:
    """Append a grant or withdrawal of ``scope`` for ``customer_id`` in the caller's transaction (``at``: when
    the person decided, default now); the caller audits it in the same transaction."""
    _scope(scope)
    if source not in SOURCES:
        raise ConsentError(f"unknown consent source {source!r}; sources: {', '.join(SOURCES)}")
    if at is not None and at.tzinfo is None:
        raise ConsentError("give the consent time with its UTC offset")
    cur = conn.cursor(row_factory=tuple_row)
    if cur.execute("SELECT 1 FROM customers WHERE customer_id = %s", (customer_id,)).fetchone() is None:
        raise ConsentError(f"customer {customer_id!r} not found")
    row = cur.execute(
        "INSERT INTO consent_events (customer_id, scope, granted, at, source, key_id)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " RETURNING event_id, scope, granted, at, source, key_id, vehicle_id, recorded_at",
        (customer_id, scope, granted, at or datetime.now(UTC), source, key_id),
    ).fetchone()
    assert row is not None
    return ConsentEvent(*row)


def current(conn: psycopg.Connection[Any], customer_id: str) -> dict[str, bool]:
    """Every scope of ``customer_id`` -> whether it is granted now (no event: not granted)."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute("SELECT scope, granted FROM consent_current WHERE customer_id = %s", (customer_id,))
        .fetchall()
    )
    granted: dict[str, bool] = {str(scope): bool(value) for scope, value in rows}
    return {scope: bool(granted.get(scope, False)) for scope in SCOPES}


def allows(conn: psycopg.Connection[Any], customer_id: str, scope: str) -> bool:
    """Whether ``customer_id`` currently allows ``scope`` (an unknown scope raises ConsentError)."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT granted FROM consent_events WHERE customer_id = %s AND scope = %s"
            " ORDER BY at DESC, event_id DESC LIMIT 1",
            (customer_id, _scope(scope)),
        )
        .fetchone()
    )
    return bool(row[0]) if row is not None else False


def allowed_customers(conn: psycopg.Connection[Any], customer_ids: Sequence[str], scope: str) -> set[str]:
    """Those of ``customer_ids`` that currently allow ``scope`` (one query, for lists and campaigns)."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT customer_id FROM consent_current WHERE customer_id = ANY(%s) AND scope = %s AND granted",
            (list(customer_ids), _scope(scope)),
        )
        .fetchall()
    )
    return {str(r[0]) for r in rows}


def history(conn: psycopg.Connection[Any], customer_id: str) -> list[ConsentEvent]:
    """Every consent event of ``customer_id``, oldest first."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT event_id, scope, granted, at, source, key_id, vehicle_id, recorded_at FROM consent_events"
            " WHERE customer_id = %s ORDER BY at, event_id",
            (customer_id,),
        )
        .fetchall()
    )
    return [ConsentEvent(*r) for r in rows]


def change(
    conn: psycopg.Connection[Any],
    customer_id: str,
    scope: str,
    granted: bool,
    source: str,
    *,
    at: datetime | None = None,
    key_id: int | None = None,
) -> ConsentEvent:
    """:func:`record` and its audit row in one transaction (what the API and the CLI call)."""
    with conn.transaction():
        event = record(conn, customer_id, scope, granted, source, at=at, key_id=key_id)
        audit.record(
            conn,
            key_id=key_id,
            action="privacy.consent.record",
            subject=audit.personal_subject("customer", customer_id),
            outcome="ok",
            detail={"scope": scope, "granted": granted, "source": source, "event_id": event.event_id},
        )
    return event


def read(
    conn: psycopg.Connection[Any], customer_id: str, *, key_id: int | None
) -> tuple[dict[str, bool], list[ConsentEvent]]:
    """The current consent and the history of ``customer_id``, audited as a read of personal data; an unknown
    customer raises ConsentError (audited too)."""
    with conn.transaction():
        found = (
            conn.cursor(row_factory=tuple_row)
            .execute("SELECT 1 FROM customers WHERE customer_id = %s", (customer_id,))
            .fetchone()
            is not None
        )
        audit.record(
            conn,
            key_id=key_id,
            action="privacy.consent.read",
            subject=audit.personal_subject("customer", customer_id),
            outcome="ok" if found else "not_found",
        )
        if found:
            return current(conn, customer_id), history(conn, customer_id)
    raise ConsentError(f"customer {customer_id!r} not found")
