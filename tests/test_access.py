"""API keys: created with their secret shown once and stored hashed, listed without secrets, revoked, audited;
the cache and the token bucket the API verifies them with."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from cloud.access import InvalidKeyRequest, KeyNotFound, UnknownScope
from cloud.access.cache import KeyCache
from cloud.access.keys import KEY_RE, create_key, list_keys, lookup_key, parse_scopes, revoke_key
from cloud.access.ratelimit import TokenBuckets
from cloud.privacy.audit import verify


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloud.cli", *args],
        env={**os.environ, "DRIVESIGHT_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_cli_create_list_revoke(fresh_database: str) -> None:
    created = _cli(fresh_database, "keys", "create", "--name", "r&d team", "--scopes", "rd:read, fleet:read",
                   "--expires-days", "30", "--json")  # fmt: skip
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert set(doc) == {"id", "key", "scopes", "expires_at"}
    assert doc["scopes"] == ["fleet:read", "rd:read"] and KEY_RE.match(doc["key"])
    expires = datetime.fromisoformat(doc["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    secret = doc["key"].split("_", 2)[2]
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        # only the hash is stored, nowhere the secret (not in the audit log either)
        dump = str(conn.execute("SELECT * FROM api_keys").fetchall())
        dump += str(conn.execute("SELECT * FROM audit_log").fetchall())
        assert secret not in dump
        stored = conn.execute("SELECT secret_sha256 FROM api_keys WHERE key_id = %s", (doc["id"],)).fetchone()
        assert stored is not None and bytes(stored[0]) == hashlib.sha256(secret.encode()).digest()

    listed = _cli(fresh_database, "keys", "list", "--json")
    assert listed.returncode == 0 and secret not in listed.stdout
    (key,) = json.loads(listed.stdout)["keys"]
    assert key["name"] == "r&d team" and key["revoked_at"] is None and key["last_used_at"] is None

    assert _cli(fresh_database, "keys", "revoke", str(doc["id"])).returncode == 0
    # idempotent: the first revocation's time stays
    again = _cli(fresh_database, "keys", "revoke", str(doc["id"]), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["revoked_at"] is not None
    assert json.loads(_cli(fresh_database, "keys", "list", "--active", "--json").stdout) == {"keys": []}
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        actions = conn.execute("SELECT action, subject, outcome FROM audit_log ORDER BY id").fetchall()
        assert verify(conn).ok
    subject = f"key:{doc['id']}"
    assert actions == [
        ("key.create", subject, "ok"),
        ("key.revoke", subject, "ok"),
        ("key.revoke", subject, "already_revoked"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "x", "--scopes", "admin,root"], "unknown scope 'root'"),
        (["--name", "x", "--scopes", ","], "at least one scope"),
        (["--name", "", "--scopes", "admin"], "1 to 100 printable"),
        (["--name", "a\tb", "--scopes", "admin"], "1 to 100 printable"),
        (["--name", "x" * 101, "--scopes", "admin"], "1 to 100 printable"),
        (["--name", "x", "--scopes", "admin", "--expires-days", "0"], "--expires-days"),
    ],
)
def test_keys_create_refuses_bad_input(fresh_database: str, args: list[str], message: str) -> None:
    result = _cli(fresh_database, "keys", "create", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)


def test_revoking_an_unknown_key_is_an_error(fresh_database: str) -> None:
    result = _cli(fresh_database, "keys", "revoke", "12345")
    assert result.returncode == 2 and "no API key with id 12345" in result.stderr
    with psycopg.connect(fresh_database, autocommit=True) as conn, pytest.raises(KeyNotFound):
        revoke_key(conn, 12345)


def test_lookup_and_last_used(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        key = create_key(conn, name="lookup", scopes=["fleet:read"])
        info = lookup_key(conn, key.key)
        assert info is not None and info.key_id == key.id and info.scopes == {"fleet:read"}
        used = conn.execute("SELECT last_used_at FROM api_keys WHERE key_id = %s", (key.id,)).fetchone()
        assert used is not None and used[0] is not None
        lookup_key(conn, key.key)  # within a minute: not written again
        again = conn.execute("SELECT last_used_at FROM api_keys WHERE key_id = %s", (key.id,)).fetchone()
        assert again == used
        prefix = key.key.split("_")[1]
        for wrong in (key.key[:-1] + ("A" if key.key[-1] != "A" else "B"), f"ds_{prefix}_" + "x" * 43,
                      key.key + "x", "", "ds__", "\x00" * 60, "é" * 55):  # fmt: skip
            assert lookup_key(conn, wrong) is None, wrong
        revoke_key(conn, key.id)
        revoked = lookup_key(conn, key.key)
        assert revoked is not None and not revoked.usable(datetime.now(UTC))
        assert key.id not in [k.key_id for k in list_keys(conn, include_revoked=False)]


def test_scopes_and_names_are_checked_without_a_database() -> None:
    assert parse_scopes("admin, rd:read,rd:read") == ("admin", "rd:read")
    with pytest.raises(UnknownScope):
        parse_scopes(["rd:write"])
    with pytest.raises(InvalidKeyRequest):
        create_key(object(), name=" ", scopes="admin")  # type: ignore[arg-type]  # refused before any query


def test_cache_entries_expire_after_their_ttl() -> None:
    now = [100.0]
    cache = KeyCache(2.0, clock=lambda: now[0])
    assert cache.get("t") == (False, None)
    cache.put("t", None, now[0])
    assert cache.get("t") == (True, None)
    now[0] += 1.99
    assert cache.get("t") == (True, None)
    now[0] += 0.01
    assert cache.get("t") == (False, None)


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=10, burst=3, clock=lambda: now[0])
    assert [buckets.take(1) for _ in range(3)] == [None, None, None]
    wait = buckets.take(1)
    assert wait is not None and wait == pytest.approx(0.1)
    assert buckets.take(2) is None  # another key has its own bucket
    now[0] += 0.1
    assert buckets.take(1) is None
    now[0] += 100
    assert [buckets.take(1) for _ in range(4)].count(None) == 3  # never more than the burst
