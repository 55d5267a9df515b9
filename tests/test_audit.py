"""The audit log: appended in the caller's transaction, append-only, and a changed or removed row is found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import psycopg
import pytest

from cloud.privacy.audit import personal_subject, record, verify


def _append(conn: psycopg.Connection, n: int, action: str = "test.read") -> None:
    for i in range(n):
        record(conn, key_id=i, action=action, subject=f"s{i}", outcome="ok", detail={"i": i, "x": 1.5})


def _cli_verify(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "cloud.cli", "audit", "verify", "--json", *args],
        env={**os.environ, "DRIVESIGHT_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, json.loads(result.stdout)


def test_rows_chain_and_commit_with_the_callers_transaction(fresh_database: str) -> None:
    with psycopg.connect(fresh_database) as conn:
        _append(conn, 3)
        conn.rollback()  # what the caller undid is not in the log
        _append(conn, 2)
        conn.commit()
        report = verify(conn)
    assert report.ok and report.rows == 2 and report.last_id == 2
    code, doc = _cli_verify(fresh_database)
    assert code == 0 and doc["head_hash"] == report.head_hash and len(bytes.fromhex(report.head_hash)) == 32
    assert {k: doc[k] for k in ("ok", "rows", "last_id", "problems")} == {
        "ok": True, "rows": 2, "last_id": 2, "problems": []
    }  # fmt: skip


def test_the_log_refuses_update_delete_and_truncate(fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _append(conn, 1)
        for statement in (
            "UPDATE audit_log SET outcome = 'denied'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "UPDATE audit_head SET id = 0",
            "DELETE FROM audit_head",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert verify(conn).ok


def _bypass(conn: psycopg.Connection, statement: str) -> None:
    # what a superuser can do: switch triggers off for the session
    conn.execute("SET session_replication_role = replica")
    conn.execute(statement)
    conn.execute("SET session_replication_role = DEFAULT")


def test_a_changed_row_is_reported(fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _append(conn, 5)
        _bypass(conn, "UPDATE audit_log SET outcome = 'denied' WHERE id = 3")
        report = verify(conn)
    assert [(p.kind, p.id) for p in report.problems] == [("changed", 3)]
    code, doc = _cli_verify(fresh_database)
    assert code == 1 and doc["ok"] is False
    assert [(p["kind"], p["id"]) for p in doc["problems"]] == [("changed", 3)]


def test_a_changed_detail_or_time_is_reported(fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _append(conn, 3)
        _bypass(conn, """UPDATE audit_log SET detail = '{"i":0,"x":2.5}' WHERE id = 1""")
        _bypass(conn, "UPDATE audit_log SET at = at + interval '1 microsecond' WHERE id = 2")
        assert [(p.kind, p.id) for p in verify(conn).problems] == [("changed", 1), ("changed", 2)]


def test_a_deleted_row_is_reported(fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _append(conn, 5)
        _bypass(conn, "DELETE FROM audit_log WHERE id = 2")
        report = verify(conn)
    assert [(p.kind, p.id) for p in report.problems] == [("missing", 2)]
    assert _cli_verify(fresh_database)[0] == 1


def test_a_rehashed_row_still_breaks_the_chain(fresh_database: str) -> None:
    # a tamperer who recomputes the changed row's own hash cannot make the next row point at it
    from cloud.privacy.audit import _body, row_hash

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _append(conn, 3)
        at, prev = conn.execute("SELECT at, prev_hash FROM audit_log WHERE id = 2").fetchone()  # type: ignore[misc]
        detail = json.dumps({"i": 1, "x": 1.5}, separators=(",", ":"), sort_keys=True)
        forged = row_hash(bytes(prev), 2, _body(at, 1, "test.read", "s1", "denied", detail))
        _bypass(conn, f"UPDATE audit_log SET outcome = 'denied', hash = '\\x{forged.hex()}' WHERE id = 2")
        assert [(p.kind, p.id) for p in verify(conn).problems] == [("relinked", 3)]


def test_a_removed_tail_is_reported(fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _append(conn, 4)
        _bypass(conn, "DELETE FROM audit_log WHERE id = 4")
        assert [p.kind for p in verify(conn).problems] == ["tail_missing"]


def test_a_cut_tail_with_its_head_moved_back_is_caught_by_an_anchor(fresh_database: str) -> None:
    # whoever can bypass the triggers can also cut the tail and move the head back (or restore an older
    # backup): the chain left is consistent, and only an anchor kept outside the database shows the cut
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _append(conn, 3)
        anchor = verify(conn)
        _append(conn, 2)
        later = verify(conn)
        _bypass(conn, "DELETE FROM audit_log WHERE id > 3")
        _bypass(conn, f"UPDATE audit_head SET id = 3, hash = '\\x{anchor.head_hash}'")
        assert verify(conn).ok  # consistent without the anchor
        assert verify(conn, anchors=[(3, bytes.fromhex(anchor.head_hash))]).ok
        cut = verify(conn, anchors=[(5, bytes.fromhex(later.head_hash))])
        assert [(p.kind, p.id) for p in cut.problems] == [("anchor_mismatch", 5)]
        _bypass(conn, "UPDATE audit_log SET outcome = 'denied' WHERE id = 2")
        _bypass(conn, "UPDATE audit_log SET hash = '\\x00' WHERE id = 3")
    code, doc = _cli_verify(fresh_database, "--anchor", f"3:{anchor.head_hash}")
    assert code == 1
    assert {(p["kind"], p["id"]) for p in doc["problems"]} >= {("anchor_mismatch", 3), ("changed", 2)}
    bad = subprocess.run(
        [sys.executable, "-m", "cloud.cli", "audit", "verify", "--anchor", "3:nothex"],
        env={**os.environ, "DRIVESIGHT_DATABASE_URL": fresh_database},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "ID:HASH" in bad.stderr


def test_concurrent_appends_keep_one_chain(fresh_database: str) -> None:
    def worker() -> None:
        with psycopg.connect(fresh_database) as conn:
            for _ in range(25):
                _append(conn, 2)
                conn.commit()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        report = verify(conn)
    assert report.ok and report.rows == 200


def test_bad_rows_are_refused_before_anything_is_written(fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for kwargs in (
            {"action": "a\x00b", "subject": None, "outcome": "ok"},
            {"action": "", "subject": None, "outcome": "ok"},
            {"action": "x", "subject": "s" * 1001, "outcome": "ok"},
        ):
            with pytest.raises(ValueError):
                record(conn, key_id=None, **kwargs)
        with pytest.raises(ValueError):
            record(conn, key_id=None, action="x", subject=None, outcome="ok", detail={"x": float("nan")})
        assert verify(conn).rows == 0


def test_personal_subject_is_pseudonymous() -> None:
    subject = personal_subject("customer", "C123")
    assert "C123" not in subject and subject.startswith("customer:sha256:")
    assert subject == personal_subject("customer", "C123") != personal_subject("customer", "C124")
