"""Backups as ``pg_dump`` custom-format archives, and their restore into an empty database.

:func:`backup` writes ``pg_dump --format=custom`` to a temporary file beside the target and renames it into
place, so a failed dump never leaves a half archive under the backup's name. :func:`restore` refuses a
database that already holds tables, then:

- plain PostgreSQL: ``pg_restore --single-transaction --exit-on-error`` — the archive goes in whole or not;
- TimescaleDB (the archive holds the extension): ``CREATE EXTENSION timescaledb``,
  ``SELECT timescaledb_pre_restore()`` (stops its background jobs and lets the catalogue be written),
  ``pg_restore --exit-on-error``, ``SELECT timescaledb_post_restore()`` — TimescaleDB's documented procedure
  (not run on the development machines, where the extension is absent; its plan is tested);

then brings the schema up to this code's migrations and calls ``after_restore`` on a connection, in one
transaction: the erasure ledger is re-applied there (cloud/privacy/cli.py passes it), so a backup older than
an erasure never brings the person back. Objects are restored owned by the restoring user (``--no-owner``).

The ``pg_dump``/``pg_restore`` of the server's major version are used (``/usr/lib/postgresql/N/bin``, then
``PATH``): an older ``pg_dump`` refuses a newer server.

Errors::

    BackupError (RuntimeError)   a tool missing or failing, a non-empty target, an archive of another dialect
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from .dialect import Dialect
from .migrate import migrate

log = logging.getLogger(__name__)

AfterRestore = Callable[[psycopg.Connection[Any]], object]


class BackupError(RuntimeError):
    """A backup or restore that could not be done; nothing was changed in the target database."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """A written archive."""

    path: Path
    bytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RestoreInfo:
    """A restored archive: its dialect, the migrations applied after it, what ``after_restore`` returned."""

    path: Path
    dialect: Dialect
    seconds: float
    migrations_applied: list[str]
    after_restore: object


def pg_tool(name: str, conn: psycopg.Connection[Any]) -> str:
    """The path of ``pg_dump``/``pg_restore`` for the server ``conn`` talks to."""
    major = conn.info.server_version // 10000
    for candidate in (Path(f"/usr/lib/postgresql/{major}/bin") / name, shutil.which(name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise BackupError(
        f"{name} not found in /usr/lib/postgresql/{major}/bin or on PATH; install the PostgreSQL client"
    )


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(
            f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return result.stdout


def backup(database_url: str, path: Path) -> BackupInfo:
    """Write the database at ``database_url`` to ``path`` as a ``pg_dump`` custom-format archive."""
    started = time.monotonic()
    with psycopg.connect(database_url) as conn:
        tool = pg_tool("pg_dump", conn)
    path = path.resolve()
    partial = path.with_name(f".{path.name}.partial")
    try:
        _run([tool, "--format=custom", f"--file={partial}", f"--dbname={database_url}"])
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return BackupInfo(path, path.stat().st_size, round(time.monotonic() - started, 3))


def archive_dialect(listing: str) -> Dialect:
    """The dialect of an archive from its ``pg_restore --list``: TimescaleDB when it holds the extension."""
    for line in listing.splitlines():
        if not line.startswith(";") and " EXTENSION " in line and line.rstrip().endswith(" timescaledb"):
            return "timescaledb"
    return "postgres"


def restore_plan(dialect: Dialect) -> list[str]:
    """The steps a restore runs for an archive of ``dialect``, in order (names of the SQL or the tool)."""
    if dialect == "timescaledb":
        return [
            "CREATE EXTENSION IF NOT EXISTS timescaledb",
            "SELECT timescaledb_pre_restore()",
            "pg_restore --exit-on-error",
            "SELECT timescaledb_post_restore()",
            "migrate",
            "after_restore",
        ]
    return ["pg_restore --single-transaction --exit-on-error", "migrate", "after_restore"]


def _user_tables(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE '\\_timescaledb%'"
        " AND n.nspname NOT IN ('timescaledb_information', 'timescaledb_experimental')"
    ).fetchone()
    return int(row[0]) if row else 0


def restore(database_url: str, path: Path, *, after_restore: AfterRestore | None) -> RestoreInfo:
    """Restore the archive at ``path`` into the empty database at ``database_url``, migrate it to this code's
    schema, and run ``after_restore`` (the erasure ledger's re-application) in one transaction.

    ``after_restore`` is required by keyword so that a caller decides: None skips it (tests of the tools)."""
    started = time.monotonic()
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        tool = pg_tool("pg_restore", conn)
        dialect = archive_dialect(_run([tool, "--list", str(path)]))
        if _user_tables(conn):
            raise BackupError(
                "restore into an empty database: this one holds tables (create a new database, restore there,"
                " then point DRIVESIGHT_DATABASE_URL at it)"
            )
        applied: list[str] = []
        result: object = None
        for step in restore_plan(dialect):
            log.info("restore: %s", step)
            if step.startswith("pg_restore"):
                flags = step.split()[1:]
                _run([tool, *flags, "--no-owner", f"--dbname={database_url}", str(path)])
            elif step == "migrate":
                applied = migrate(database_url)
            elif step == "after_restore":
                if after_restore is not None:
                    with psycopg.connect(database_url) as work, work.transaction():
                        result = after_restore(work)
            else:
                try:
                    conn.execute(step.encode())
                except psycopg.Error as exc:
                    raise BackupError(f"{step}: {exc} (the archive is of a TimescaleDB database)") from exc
    return RestoreInfo(path, dialect, round(time.monotonic() - started, 3), applied, result)
