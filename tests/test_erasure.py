"""Two-step erasure: a person leaves every table of the schema (found from the database catalogue, not from a
list in the code), in one transaction, recorded in the ledger and the audit log; refusals are clear."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from cloud.privacy import audit, erasure, ledger
from cloud.privacy.erasure import (
    AlreadyConfirmed,
    CustomerNotFound,
    RequestExpired,
    RequestNotFound,
    SameKey,
    WrongToken,
)
from tests.helpers import count
from tests.privacy_world import Person, build_world

KEY = b"test-ledger-key-0123456789abcdef"

#: Every table of the schema, classified. "person": rows can name a person (an erasure must remove them);
#: otherwise why no row can. A table missing here fails the test: a new table must be thought about. Either
#: way every table is searched for the erased person's ids after the erasure.
TABLES: dict[str, str] = {
    "customers": "person",
    "vehicles": "person",
    "purchases": "person",
    "service_visits": "person",
    "complaints": "person",
    "online_accounts": "person",
    "interactions": "person",
    "identity_links": "person",
    "identity_merges": "person",
    "customer_features": "person",
    "customer_tags": "person",
    "customer_preferences": "person",
    "customer_clusters": "person",
    "segment_members": "person",
    "consent_events": "person",
    "consent_history": "person",
    "trips": "person",
    "trip_versions": "person",
    "driving_events": "person",
    "dtc_reports": "person",
    "push_feedback": "person",
    "telemetry": "person",
    "telemetry_narrow_v1": "person",
    "telemetry_latest": "person",
    "telemetry_hourly": "person",
    "telemetry_daily": "person",
    "ingested_messages": "person",
    "dead_letters": "person",
    "erasure_requests": "person",
    "campaign_decisions": "person",
    "webhook_deliveries": "person",
    "conversions": "person",
    "service_reminders": "person",
    "service_bookings": "person",
    "churn_scores": "person",
    "upgrade_scores": "person",
    "life_events": "person",
    "leads": "person",
    "credit_scores": "person",
    "lead_events": "person",
    "lead_assignments": "person",
    "lead_merges": "person",
    "qa_call_records": "person",
    "qa_inspections": "person",
    "dealer_targets": "none: a dealer's monthly targets",
    "lead_webhooks": "none: an assignment's delivery state (url, attempts); deleted with its assignment",
    "campaigns": "none: campaign definitions (audience rules, arms, schedule)",
    "churn_models": "none: fitted trees and calibration over many customers",
    "upgrade_models": "none: fitted trees and calibration over many customers",
    "dealers": "none: dealers are businesses",
    "content_items": "none: the catalogue of articles and products",
    "item_categories": "none: the catalogue's categories",
    "segments": "none: named rules and a member count",
    "cluster_models": "none: centroids and scaling over all customers",
    "analytics_runs": "none: run times and counts",
    "telemetry_daily_dirty": "none: days to recompute",
    "telemetry_late_days": "none: days",
    "retention_cutoffs": "none: per stream, a time",
    "erasure_ledger": "none: keyed hashes only (HMAC-SHA256 under the ledger key)",
    "api_keys": "none: keys of teams and services, not of customers",
    "audit_log": "none: person subjects are pseudonymous (audit.personal_subject)",
    "audit_head": "none: the chain's head hash",
    "schema_migrations": "none: migration names",
    "schema_info": "none: the dialect",
}


#: TimescaleDB's own tables, where that extension is in the database (not on the development machines: checked
#: there by hand only); its chunks and continuous aggregates' hypertables count as the tables they belong to
TIMESCALEDB: dict[str, str] = {
    "timescaledb catalog": "none: the extension's catalogue of hypertables, chunks and jobs",
    "timescaledb compressed": "person: telemetry's compressed chunks (vehicle_id, the segment key, in clear)",
}
_TIMESCALEDB_SCHEMAS = (
    "_timescaledb_catalog", "_timescaledb_config", "_timescaledb_cache", "_timescaledb_functions",
    "_timescaledb_debug", "timescaledb_information", "timescaledb_experimental",
)  # fmt: skip


def catalogue(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, str, str]]:
    """(schema, table, the table it is classified as) for every table, partition and materialized view outside
    PostgreSQL's own schemas; a partition or chunk counts as its root table."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname, coalesce(("
        "  SELECT r.relname FROM pg_class r WHERE r.oid = pg_partition_root(c.oid)), ("
        "  SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
        "  WHERE i.inhrelid = c.oid"
        "  LIMIT 1), c.relname)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1, 2"
    ).fetchall()
    aggregates: dict[str, str] = {}
    if conn.execute("SELECT to_regclass('timescaledb_information.continuous_aggregates')").fetchone() != (
        None,
    ):
        aggregates = {
            str(m): str(v)
            for m, v in conn.execute(
                "SELECT materialization_hypertable_name, view_name"
                " FROM timescaledb_information.continuous_aggregates"
            ).fetchall()
        }
    found = []
    for schema, table, root in rows:
        name = aggregates.get(str(root), str(root))
        internal = schema == "_timescaledb_internal"
        if name.startswith("_compressed_hypertable_") or (
            internal and str(table).startswith("compress_hyper_")
        ):
            name = "timescaledb compressed"  # (a restored compressed chunk does not inherit from its parent)
        elif schema in _TIMESCALEDB_SCHEMAS or (internal and root == table and name == table):
            name = "timescaledb catalog"  # its job statistics and the like: no chunk of a table of ours
        found.append((str(schema), str(table), name))
    return found


