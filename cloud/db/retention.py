"""Retention per stream: how long each kind of stored data is kept, and applying it.

Streams and how they expire:

- ``telemetry`` (raw wide rows): whole daily partitions dropped (plain PostgreSQL) or the hypertable's
  retention policy (TimescaleDB);
- ``telemetry_hourly``, ``telemetry_daily`` (the downsampled tiers, cloud/db/rollups.py): rows deleted, or
  the continuous aggregate's retention policy;
- ``trips``, ``driving_events``, ``dtc_reports``, ``push_feedback``, ``consent_history``, ``dead_letters``
  and the exactly-once ledger ``ingested_messages``: rows deleted in bounded batches by their time column.

A policy comes from a TOML file (``[keep_days]``, one entry per stream: a number of days or ``"forever"``);
streams it does not name keep :data:`DEFAULT_KEEP_DAYS`. Two rules are checked, each for a reason:
the downsampled tiers are kept at least as long as raw telemetry (a rollup recomputed from raw rows would
bring back what its own retention removed), and the ledger is kept at least :data:`MIN_LEDGER_DAYS` (a car's
outbox may replay a message that old; without its ledger row it would be stored twice).

Errors::

    RetentionError (ValueError)   a policy file or value that cannot be applied, with the reason
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from .dialect import database_dialect
from .partitions import drop_expired

log = logging.getLogger(__name__)

StreamKind = Literal["raw", "rollup", "rows"]


@dataclass(frozen=True, slots=True)
class Stream:
    """A stored stream: its table, how it expires, and the time column retention compares."""

    table: str
    kind: StreamKind
    time_column: str


STREAMS: dict[str, Stream] = {
    "telemetry": Stream("telemetry", "raw", "time"),
    "telemetry_hourly": Stream("telemetry_hourly", "rollup", "hour"),
    "telemetry_daily": Stream("telemetry_daily", "rollup", "day"),
    "trips": Stream("trips", "rows", "ended_at"),
    "driving_events": Stream("driving_events", "rows", "started_at"),
    "dtc_reports": Stream("dtc_reports", "rows", "first_seen"),
    "push_feedback": Stream("push_feedback", "rows", "at"),
    "consent_history": Stream("consent_history", "rows", "at"),
    "dead_letters": Stream("dead_letters", "rows", "received_at"),
    "ingested_messages": Stream("ingested_messages", "rows", "received_at"),
}

#: days kept when a policy does not name a stream; None keeps it forever
DEFAULT_KEEP_DAYS: dict[str, int | None] = {
    "telemetry": 400,  # as the TimescaleDB migration's policy
    "telemetry_hourly": 3 * 365,
    "telemetry_daily": None,
    "trips": None,
    "driving_events": None,
    "dtc_reports": None,
    "push_feedback": None,
    "consent_history": None,  # the record of what owners allowed when: erasure removes it, not age
    "dead_letters": 90,
    "ingested_messages": 400,
}
MIN_LEDGER_DAYS = 30
DELETE_BATCH = 50_000


class RetentionError(ValueError):
    """A retention policy that cannot be applied; the message says why."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days to keep per stream (None: forever), validated on construction."""

    keep_days: dict[str, int | None] = field(default_factory=lambda: dict(DEFAULT_KEEP_DAYS))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.keep_days) - STREAMS.keys())
        if unknown:
            raise RetentionError(f"unknown stream(s) {', '.join(unknown)}; streams: {', '.join(STREAMS)}")
        for name, days in self.keep_days.items():
            if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
                raise RetentionError(f"{name}: keep a whole number of days >= 1 or 'forever', not {days!r}")
        object.__setattr__(self, "keep_days", {**DEFAULT_KEEP_DAYS, **self.keep_days})
        raw = self.keep_days["telemetry"]
        for tier in ("telemetry_hourly", "telemetry_daily"):
            kept = self.keep_days[tier]
            if kept is not None and (raw is None or kept < raw):
                raise RetentionError(
                    f"{tier} is kept {kept} days but raw telemetry {raw or 'forever'}: a downsampled tier"
                    " must be kept at least as long as the rows it is computed from"
                )
        ledger = self.keep_days["ingested_messages"]
        if ledger is not None and ledger < MIN_LEDGER_DAYS:
            raise RetentionError(
                f"ingested_messages is kept {ledger} days; at least {MIN_LEDGER_DAYS}, since a car may replay"
                " a message that old and without its ledger row it would be stored twice"
            )

    @classmethod
    def from_file(cls, path: Path, *, telemetry_days: int | None = None) -> RetentionPolicy:
        """Read a TOML policy (a ``[keep_days]`` table); ``telemetry_days`` overrides its raw telemetry."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RetentionError(f"{path}: cannot read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise RetentionError(f"{path}: not valid TOML: {exc}") from exc
        extra = sorted(set(data) - {"keep_days"})
        if extra:
            raise RetentionError(f"{path}: unknown table(s) {', '.join(extra)}; expected [keep_days]")
        table = data.get("keep_days", {})
        if not isinstance(table, dict):
            raise RetentionError(f"{path}: keep_days must be a table of stream = days")
        keep: dict[str, int | None] = {}
        for name, value in table.items():
            if value == "forever":
                keep[name] = None
            elif isinstance(value, int) and not isinstance(value, bool):
                keep[name] = value
            else:
                raise RetentionError(f'{path}: {name} = {value!r}; use a number of days or "forever"')
        if telemetry_days is not None:
            keep["telemetry"] = telemetry_days
        try:
            return cls(keep)
        except RetentionError as exc:
            raise RetentionError(f"{path}: {exc}") from exc

    def cutoff(self, stream: str, today: date) -> datetime | None:
        """The time before which ``stream`` is dropped as of ``today`` (UTC midnight), or None."""
        days = self.keep_days[stream]
        if days is None:
            return None
        return datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=days)


def _delete_before(conn: psycopg.Connection[tuple[object, ...]], stream: Stream, cutoff: datetime) -> int:
    """Delete a table's rows older than ``cutoff`` in bounded transactions; return how many."""
    statement = sql.SQL(
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {c} < %s LIMIT %s))"
    ).format(t=sql.Identifier(stream.table), c=sql.Identifier(stream.time_column))
    total = 0
    while True:
        deleted = conn.execute(statement, (cutoff, DELETE_BATCH)).rowcount
        total += deleted
        if deleted < DELETE_BATCH:
            return total
        log.info("%s: %d rows deleted so far", stream.table, total)


