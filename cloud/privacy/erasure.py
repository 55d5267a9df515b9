"""Two-step erasure of one person, in one transaction, recorded in the erasure ledger and the audit log.

1. :func:`request_erasure` stores a request with the SHA-256 of a random token and an expiry (default 24 h)
   and returns the token once.
2. :func:`confirm_erasure` with that token deletes every row of the person (:data:`ERASED`: their CRM record,
   vehicles and everything the vehicles sent, telemetry and its rollups, the ingest ledger, trip versions,
   dead letters whose topic, detail or payload names one of their ids, online accounts and interactions,
   identity links and merges, consent, analytics outputs, dealer leads, call records and their inspections),
   appends a ledger entry (keyed hashes only), and
   clears the customer id from every erasure request — all in one transaction, so it is done whole or not at
   all. Through the API a second key must confirm: the key that asked cannot (four eyes); from the CLI (no
   key, an operator with database access) either step may be run by the same person.

Call records (cloud/qa/, ``qa_call_records`` and ``qa_inspections``) go when they name the person
(``customer_id``) or when their turns hold one of the person's phone numbers or e-mail addresses: those of
the CRM record and of the person's online accounts, read from the database before their rows go
(:func:`contact_pattern`). A phone matches on its digits with spaces, dots, hyphens, slashes or brackets
between them, case is ignored for e-mails; a phone of fewer than 7 digits or an e-mail without ``@`` is not
searched for (it would match other people's calls). A record that names the person only in another way (by
name, a number spoken in words or in Chinese numerals, a phone or address the CRM does not hold) cannot be
found and stays: ask the dealer for the record ids or have the export name the customer.

Deleted, not anonymised: the person's rows are removed, and aggregates made of them stay (a segment's size is
lowered; cluster centroids and rollups of other vehicles are not personal). Vehicles go whole: every row of a
vehicle the person owns at the erasure, from any time.

:func:`reapply_ledger` erases again whoever the ledger names in a restored database (cloud/db/backup.py calls
it after every restore). Every attempt, refused ones too, appends an audit row.

Errors::

    ErasureError (Exception)      ``status`` is the HTTP status an API answers with
    ├── CustomerNotFound           404
    ├── RequestNotFound            404
    ├── AlreadyConfirmed           409: confirmed before, or the person is already erased
    ├── RequestExpired             410
    ├── WrongToken                 403
    └── SameKey                    403: the requesting key cannot confirm
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from cloud.db.dialect import database_dialect

from . import audit, ledger
from .person import exists, person_ids

DEFAULT_TTL = timedelta(hours=24)


class ErasureError(Exception):
    """An erasure step refused; ``status`` is the HTTP status for it."""

    status = 400


class CustomerNotFound(ErasureError):
    """No such customer."""

    status = 404


class RequestNotFound(ErasureError):
    """No such erasure request."""

    status = 404


class AlreadyConfirmed(ErasureError):
    """The request was confirmed before, or its person is erased already."""

    status = 409


class RequestExpired(ErasureError):
    """The request's token expired; request again."""

    status = 410


class WrongToken(ErasureError):
    """The token is not the request's."""

    status = 403


class SameKey(ErasureError):
    """The key that requested the erasure tried to confirm it."""

    status = 403