def readable(conn: psycopg.Connection[tuple[object, ...]]) -> dict[tuple[str, str, bool], str]:
    """How to read every catalogued relation: (schema, table, ONLY or not) -> the table it is classified as.
    Partitions are read each on their own; TimescaleDB's chunks through their hypertable or continuous
    aggregate (compressed rows are readable only decompressed, that way; a restored compressed chunk cannot
    be read directly at all)."""
    scans: dict[tuple[str, str, bool], str] = {}
    for schema, table, root in catalogue(conn):
        if schema == "_timescaledb_internal" and root != "timescaledb catalog":
            parent = "telemetry" if root == "timescaledb compressed" else root
            scans[("public", parent, False)] = parent
        else:
            scans[(schema, table, True)] = root
    return scans


def _from(schema: str, table: str, only: bool) -> sql.Composable:
    return sql.SQL("{} {}").format(sql.SQL("ONLY" if only else ""), sql.Identifier(schema, table))


def holding(conn: psycopg.Connection[tuple[object, ...]], person: Person) -> dict[str, int]:
    """Per classified table (:func:`readable`), the rows whose text — every column, jsonb and arrays included
    — holds one of the person's ids or identifying values; bytea columns render as hex, so the values' hex is
    searched too."""
    patterns = [f"%{v}%" for v in person.identifiers] + [f"%{v.encode().hex()}%" for v in person.identifiers]
    found: dict[str, int] = {}
    for (schema, table, only), root in readable(conn).items():
        query = sql.SQL("SELECT count(*) FROM {} t WHERE t::text LIKE ANY(%s)").format(
            _from(schema, table, only)
        )
        n = count(conn, query.as_string(conn), patterns)
        if n:
            found[root] = found.get(root, 0) + n
    return found


def row_counts(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, int]:
    """Rows per classified table (:func:`readable`)."""
    counts: dict[str, int] = {}
    for (schema, table, only), root in readable(conn).items():
        n = count(conn, sql.SQL("SELECT count(*) FROM {}").format(_from(schema, table, only)).as_string(conn))
        counts[root] = counts.get(root, 0) + n
    return counts


@pytest.fixture
def world(fresh_database: str, tmp_path: Path) -> Iterator[tuple[str, Person, Person]]:
    """A fresh database with two people in every table a person can be in."""
    a, b = build_world(fresh_database, tmp_path)
    yield fresh_database, a, b


def test_every_table_of_the_schema_is_classified(fresh_database: str) -> None:
    with psycopg.connect(fresh_database) as conn:
        roots = {root for _schema, _table, root in catalogue(conn)}
    unclassified = sorted(roots - TABLES.keys() - TIMESCALEDB.keys())
    assert not unclassified, (
        f"classify these tables in TABLES (and erase them if they can hold a person): {unclassified}"
    )
    assert sorted(TABLES.keys() - roots) == []  # a table that went: drop it from the map
    person_tables = {t for t, how in TABLES.items() if how == "person"}
    erased = {t for t, _where in erasure.ERASED} | {"erasure_requests"}
    assert person_tables == erased


