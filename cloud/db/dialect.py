"""Which SQL dialect a database speaks: plain PostgreSQL or TimescaleDB (chosen once, at its first migration).

Its own module so that the modules that branch on the dialect (partitions, rollups, retention, the ingest)
need not import the migrator, which itself creates partitions.
"""

from __future__ import annotations

from typing import Literal

import psycopg

Dialect = Literal["postgres", "timescaledb"]
DIALECTS: tuple[Dialect, ...] = ("postgres", "timescaledb")


def database_dialect(conn: psycopg.Connection[tuple[object, ...]]) -> Dialect:
    """The dialect recorded for this database (plain PostgreSQL for one migrated before dialects existed)."""
    if conn.execute("SELECT to_regclass('schema_info')").fetchone() == (None,):
        return "postgres"
    row = conn.execute("SELECT value FROM schema_info WHERE key = 'dialect'").fetchone()
    return str(row[0]) if row else "postgres"  # type: ignore[return-value]