def _set_policy(conn: psycopg.Connection[tuple[object, ...]], relation: str, days: int | None) -> None:
    """Replace TimescaleDB's retention policy on a hypertable or continuous aggregate."""
    conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (relation,))
    if days is not None:
        conn.execute("SELECT add_retention_policy(%s, %s::interval)", (relation, f"{days} days"))


def apply_retention(
    database_url: str, policy: RetentionPolicy, *, today: date | None = None
) -> dict[str, str]:
    """Apply ``policy`` to every stream; return what was done per stream, in words."""
    today = today or datetime.now(UTC).date()
    done: dict[str, str] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        timescale = database_dialect(conn) == "timescaledb"
        for name, stream in STREAMS.items():
            days = policy.keep_days[name]
            cutoff = policy.cutoff(name, today)
            if stream.kind != "rows" and timescale:
                _set_policy(conn, stream.table, days)
                done[name] = f"policy: {days} days" if days else "policy: forever"
                if stream.kind == "raw" and cutoff is not None:
                    # drop now too, as the plain dialect does, so that the cutoff recorded below is true
                    chunks = conn.execute(
                        "SELECT drop_chunks('telemetry', older_than => %s)", (cutoff,)
                    ).fetchall()
                    done[name] += f", {len(chunks)} chunks dropped"
            elif cutoff is None:
                done[name] = "kept forever"
                continue
            elif stream.kind == "raw":
                assert days is not None
                dropped = drop_expired(database_url, days, today=today)
                # stray rows in the default partition are not in any day's partition
                stray = conn.execute("DELETE FROM telemetry_default WHERE time < %s", (cutoff,)).rowcount
                done[name] = f"{len(dropped)} partitions dropped" + (f", {stray} stray rows" if stray else "")
            else:
                done[name] = f"{_delete_before(conn, stream, cutoff)} rows deleted"
            if cutoff is not None:
                conn.execute(
                    "INSERT INTO retention_cutoffs (stream, before) VALUES (%s, %s)"
                    " ON CONFLICT (stream) DO UPDATE"
                    " SET before = greatest(retention_cutoffs.before, excluded.before), applied_at = now()",
                    (name, cutoff),
                )
            log.info("retention %s (keep %s days): %s", name, days, done[name])
    return done