def test_an_erased_person_is_in_no_table(world: tuple[str, Person, Person], tmp_path: Path) -> None:
    url, a, b = world
    ledger_file = tmp_path / "ledger.jsonl"
    with psycopg.connect(url, autocommit=True) as conn:
        request = erasure.request_erasure(conn, a.customer_id, key_id=1)
        assert request.token.startswith("et_") and len(request.token) == 46  # 32 random bytes, never "-..."
        before = holding(conn, a)
        others_before = holding(conn, b)
        # the world reaches every person table (else the check after the erasure would prove nothing)
        person_tables = {t for t, how in TABLES.items() if how == "person"}
        assert person_tables - before.keys() == set()
        assert (
            count(
                conn,
                "SELECT count(*) FROM erasure_requests WHERE token_sha256 = sha256(%s::bytea)",
                request.token.encode(),
            )
            == 1
        )

        result = erasure.confirm_erasure(
            conn, request.request_id, request.token, key_id=2, ledger_key=KEY, ledger_file=ledger_file
        )
        assert holding(conn, a) == {}
        assert holding(conn, b) == others_before  # the other person keeps every row
        assert result.rows["customers"] == 1 and result.rows["vehicles"] == 2
        assert result.rows["telemetry"] == 120 and result.rows["dead_letters"] == 2
        # the segment the person was in counts one member less
        assert count(conn, "SELECT size FROM segments WHERE name = 'privacy-test'") == 1
        # the ledger: keyed hashes in the table and the file, the same entry, no clear id
        entries = ledger.stored(conn)
        assert len(entries) == 1 and ledger.read_file(ledger_file) == entries
        assert entries[0].customer == ledger.pseudonym(KEY, "customer", a.customer_id)
        assert set(entries[0].vehicles) == {ledger.pseudonym(KEY, "vehicle", v) for v in a.vehicle_ids}
        assert entries[0].accounts == (ledger.pseudonym(KEY, "account", a.account_id),)
        assert not any(v.encode() in ledger_file.read_bytes() for v in a.identifiers)
        # audited: the request and the confirmation, under the person's pseudonym
        actions = conn.execute(
            "SELECT action, key_id, outcome FROM audit_log WHERE subject = %s ORDER BY id",
            (audit.personal_subject("customer", a.customer_id),),
        ).fetchall()
        assert actions == [("privacy.erasure.request", 1, "ok"), ("privacy.erasure.confirm", 2, "ok")]
        assert audit.verify(conn).ok

        # a second confirmation is refused (409), audited, and changes nothing
        with pytest.raises(AlreadyConfirmed) as info:
            erasure.confirm_erasure(conn, request.request_id, request.token, key_id=3, ledger_key=KEY)
        assert info.value.status == 409
        assert len(ledger.stored(conn)) == 1
        assert count(conn, "SELECT count(*) FROM audit_log WHERE outcome = 'AlreadyConfirmed'") == 1


def test_refusals_are_clear_and_change_nothing(world: tuple[str, Person, Person]) -> None:
    url, a, _b = world
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(CustomerNotFound) as nobody:
            erasure.request_erasure(conn, "nobody-at-all", key_id=1)
        assert nobody.value.status == 404
        with pytest.raises(RequestNotFound):
            erasure.confirm_erasure(conn, 999_999, "x", key_id=2, ledger_key=KEY)
        request = erasure.request_erasure(conn, a.customer_id, key_id=1)
        with pytest.raises(WrongToken):
            erasure.confirm_erasure(conn, request.request_id, request.token + "x", key_id=2, ledger_key=KEY)
        with pytest.raises(SameKey):
            erasure.confirm_erasure(conn, request.request_id, request.token, key_id=1, ledger_key=KEY)
        expired = erasure.request_erasure(conn, a.customer_id, key_id=1, ttl=timedelta(0))
        with pytest.raises(RequestExpired) as gone:
            erasure.confirm_erasure(conn, expired.request_id, expired.token, key_id=2, ledger_key=KEY)
        assert gone.value.status == 410
        assert count(conn, "SELECT count(*) FROM customers WHERE customer_id = %s", a.customer_id) == 1
        outcomes = [
            str(o)
            for (o,) in conn.execute(
                "SELECT outcome FROM audit_log WHERE action LIKE 'privacy.erasure.%' ORDER BY id"
            ).fetchall()
        ]
        assert outcomes == [
            "not_found",
            "RequestNotFound",
            "ok",
            "WrongToken",
            "SameKey",
            "ok",
            "RequestExpired",
        ]
        # from the CLI (no key) one operator may ask and confirm
        erasure.confirm_erasure(conn, request.request_id, request.token, key_id=None, ledger_key=KEY)
        assert count(conn, "SELECT count(*) FROM customers WHERE customer_id = %s", a.customer_id) == 0
        # the other open request of the erased person names nobody now
        assert count(conn, "SELECT count(*) FROM erasure_requests WHERE customer_id IS NOT NULL") == 0


