"""Daily telemetry partitions for plain PostgreSQL (TimescaleDB makes its chunks itself).

A partition ``telemetry_pYYYYMMDD`` holds one UTC day. Creating one moves that day's rows out of the default
partition first, then attaches it, so it never fails on rows that arrived early. Concurrent callers (several
ingest workers) serialize per partition on an advisory lock. ``drop_expired`` implements retention by
dropping whole days, which costs nothing compared with deleting rows.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from .dialect import database_dialect

log = logging.getLogger(__name__)

PARENT = "telemetry"
AHEAD_DAYS = 7
BEHIND_DAYS = 2


def partition_name(day: date) -> str:
    """The partition of one UTC day."""
    return f"{PARENT}_p{day:%Y%m%d}"


def _attached(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
        (PARENT,),
    ).fetchall()
    return {str(r[0]) for r in rows}


def ensure_day(conn: psycopg.Connection[tuple[object, ...]], day: date) -> bool:
    """Create and attach the partition of ``day`` if it is missing; return whether it was created."""
    name = partition_name(day)
    if name in _attached(conn):
        return False
    low = datetime(day.year, day.month, day.day, tzinfo=UTC)
    high = low + timedelta(days=1)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
        if name in _attached(conn):  # another worker made it meanwhile
            return False
        table = sql.Identifier(name)
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE telemetry INCLUDING DEFAULTS)").format(table))
        conn.execute(
            sql.SQL(
                "WITH moved AS (DELETE FROM telemetry_default WHERE time >= %s AND time < %s RETURNING *)"
                " INSERT INTO {} SELECT * FROM moved"
            ).format(table),
            (low, high),
        )
        conn.execute(  # DDL takes no bind parameters: the bounds are rendered as literals
            sql.SQL("ALTER TABLE telemetry ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                table, sql.Literal(low), sql.Literal(high)
            )
        )
    log.info("created telemetry partition %s", name)
    return True


def ensure_partitions(
    database_url: str, *, today: date | None = None, not_before: date | None = None
) -> list[str]:
    """Partitions from ``BEHIND_DAYS`` before today to ``AHEAD_DAYS`` after, and for any day in the default
    partition from ``not_before`` (the raw-retention cutoff: older rows are about to be deleted, and a wrong
    clock must not make a partition per day back to 2000) to the window's end; return the names created.
    Does nothing on TimescaleDB."""
    created: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        if database_dialect(conn) != "postgres" or conn.execute(
            "SELECT to_regclass('telemetry_default')"
        ).fetchone() == (None,):
            return created
        today = today or datetime.now(UTC).date()
        days = {today + timedelta(days=d) for d in range(-BEHIND_DAYS, AHEAD_DAYS + 1)}
        stray = conn.execute(
            "SELECT DISTINCT (time AT TIME ZONE 'UTC')::date FROM telemetry_default"
        ).fetchall()
        last = today + timedelta(days=AHEAD_DAYS)
        days |= {
            r[0]
            for r in stray
            if isinstance(r[0], date) and (not_before is None or r[0] >= not_before) and r[0] <= last
        }
        for day in sorted(days):
            if ensure_day(conn, day):
                created.append(partition_name(day))
    return created


def drop_expired(database_url: str, keep_days: int, *, today: date | None = None) -> list[str]:
    """Drop daily partitions entirely older than ``keep_days``; return their names. TimescaleDB: sets the
    retention policy instead."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if database_dialect(conn) == "timescaledb":
            conn.execute("SELECT remove_retention_policy('telemetry', if_exists => true)")
            conn.execute("SELECT add_retention_policy('telemetry', %s::interval)", (f"{keep_days} days",))
            return []
        cutoff = (today or datetime.now(UTC).date()) - timedelta(days=keep_days)
        dropped = []
        for name in sorted(_attached(conn)):
            if name.startswith(f"{PARENT}_p") and datetime.strptime(name[-8:], "%Y%m%d").date() < cutoff:
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                dropped.append(name)
        return dropped