#: the person's leads: naming them (or, rejected, having named them) or their car, and every lead found to be
#: the same person as one of those, either way and transitively (a duplicate points at its lead)
_LEADS = (
    "WITH RECURSIVE mine(lead_id) AS ("
    " SELECT lead_id FROM leads WHERE customer_id = ANY(%(c)s) OR raw->>'customer_id' = ANY(%(c)s)"
    " OR vehicle_id = ANY(%(v)s)"
    " UNION SELECT x.lead_id FROM mine m JOIN leads y ON y.lead_id = m.lead_id"
    " JOIN leads x ON x.duplicate_of_lead = y.lead_id OR x.lead_id = y.duplicate_of_lead"
    ") SELECT lead_id FROM mine"
)
#: a call record of the person: naming them, or with one of their phones or e-mails in its turns
#: (``contacts``: :func:`contact_pattern`, NULL when they have none to search for)
QA_RECORDS = (
    "SELECT record_id FROM qa_call_records WHERE customer_id = ANY(%(c)s)"
    " OR (%(contacts)s::text IS NOT NULL AND turns::text ~* %(contacts)s::text)"
)
#: (table, what identifies the person's rows): every table that can hold a person, in deletion order
#: (children first); ``c``, ``v``, ``a``: the customer, vehicle and account ids, ``ids``: all of them
ERASED: tuple[tuple[str, str], ...] = (
    ("qa_inspections", f"record_id IN ({QA_RECORDS})"),
    ("qa_call_records", f"record_id IN ({QA_RECORDS})"),
    (
        "dead_letters",
        "EXISTS (SELECT 1 FROM unnest(%(ids)s::text[]) i WHERE strpos(topic, i) > 0 OR strpos(detail, i) > 0"
        " OR position(convert_to(i, 'UTF8') IN payload) > 0)",
    ),
    (
        "webhook_deliveries",
        "push_id IN (SELECT push_id FROM campaign_decisions"
        " WHERE customer_id = ANY(%(c)s) OR vehicle_id = ANY(%(v)s))",
    ),
    ("campaign_decisions", "customer_id = ANY(%(c)s) OR vehicle_id = ANY(%(v)s)"),
    ("conversions", "customer_id = ANY(%(c)s)"),
    ("service_reminders", "customer_id = ANY(%(c)s) OR vehicle_id = ANY(%(v)s)"),
    ("service_bookings", "vehicle_id = ANY(%(v)s)"),
    # a lead of the person, and the leads found to be the same person as one (duplicates point at it)
    ("lead_events", f"lead_id IN ({_LEADS})"),
    ("lead_assignments", f"lead_id IN ({_LEADS})"),
    ("lead_merges", f"lead_id IN ({_LEADS}) OR into_lead IN ({_LEADS}) OR customer_id = ANY(%(c)s)"),
    ("leads", f"lead_id IN ({_LEADS})"),
    ("churn_scores", "customer_id = ANY(%(c)s)"),
    ("credit_scores", "customer_id = ANY(%(c)s)"),
    ("upgrade_scores", "customer_id = ANY(%(c)s)"),
    ("life_events", "customer_id = ANY(%(c)s)"),
    ("consent_events", "customer_id = ANY(%(c)s) OR vehicle_id = ANY(%(v)s)"),
    ("consent_history", "vehicle_id = ANY(%(v)s)"),
    ("driving_events", "vehicle_id = ANY(%(v)s)"),
    ("dtc_reports", "vehicle_id = ANY(%(v)s)"),
    ("push_feedback", "vehicle_id = ANY(%(v)s)"),
    ("trip_versions", "vehicle_id = ANY(%(v)s)"),
    ("trips", "vehicle_id = ANY(%(v)s)"),
    ("telemetry", "vehicle_id = ANY(%(v)s)"),
    ("telemetry_narrow_v1", "vehicle_id = ANY(%(v)s)"),
    ("telemetry_latest", "vehicle_id = ANY(%(v)s)"),
    ("telemetry_hourly", "vehicle_id = ANY(%(v)s)"),
    ("telemetry_daily", "vehicle_id = ANY(%(v)s)"),
    ("ingested_messages", "vehicle_id = ANY(%(v)s)"),
    ("service_visits", "vehicle_id = ANY(%(v)s)"),
    ("purchases", "vehicle_id = ANY(%(v)s) OR customer_id = ANY(%(c)s)"),
    ("interactions", "account_id = ANY(%(a)s)"),
    ("identity_links", "customer_id = ANY(%(c)s) OR account_id = ANY(%(a)s)"),
    ("identity_merges", "customer_id = ANY(%(c)s)"),
    ("online_accounts", "account_id = ANY(%(a)s)"),
    ("complaints", "customer_id = ANY(%(c)s)"),
    ("customer_features", "customer_id = ANY(%(c)s)"),
    ("customer_tags", "customer_id = ANY(%(c)s)"),
    ("customer_preferences", "customer_id = ANY(%(c)s)"),
    ("customer_clusters", "customer_id = ANY(%(c)s)"),
    ("segment_members", "customer_id = ANY(%(c)s)"),
    ("vehicles", "vehicle_id = ANY(%(v)s)"),
    ("customers", "customer_id = ANY(%(c)s)"),
)
#: with more ids than this (a ledger re-applied after a restore), dead letters are matched by one regular
#: expression per row instead of one substring search per id and row: 400 ids over 10,000 dead letters of
#: 2 KiB took 5.4 s as substring searches and 1.1 s as one expression; 4 ids 0.07 s and 0.12 s
_DEAD_LETTER_REGEX_FROM = 8
_DEAD_LETTERS_MANY = (
    "(topic || E'\\n' || detail) ~ %(ids_re)s OR encode(payload, 'escape') ~ %(ids_escaped_re)s"
)