def test_an_erasure_that_fails_half_way_leaves_everything(world: tuple[str, Person, Person]) -> None:
    url, a, _b = world
    with psycopg.connect(url, autocommit=True) as conn:
        # the last step fails: everything before it must roll back with it
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE DELETE ON customers FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
        request = erasure.request_erasure(conn, a.customer_id, key_id=1)
        before = holding(conn, a)
        audit_rows = count(conn, "SELECT count(*) FROM audit_log")
        with pytest.raises(psycopg.errors.RaiseException):
            erasure.confirm_erasure(conn, request.request_id, request.token, key_id=2, ledger_key=KEY)
        assert holding(conn, a) == before
        assert ledger.stored(conn) == []
        assert count(conn, "SELECT count(*) FROM audit_log") == audit_rows
        conn.execute("DROP TRIGGER refuse ON customers")
        erasure.confirm_erasure(conn, request.request_id, request.token, key_id=2, ledger_key=KEY)
        assert holding(conn, a) == {}


def test_the_ledger_erases_a_person_again_and_refuses_another_key(
    world: tuple[str, Person, Person], tmp_path: Path
) -> None:
    url, a, b = world
    with psycopg.connect(url, autocommit=True) as conn:
        entry = ledger.LedgerEntry.of(KEY, datetime.now(UTC), a.customer_id, a.vehicle_ids, [a.account_id])
        others = holding(conn, b)
        with pytest.raises(ledger.LedgerError, match="another ledger key"):
            erasure.reapply_ledger(conn, b"some-other-key-0123456789", [entry])
        assert holding(conn, a) != {}
        result = erasure.reapply_ledger(conn, KEY, [entry])
        assert (result.entries, result.entries_added, result.customers, result.vehicles, result.accounts) == (
            1,
            1,
            1,
            2,
            1,
        )
        assert holding(conn, a) == {}
        assert holding(conn, b) == others
        again = erasure.reapply_ledger(conn, KEY, [entry])  # idempotent
        assert (again.entries_added, again.customers, again.rows) == (0, 0, {})


def test_a_new_table_fails_the_check_until_classified_and_erased(world: tuple[str, Person, Person]) -> None:
    url, a, _b = world
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE loyalty_points (holder text, points integer)")
        conn.execute("INSERT INTO loyalty_points VALUES (%s, 10)", (a.customer_id,))
        assert {root for _s, _t, root in catalogue(conn)} - TABLES.keys() - TIMESCALEDB.keys() == {
            "loyalty_points"
        }
        request = erasure.request_erasure(conn, a.customer_id, key_id=1)
        erasure.confirm_erasure(conn, request.request_id, request.token, key_id=2, ledger_key=KEY)
        assert holding(conn, a) == {
            "loyalty_points": 1
        }  # what the erasure does not know about, the search finds


