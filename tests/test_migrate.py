"""Migrations: applied once, re-running is a no-op, an edited migration is refused."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from cloud.db import migrate as migrate_module
from cloud.db.migrate import Migration, MigrationError, database_dialect, migrate, shipped_migrations
from tests.helpers import scratch_database


@pytest.fixture
def empty_database(admin_database_url: str) -> Iterator[str]:
    with scratch_database(admin_database_url, "drivesight_mig") as url:
        yield url


def test_applies_once(empty_database: str) -> None:
    applied = migrate(empty_database)
    with psycopg.connect(empty_database) as conn:
        names = [m.name for m in shipped_migrations(database_dialect(conn))]
    assert names and names[0].startswith("0001_")
    assert applied == names
    assert migrate(empty_database) == []
    with psycopg.connect(empty_database) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"vehicles", "trips", "driving_events", "telemetry", "dead_letters", "ingested_messages"} <= tables


def test_edited_migration_is_refused(empty_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    migrate(empty_database)
    edited = [Migration(m.version, m.name, m.sql + "\n-- edited") for m in shipped_migrations()]
    monkeypatch.setattr(migrate_module, "shipped_migrations", lambda dialect="postgres": edited)
    with pytest.raises(MigrationError, match="must not be edited"):
        migrate(empty_database)
