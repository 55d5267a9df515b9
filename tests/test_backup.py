"""Backup and restore with pg_dump/pg_restore: a restored backup older than an erasure keeps the person
erased (the ledger is re-applied) and every other table as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from cloud.db.backup import BackupError, archive_dialect, backup, restore, restore_plan
from cloud.privacy import audit, erasure, ledger
from tests.helpers import scratch_database, timescaledb_missing
from tests.privacy_world import build_world
from tests.test_erasure import KEY, holding, row_counts

#: tables whose rows a restore of an older backup cannot match, and why
DIFFER = {
    "audit_log": "the erasure's own audit rows came after the backup; the restore appends its own",
    "audit_head": "names the last audit row",
    "timescaledb catalog": "TimescaleDB's job statistics change by themselves (where the extension is)",
    "erasure_requests": "made after the backup (the ledger, not the request, is what carries over)",
}


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return row_counts(conn)


def test_a_restored_older_backup_keeps_the_erased_person_erased(
    fresh_database: str, admin_database_url: str, tmp_path: Path
) -> None:
    a, b = build_world(fresh_database, tmp_path)
    archive = tmp_path / "before.dump"
    info = backup(fresh_database, archive)
    assert info.bytes > 0 and archive.read_bytes().startswith(b"PGDMP")
    ledger_file = tmp_path / "ledger.jsonl"
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        request = erasure.request_erasure(conn, a.customer_id, key_id=1)
        erasure.confirm_erasure(
            conn, request.request_id, request.token, key_id=2, ledger_key=KEY, ledger_file=ledger_file
        )
        others = holding(conn, b)
    after_erasure = _counts(fresh_database)
    with scratch_database(admin_database_url, "drivesight_restore") as target:
        restored = restore(target, archive, after_restore=erasure.ledger_reapplier(KEY, ledger_file))
        assert restored.migrations_applied == []
        result = restored.after_restore
        assert isinstance(result, erasure.ReapplyResult)
        assert (result.entries, result.entries_added, result.customers, result.vehicles) == (1, 1, 1, 2)
        with psycopg.connect(target) as conn:
            assert holding(conn, a) == {}
            assert holding(conn, b) == others
            assert len(ledger.stored(conn)) == 1
            assert audit.verify(conn).ok  # the backup's chain, with the re-application appended
        counts = _counts(target)
        assert counts.keys() == after_erasure.keys()
        differ = {t: (after_erasure[t], counts[t]) for t in counts if counts[t] != after_erasure[t]}
        assert differ.keys() <= DIFFER.keys(), differ
        # without the ledger the older backup brings the person back: why the restore re-applies it
    with scratch_database(admin_database_url, "drivesight_restore") as target:
        restore(target, archive, after_restore=None)
        with psycopg.connect(target) as conn:
            assert holding(conn, a) != {}


def test_restore_refuses_a_database_that_holds_tables(fresh_database: str, tmp_path: Path) -> None:
    archive = tmp_path / "x.dump"
    backup(fresh_database, archive)
    with pytest.raises(BackupError, match="restore into an empty database"):
        restore(fresh_database, archive, after_restore=None)
    with pytest.raises(BackupError, match="no backup at"):
        restore(fresh_database, tmp_path / "missing.dump", after_restore=None)


def test_a_ledger_under_another_key_is_refused_before_anything_is_restored(
    fresh_database: str, tmp_path: Path
) -> None:
    a, _b = build_world(fresh_database, tmp_path)
    ledger_file = tmp_path / "ledger.jsonl"
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        request = erasure.request_erasure(conn, a.customer_id, key_id=1)
        erasure.confirm_erasure(
            conn, request.request_id, request.token, key_id=2, ledger_key=KEY, ledger_file=ledger_file
        )
    with pytest.raises(ledger.LedgerError, match="another ledger key"):
        erasure.ledger_reapplier(b"another-key-0123456789abcdef", ledger_file)


def test_the_timescaledb_restore_follows_its_documented_procedure() -> None:
    # what this machine can check without the extension: the dialect read from an archive's listing, and
    # the steps in TimescaleDB's order (pre_restore before the data, post_restore after it)
    listing = (
        ";\n; Archive created at 2026-12-01\n;\n"
        "2; 3079 17016 EXTENSION - timescaledb \n"
        "3; 0 0 COMMENT - EXTENSION timescaledb \n"
        "215; 1259 16390 TABLE public vehicles postgres\n"
    )
    assert archive_dialect(listing) == "timescaledb"
    assert archive_dialect("215; 1259 16390 TABLE public vehicles postgres\n") == "postgres"
    plan = restore_plan("timescaledb")
    assert plan.index("SELECT timescaledb_pre_restore()") < plan.index("pg_restore --exit-on-error")
    assert plan.index("pg_restore --exit-on-error") < plan.index("SELECT timescaledb_post_restore()")
    assert plan.index("SELECT timescaledb_post_restore()") < plan.index("after_restore")
    assert restore_plan("postgres")[0] == "pg_restore --single-transaction --exit-on-error"


def test_timescaledb_round_trip(
    admin_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = timescaledb_missing(admin_database_url)
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("DRIVESIGHT_DB_DIALECT", "timescaledb")
    from cloud.db.migrate import migrate

    with scratch_database(admin_database_url, "drivesight_ts") as source:
        migrate(source)
        a, b = build_world(source, tmp_path)
        with psycopg.connect(source, autocommit=True) as conn:
            # compressed chunks: the erasure's DELETE and the restore must handle them too
            conn.execute(
                "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('telemetry') c"
            )
            others = holding(conn, b)
        archive = tmp_path / "ts.dump"
        backup(source, archive)
        ledger_file = tmp_path / "ledger.jsonl"
        with psycopg.connect(source, autocommit=True) as conn:
            request = erasure.request_erasure(conn, a.customer_id, key_id=1)
            erasure.confirm_erasure(
                conn, request.request_id, request.token, key_id=2, ledger_key=KEY, ledger_file=ledger_file
            )
            assert holding(conn, a) == {}
        with scratch_database(admin_database_url, "drivesight_ts_restore") as target:
            restored = restore(target, archive, after_restore=erasure.ledger_reapplier(KEY, ledger_file))
            assert restored.dialect == "timescaledb"
            with psycopg.connect(target) as conn:
                assert holding(conn, a) == {}
                assert holding(conn, b) == others


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRIVESIGHT_")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "drivesight-cloud"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, **env},
    )


def test_the_commands_back_up_erase_and_restore(
    fresh_database: str, admin_database_url: str, tmp_path: Path
) -> None:
    a, b = build_world(fresh_database, tmp_path)
    env = {
        "DRIVESIGHT_DATABASE_URL": fresh_database,
        "DRIVESIGHT_PRIVACY_LEDGER_KEY": KEY.decode(),
        "DRIVESIGHT_PRIVACY_LEDGER_FILE": str(tmp_path / "ledger.jsonl"),
    }
    archive = tmp_path / "cli.dump"
    done = _cli("db", "backup", str(archive), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bytes"] == archive.stat().st_size
    exported = _cli("privacy", "export", a.customer_id, "--json", env=env)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["customer"]["customer_id"] == a.customer_id
    shown = _cli(
        "privacy", "consent", a.customer_id, "--withdraw", "marketing", "--source", "app", "--json", env=env
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["current"]["marketing"] is False
    requested = _cli("privacy", "erase", a.customer_id, "--json", env=env)
    assert requested.returncode == 0, requested.stderr
    request = json.loads(requested.stdout)
    confirm = ("privacy", "confirm", str(request["request_id"]), "--token", request["token"], "--json")
    erased = _cli(*confirm, env=env)
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["rows"]["customers"] == 1
    again = _cli(*confirm, env=env)
    assert (again.returncode, again.stdout) == (3, "") and "was confirmed at" in again.stderr
    for refused in (
        ("privacy", "export", "nobody-here", "--json"),
        ("privacy", "erase", "nobody-here", "--json"),
        ("privacy", "consent", b.customer_id, "--grant", "ads", "--json"),
    ):
        result = _cli(*refused, env=env)
        assert (result.returncode, result.stdout) == (2, ""), result.stdout + result.stderr
        assert "not found" in result.stderr or "unknown consent scope" in result.stderr
    with scratch_database(admin_database_url, "drivesight_restore") as target:
        restored = _cli(
            "db", "restore", str(archive), "--json", env={**env, "DRIVESIGHT_DATABASE_URL": target}
        )
        assert restored.returncode == 0, restored.stderr
        assert json.loads(restored.stdout)["ledger"]["customers"] == 1
        with psycopg.connect(target) as conn:
            assert holding(conn, a) == {}
        refused_again = _cli(
            "db", "restore", str(archive), "--json", env={**env, "DRIVESIGHT_DATABASE_URL": target}
        )
        assert (refused_again.returncode, refused_again.stdout) == (2, "")
        assert "restore into an empty database" in refused_again.stderr
    no_key = _cli("db", "restore", str(archive), env={"DRIVESIGHT_DATABASE_URL": fresh_database})
    assert no_key.returncode != 0 and "DRIVESIGHT_PRIVACY_LEDGER_KEY" in no_key.stderr