def test_erasure_through_the_api_needs_a_second_key(
    world: tuple[str, Person, Person], tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from cloud.access.keys import create_key
    from cloud.api.app import create_app
    from cloud.config import CloudSettings

    url, a, b = world
    with psycopg.connect(url, autocommit=True) as conn:
        first, second, marketing = (
            create_key(conn, name=name, scopes=[scope]).key
            for name, scope in (
                ("dpo", "privacy:admin"),
                ("dpo 2", "privacy:admin"),
                ("mk", "marketing:read"),
            )
        )
    settings = CloudSettings(privacy_ledger_key=KEY.decode(), privacy_ledger_file=tmp_path / "ledger.jsonl")

    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    with TestClient(create_app(url, settings=settings)) as api:
        unknown = api.post("/v1/privacy/customers/nobody-here/erasure", headers=auth(first))
        assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
        assert (
            api.post(f"/v1/privacy/customers/{a.customer_id}/erasure", headers=auth(marketing)).status_code
            == 403
        )
        made = api.post(f"/v1/privacy/customers/{a.customer_id}/erasure", headers=auth(first))
        assert made.status_code == 201, made.text
        request = made.json()
        confirm = request["confirm"]
        same = api.post(confirm, json={"token": request["token"]}, headers=auth(first))
        assert (same.status_code, same.json()["code"]) == (403, "same_key")
        wrong = api.post(confirm, json={"token": "not-it"}, headers=auth(second))
        assert (wrong.status_code, wrong.json()["code"]) == (403, "wrong_token")
        assert api.post(confirm, json={}, headers=auth(second)).status_code == 422
        done = api.post(confirm, json={"token": request["token"]}, headers=auth(second))
        assert done.status_code == 200, done.text
        assert done.json()["rows"]["customers"] == 1
        again = api.post(confirm, json={"token": request["token"]}, headers=auth(second))
        assert (again.status_code, again.json()["code"]) == (409, "already_confirmed")
        assert (
            api.post(
                "/v1/privacy/erasures/999999/confirm", json={"token": "x"}, headers=auth(second)
            ).status_code
            == 404
        )
    with psycopg.connect(url) as conn:
        assert holding(conn, a) == {}
        assert holding(conn, b) != {}
        assert len(ledger.read_file(tmp_path / "ledger.jsonl")) == 1
    # without a ledger key the service cannot erase: it says so
    with TestClient(create_app(url, settings=CloudSettings())) as api:
        made = api.post(f"/v1/privacy/customers/{b.customer_id}/erasure", headers=auth(first)).json()
        refused = api.post(made["confirm"], json={"token": made["token"]}, headers=auth(second))
        assert refused.status_code == 503 and "DRIVESIGHT_PRIVACY_LEDGER_KEY" in refused.json()["detail"]


def test_dead_letters_match_alike_with_few_or_many_ids(fresh_database: str) -> None:
    odd = "klant-é\\1"  # non-ASCII and a backslash: payloads are searched in their escaped form
    letters = [
        ("ds/v1/car-1/trip", "x", b'{"vehicle_id": "car-1"}'),  # topic and payload
        ("ds/v1/bad/trip", "(car-2, 7) is stored with other content", b"zz"),  # detail only
        ("ds/v1/bad/trip", "x", b"\x00\xff" + odd.encode() + b"\x80"),  # payload only, among odd bytes
        ("ds/v1/car-3/trip", "x", b"{}"),  # someone else
        ("ds/v1/bad/trip", "x", b"car-"),  # a prefix of theirs is not theirs
    ]
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO dead_letters (topic, reason, detail, payload, size_bytes, sha256)"
            " VALUES (%s, 'invalid', %s, %s, length(%s), sha256(%s))",
            [(t, d, p, p, p) for t, d, p in letters],
        )
        deleted = []
        for padding in ([], [f"nobody-{i}" for i in range(20)]):  # few ids: substring searches; many: a regex
            with conn.transaction(force_rollback=True):
                rows = erasure.erase(conn, customer_ids=[odd, *padding], vehicle_ids=["car-1", "car-2"])
                left = [
                    str(t) + str(d)
                    for t, d in conn.execute("SELECT topic, detail FROM dead_letters ORDER BY id")
                ]
                deleted.append((rows.get("dead_letters"), left))
        assert deleted[0] == deleted[1] == (3, ["ds/v1/car-3/tripx", "ds/v1/bad/tripx"])


def test_two_confirmations_at_once_erase_once(world: tuple[str, Person, Person]) -> None:
    import threading

    url, a, _b = world
    with psycopg.connect(url, autocommit=True) as conn:
        request = erasure.request_erasure(conn, a.customer_id, key_id=1)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def confirm(key_id: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            start.wait()
            try:
                erasure.confirm_erasure(
                    conn, request.request_id, request.token, key_id=key_id, ledger_key=KEY
                )
                outcomes.append("erased")
            except AlreadyConfirmed:
                outcomes.append("409")

    threads = [threading.Thread(target=confirm, args=(k,)) for k in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["409", "erased"]
    with psycopg.connect(url) as conn:
        assert len(ledger.stored(conn)) == 1 and holding(conn, a) == {}