def _escaped(text: str) -> str:
    """``text``'s UTF-8 bytes as PostgreSQL's ``encode(..., 'escape')`` writes them (high and zero bytes as
    octal escapes, backslashes doubled): what a payload holding ``text`` looks like after that encoding."""
    out = []
    for byte in text.encode():
        if byte == 0x5C:
            out.append("\\\\")
        elif byte >= 0x80 or byte == 0:
            out.append(f"\\{byte:03o}")
        else:
            out.append(chr(byte))
    return "".join(out)


def _alternation(texts: Sequence[str]) -> str:
    """A regular expression (PostgreSQL's ARE) matching any of ``texts`` literally."""
    return "|".join(re.escape(t) for t in texts)


#: a phone of fewer digits, or an e-mail shorter than this, is not searched for in call records: it would
#: match other people's calls (a CRM field holding "0" or "n/a")
_MIN_PHONE_DIGITS = 7
_MIN_EMAIL = 6
#: what may stand between a phone's digits in a transcript ("138 1234-5678", "(021) 5555.0101")
_PHONE_GAP = "[[:space:].()/-]*"


def contact_pattern(
    conn: psycopg.Connection[Any], customer_ids: Sequence[str], account_ids: Sequence[str]
) -> str | None:
    """A case-insensitive regular expression (PostgreSQL's ARE) matching any phone number or e-mail address
    the CRM records of ``customer_ids`` and the online accounts ``account_ids`` hold, as a transcript may
    write it; None when there is nothing to search for. Phones match on their digits (at least 7) with
    separators allowed between them; e-mails literally."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT phone, email FROM customers WHERE customer_id = ANY(%(c)s)"
            " UNION SELECT phone, email FROM online_accounts WHERE account_id = ANY(%(a)s)",
            {"c": list(customer_ids), "a": list(account_ids)},
        )
        .fetchall()
    )
    patterns: set[str] = set()
    for phone, email in rows:
        digits = re.sub(r"\D", "", str(phone or ""))
        if len(digits) >= _MIN_PHONE_DIGITS:
            patterns.add(_PHONE_GAP.join(digits))
        address = str(email or "").strip().lower()
        if len(address) >= _MIN_EMAIL and "@" in address:
            patterns.add(re.escape(address))
    return "|".join(sorted(patterns)) or None


#: rollups that are continuous aggregates on TimescaleDB: their rows live in a materialization hypertable
_CONTINUOUS_AGGREGATES = ("telemetry_hourly", "telemetry_daily")


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """A stored request; ``token`` is shown once and kept only as its SHA-256."""

    request_id: int
    customer_id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """A confirmed erasure: its ledger entry and how many rows went per table."""

    request_id: int
    erasure_id: int
    rows: dict[str, int]


@dataclass(slots=True)
class ReapplyResult:
    """What re-applying the ledger did: entries considered, people and rows erased again."""

    entries: int = 0
    entries_added: int = 0
    customers: int = 0
    vehicles: int = 0
    accounts: int = 0
    rows: dict[str, int] = field(default_factory=dict)


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def request_erasure(
    conn: psycopg.Connection[Any],
    customer_id: str,
    *,
    key_id: int | None,
    ttl: timedelta = DEFAULT_TTL,
) -> ErasureRequest:
    """Store a request to erase ``customer_id``; return it with its one-time token (audited)."""
    subject = audit.personal_subject("customer", customer_id)
    with conn.transaction():
        if not exists(conn, customer_id):
            audit.record(
                conn, key_id=key_id, action="privacy.erasure.request", subject=subject, outcome="not_found"
            )
            found = False
        else:
            found = True
            # a prefix: the token never starts with "-", which a command line would read as an option
            token = "et_" + secrets.token_urlsafe(32)
            row = (
                conn.cursor(row_factory=tuple_row)
                .execute(
                    "INSERT INTO erasure_requests (customer_id, token_sha256, requested_by, expires_at)"
                    " VALUES (%s, %s, %s, now() + %s) RETURNING request_id, expires_at",
                    (customer_id, _token_hash(token), key_id, ttl),
                )
                .fetchone()
            )
            assert row is not None
            request_id, expires_at = int(row[0]), row[1]
            audit.record(
                conn,
                key_id=key_id,
                action="privacy.erasure.request",
                subject=subject,
                outcome="ok",
                detail={"request_id": request_id, "expires_at": expires_at.isoformat()},
            )
    if not found:
        raise CustomerNotFound(f"customer {customer_id!r} not found")
    return ErasureRequest(request_id, customer_id, token, expires_at)


def confirm_erasure(
    conn: psycopg.Connection[Any],
    request_id: int,
    token: str,
    *,
    key_id: int | None,
    ledger_key: bytes,
    ledger_file: Path | None = None,
) -> ErasureResult:
    """Erase the request's person in one transaction: every row (:data:`ERASED`), a ledger entry (also
    appended to ``ledger_file`` before the commit), the request marked confirmed, an audit row.

    A refusal (unknown request, wrong token, expired, same key, confirmed before) is audited and raised."""
    refusal: ErasureError | None = None
    erasure_id: int | None = None
    rows: dict[str, int] = {}
    with conn.transaction():
        cur = conn.cursor(row_factory=tuple_row)
        row = cur.execute(
            "SELECT customer_id, token_sha256, requested_by, expires_at <= now(), confirmed_at"
            " FROM erasure_requests WHERE request_id = %s FOR UPDATE",
            (request_id,),
        ).fetchone()
        if row is None:
            refusal = RequestNotFound(f"erasure request {request_id} not found")
        else:
            customer_id, token_sha256, requested_by, expired, confirmed_at = row
            if confirmed_at is not None:
                refusal = AlreadyConfirmed(f"erasure request {request_id} was confirmed at {confirmed_at}")
            elif not hmac.compare_digest(bytes(token_sha256), _token_hash(token)):
                refusal = WrongToken(f"the token is not erasure request {request_id}'s")
            elif expired:
                refusal = RequestExpired(f"erasure request {request_id} expired; request the erasure again")
            elif key_id is not None and key_id == requested_by:
                refusal = SameKey("the key that requested this erasure cannot confirm it: use a second key")
            elif customer_id is None:
                refusal = AlreadyConfirmed(f"the person of erasure request {request_id} is erased already")
        if refusal is not None:
            audit.record(
                conn,
                key_id=key_id,
                action="privacy.erasure.confirm",
                subject=f"erasure_request:{request_id}",
                outcome=type(refusal).__name__,
            )
        else:
            customer_id = str(customer_id)
            ids = person_ids(conn, customer_id)
            now = datetime.now(UTC)
            entry = ledger.LedgerEntry.of(ledger_key, now, customer_id, ids.vehicle_ids, ids.account_ids)
            cur.execute(
                "UPDATE erasure_requests SET confirmed_at = %s, confirmed_by = %s WHERE request_id = %s",
                (now, key_id, request_id),
            )
            rows = erase(
                conn, customer_ids=[customer_id], vehicle_ids=ids.vehicle_ids, account_ids=ids.account_ids
            )
            erasure_id = ledger.insert(conn, entry)
            assert erasure_id is not None
            cur.execute(
                "UPDATE erasure_requests SET erasure_id = %s, rows_erased = %s WHERE request_id = %s",
                (erasure_id, Jsonb(rows), request_id),
            )
            audit.record(
                conn,
                key_id=key_id,
                action="privacy.erasure.confirm",
                subject=audit.personal_subject("customer", customer_id),
                outcome="ok",
                detail={"request_id": request_id, "erasure_id": erasure_id, "rows": rows},
            )
            if ledger_file is not None:
                ledger.append_file(ledger_file, entry)  # last before the commit: see append_file
    if refusal is not None:
        raise refusal
    assert erasure_id is not None
    return ErasureResult(request_id, erasure_id, rows)


def _relation(conn: psycopg.Connection[Any], table: str, dialect: str) -> sql.Composable | None:
    """Where ``table``'s rows are: itself, or a continuous aggregate's materialization hypertable on
    TimescaleDB (a continuous aggregate takes no DELETE); None when the database has no such table."""
    cur = conn.cursor(row_factory=tuple_row)
    if dialect == "timescaledb" and table in _CONTINUOUS_AGGREGATES:
        row = cur.execute(
            "SELECT materialization_hypertable_schema, materialization_hypertable_name"
            " FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
            (table,),
        ).fetchone()
        if row is not None:
            return sql.Identifier(str(row[0]), str(row[1]))
    if cur.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
        return None
    return sql.Identifier(table)


def erase(
    conn: psycopg.Connection[Any],
    *,
    customer_ids: Sequence[str] = (),
    vehicle_ids: Sequence[str] = (),
    account_ids: Sequence[str] = (),
) -> dict[str, int]:
    """Delete every row of these customers, vehicles and accounts (:data:`ERASED`) in the caller's
    transaction; return the rows deleted per table (no ledger, no audit: the callers add those)."""
    ids = [*customer_ids, *vehicle_ids, *account_ids]
    params: dict[str, object] = {
        "c": list(customer_ids),
        "v": list(vehicle_ids),
        "a": list(account_ids),
        "ids": ids,
        "ids_re": _alternation(ids),
        "ids_escaped_re": _alternation([_escaped(i) for i in ids]),
    }
    many = len(ids) > _DEAD_LETTER_REGEX_FROM
    dialect = database_dialect(conn)
    rows: dict[str, int] = {}
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        # read before the CRM and account rows go: call records are searched for the person's phones and
        # e-mails (see the module's docstring)
        params["contacts"] = contact_pattern(conn, customer_ids, account_ids)
        # segment sizes are counts of members: lower them by the members that go
        cur.execute(
            "UPDATE segments s SET size = s.size - m.n FROM (SELECT segment, count(*) AS n"
            " FROM segment_members WHERE customer_id = ANY(%(c)s) GROUP BY segment) m"
            " WHERE s.name = m.segment",
            params,
        )
        # requests of these customers keep no id (the foreign key would too; this counts them)
        cur.execute("UPDATE erasure_requests SET customer_id = NULL WHERE customer_id = ANY(%(c)s)", params)
        rows["erasure_requests"] = cur.rowcount
        for table, where in ERASED:
            relation = _relation(conn, table, dialect)
            if relation is None:
                continue
            if table == "dead_letters" and many:
                where = _DEAD_LETTERS_MANY
            cur.execute(sql.SQL("DELETE FROM {} WHERE ").format(relation) + sql.SQL(where), params)
            rows[table] = cur.rowcount
    return {table: n for table, n in rows.items() if n}


def _hashed(key: bytes, kind: str, ids: Iterable[object], wanted: set[bytes]) -> list[str]:
    return [str(i) for i in ids if ledger.pseudonym(key, kind, str(i)) in wanted]


def reapply_ledger(
    conn: psycopg.Connection[Any], ledger_key: bytes, extra: Sequence[ledger.LedgerEntry] = ()
) -> ReapplyResult:
    """Erase again, in one transaction, everyone the ledger names — its table and ``extra`` (the ledger
    file) — and store the entries the table lacked: what a restored backup needs (audited)."""
    result = ReapplyResult()
    with conn.transaction():
        entries = {(e.customer, e.erased_at): e for e in [*ledger.stored(conn), *extra]}
        ledger.check_keys(list(entries.values()), ledger_key)
        result.entries = len(entries)
        customers = {e.customer for e in entries.values()}
        vehicles = {v for e in entries.values() for v in e.vehicles}
        accounts = {a for e in entries.values() for a in e.accounts}
        cur = conn.cursor(row_factory=tuple_row)
        found_customers = _hashed(
            ledger_key,
            "customer",
            (r[0] for r in cur.execute("SELECT customer_id FROM customers")),
            customers,
        )
        found_vehicles = set(
            _hashed(
                ledger_key,
                "vehicle",
                (r[0] for r in cur.execute("SELECT vehicle_id FROM vehicles")),
                vehicles,
            )
        )
        found_accounts = set(
            _hashed(
                ledger_key,
                "account",
                (r[0] for r in cur.execute("SELECT account_id FROM online_accounts")),
                accounts,
            )
        )
        # the person as the restored database knows them: their vehicles and accounts then, and the ledger's
        for customer_id in found_customers:
            ids = person_ids(conn, customer_id)
            found_vehicles.update(ids.vehicle_ids)
            found_accounts.update(ids.account_ids)
        result.customers, result.vehicles, result.accounts = (
            len(found_customers),
            len(found_vehicles),
            len(found_accounts),
        )
        result.rows = erase(
            conn,
            customer_ids=sorted(found_customers),
            vehicle_ids=sorted(found_vehicles),
            account_ids=sorted(found_accounts),
        )
        result.entries_added = sum(ledger.insert(conn, e) is not None for e in entries.values())
        audit.record(
            conn,
            key_id=None,
            action="privacy.ledger.reapply",
            subject=None,
            outcome="ok",
            detail={
                "entries": result.entries,
                "entries_added": result.entries_added,
                "customers": result.customers,
                "rows": result.rows,
            },
        )
    return result


def ledger_reapplier(
    ledger_key: bytes, ledger_file: Path | None
) -> Callable[[psycopg.Connection[Any]], ReapplyResult]:
    """What a restore runs when the archive is in (cloud/db/backup.py's ``after_restore``): the ledger's table
    and file re-applied. The file is read and the key checked now, before anything is restored."""
    extra = ledger.read_file(ledger_file) if ledger_file is not None else []
    ledger.check_keys(extra, ledger_key)
    return lambda conn: reapply_ledger(conn, ledger_key, extra)
