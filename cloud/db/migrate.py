"""Versioned SQL migrations, applied in order under an advisory lock, in the database's dialect.

Each file ``NNNN_name.sql`` in ``migrations/`` runs once, in its own transaction, and is recorded in
``schema_migrations`` with its checksum; a recorded migration whose file has since changed is an error,
because the database no longer matches what the code expects.

Dialects (DESIGN.md section 5): where a migration differs between plain PostgreSQL and TimescaleDB it comes in
two files, ``NNNN_name.postgres.sql`` and ``NNNN_name.timescaledb.sql``. The dialect is chosen once, at the
first migration of a database — TimescaleDB when the extension can be created (it must be in
``shared_preload_libraries``), plain PostgreSQL otherwise, or as ``DRIVESIGHT_DB_DIALECT`` says — and kept in
``schema_info``, so a database never switches half-way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from .dialect import DIALECTS, Dialect, database_dialect

log = logging.getLogger(__name__)

__all__ = [
    "DIALECTS", "Dialect", "Migration", "MigrationError", "database_dialect", "migrate", "shipped_migrations",
]  # fmt: skip

_LOCK_KEY = 0x64726976  # "driv": serializes concurrent migrators
_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+(?:\.(postgres|timescaledb))?\.sql$")


class MigrationError(RuntimeError):
    """The database's applied migrations do not match the shipped ones."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One shipped migration file."""

    version: str
    name: str
    sql: str
    dialect: Dialect | None = None

    @property
    def checksum(self) -> str:
        """sha256 of the SQL text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def shipped_migrations(dialect: Dialect = "postgres") -> list[Migration]:
    """The migrations packaged with this code for ``dialect``, in version order."""
    folder = resources.files("cloud.db") / "migrations"
    by_version: dict[str, list[Migration]] = {}
    for entry in folder.iterdir():
        match = _NAME_RE.match(entry.name)
        if match:
            variant = match.group(2)
            migration = Migration(match.group(1), entry.name, entry.read_text(encoding="utf-8"), variant)  # type: ignore[arg-type]
            by_version.setdefault(match.group(1), []).append(migration)
    chosen = []
    for version in sorted(by_version):
        candidates = by_version[version]
        common = [m for m in candidates if m.dialect is None]
        own = [m for m in candidates if m.dialect == dialect]
        if len(common) + len(own) != 1:
            names = ", ".join(m.name for m in candidates)
            raise MigrationError(
                f"migration {version} must be one common file or one per dialect; found {names}"
            )
        chosen.append((common or own)[0])
    return chosen


def detect_dialect(conn: psycopg.Connection[tuple[object, ...]]) -> Dialect:
    """The dialect this server supports: ``DRIVESIGHT_DB_DIALECT``, else TimescaleDB if it can be enabled."""
    forced = os.environ.get("DRIVESIGHT_DB_DIALECT")
    if forced:
        if forced in DIALECTS:
            return forced
        raise MigrationError(f"DRIVESIGHT_DB_DIALECT={forced!r}; use one of {', '.join(DIALECTS)}")
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is not None:
        return "timescaledb"
    if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() is None:
        return "postgres"
    # installed but not preloaded: CREATE EXTENSION would fail and TimescaleDB ends the session: look first
    preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    if preload is None or "timescaledb" not in str(preload[0]):
        log.warning("timescaledb is installed but not in shared_preload_libraries; using plain PostgreSQL")
        return "postgres"
    return "timescaledb"


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; return the names of those applied now."""
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS schema_info (key text PRIMARY KEY, value text NOT NULL)")
            row = conn.execute("SELECT value FROM schema_info WHERE key = 'dialect'").fetchone()
            if row is None:
                fresh = conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)
                dialect: Dialect = detect_dialect(conn) if fresh else "postgres"
                conn.execute("INSERT INTO schema_info (key, value) VALUES ('dialect', %s)", (dialect,))
                log.info("database dialect: %s", dialect)
            else:
                dialect = str(row[0])  # type: ignore[assignment]
            if dialect == "timescaledb":  # also when the dialect was chosen by DRIVESIGHT_DB_DIALECT
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            done = {
                row[0]: (row[1], row[2])
                for row in conn.execute("SELECT version, name, checksum FROM schema_migrations")
            }
            for migration in shipped_migrations(dialect):
                if migration.version in done:
                    name, checksum = done[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} was applied as {name} with another checksum; "
                            "shipped migrations must not be edited, add a new one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                log.info("applied migration %s", migration.name)
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    if applied_now:
        from .partitions import ensure_partitions

        ensure_partitions(database_url)
    return applied_now
