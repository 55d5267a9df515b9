"""Consent per person and scope: history, the current consent derived from it, fed by cars, imports and the
simulated population."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from cloud.analytics.imports import RowErrors, import_file
from cloud.ingest.store import store_batch
from cloud.privacy import consent
from edge_agent.protocol import ConsentState, Message, StatusV1, decode, encode, uplink_topic
from simulators.population import CONSENT_RATES, simulate_population
from simulators.population_files import IMPORT_ORDER, write_population_files
from tests.helpers import count

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


def _customer(conn: psycopg.Connection[tuple[object, ...]], prefix: str, *vehicles: str) -> str:
    customer_id = f"{prefix}C"
    conn.execute("INSERT INTO customers (customer_id) VALUES (%s)", (customer_id,))
    for vehicle_id in vehicles:
        conn.execute(
            "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, customer_id)"
            " VALUES (%s, now(), now(), %s)",
            (vehicle_id, customer_id),
        )
    return customer_id


def _status(vehicle_id: str, seq: int, at: datetime, **choices: bool) -> Message:
    body = StatusV1(state="online", agent_version="1", consent=ConsentState(**choices))
    return decode(uplink_topic(vehicle_id, "status"), encode(vehicle_id, seq, body, sent_at=at))


def test_no_event_means_not_granted_and_the_latest_decision_counts(
    db: psycopg.Connection[tuple[object, ...]], vehicle_prefix: str
) -> None:
    customer = _customer(db, vehicle_prefix)
    assert consent.current(db, customer) == dict.fromkeys(consent.SCOPES, False)
    assert not consent.allows(db, customer, "marketing")
    assert not consent.allows(db, "nobody-at-all", "marketing")
    consent.record(db, customer, "marketing", True, "app", at=T0)
    assert consent.allows(db, customer, "marketing")
    consent.record(db, customer, "marketing", False, "dealer", at=T0 + timedelta(days=1), key_id=7)
    assert not consent.allows(db, customer, "marketing")
    # recorded later but decided earlier: history, not the current choice
    consent.record(db, customer, "marketing", True, "import", at=T0 + timedelta(hours=1))
    assert not consent.allows(db, customer, "marketing")
    assert consent.current(db, customer) == dict.fromkeys(consent.SCOPES, False)
    events = consent.history(db, customer)
    assert [(e.granted, e.source, e.key_id) for e in events] == [
        (True, "app", None),
        (True, "import", None),
        (False, "dealer", 7),
    ]
    assert consent.allowed_customers(db, [customer], "marketing") == set()
    consent.record(db, customer, "rd", True, "app")
    assert consent.allowed_customers(db, [customer, "nobody"], "rd") == {customer}


def test_bad_scope_source_or_customer_is_refused(
    db: psycopg.Connection[tuple[object, ...]], vehicle_prefix: str
) -> None:
    customer = _customer(db, vehicle_prefix)
    with pytest.raises(consent.ConsentError, match="unknown consent scope 'ads'"):
        consent.record(db, customer, "ads", True, "app")
    with pytest.raises(consent.ConsentError, match="unknown consent source 'fax'"):
        consent.record(db, customer, "marketing", True, "fax")
    with pytest.raises(consent.ConsentError, match="not found"):
        consent.record(db, f"{vehicle_prefix}nobody", "marketing", True, "app")
    with pytest.raises(consent.ConsentError, match="UTC offset"):
        consent.record(db, customer, "marketing", True, "app", at=datetime(2026, 1, 1))
    with pytest.raises(consent.ConsentError):
        consent.allows(db, customer, "ads")
    assert consent.history(db, customer) == []


def test_what_cars_report_feeds_their_owner(
    db: psycopg.Connection[tuple[object, ...]], vehicle_prefix: str
) -> None:
    car, second, stray = f"{vehicle_prefix}v1", f"{vehicle_prefix}v2", f"{vehicle_prefix}v3"
    customer = _customer(db, vehicle_prefix, car, second)
    db.execute("INSERT INTO vehicles (vehicle_id, first_seen, last_seen) VALUES (%s, now(), now())", (stray,))
    store_batch(db, [_status(car, 1, T0, telemetry=True, location=False, profiling=True)])
    assert consent.current(db, customer) == {
        "marketing": False,
        "profiling": True,
        "location": False,
        "rd": True,
        "dealer_sharing": False,  # a car has no such switch
    }
    # every connect repeats the status: nothing new; a change adds that scope alone
    store_batch(
        db, [_status(car, 2, T0 + timedelta(hours=1), telemetry=True, location=False, profiling=True)]
    )
    store_batch(
        db, [_status(car, 3, T0 + timedelta(hours=2), telemetry=True, location=False, profiling=False)]
    )
    car_events = [(e.scope, e.granted, e.source, e.vehicle_id) for e in consent.history(db, customer)]
    assert car_events == [
        ("rd", True, "car", car),
        ("location", False, "car", car),
        ("profiling", True, "car", car),
        ("profiling", False, "car", car),
    ]
    assert not consent.allows(db, customer, "profiling")
    # the person grants profiling in the app later: that counts until a car says otherwise again
    consent.record(db, customer, "profiling", True, "app", at=T0 + timedelta(hours=3))
    assert consent.allows(db, customer, "profiling")
    store_batch(
        db, [_status(second, 1, T0 + timedelta(hours=4), telemetry=False, location=False, profiling=False)]
    )
    assert consent.current(db, customer) == {
        "marketing": False,
        "profiling": False,
        "location": False,
        "rd": False,
        "dealer_sharing": False,
    }
    # a car without an owner feeds nobody; the car's own history is still kept per vehicle
    store_batch(db, [_status(stray, 1, T0, telemetry=True, location=True, profiling=True)])
    assert count(db, "SELECT count(*) FROM consent_events WHERE vehicle_id = %s", stray) == 0
    assert count(db, "SELECT count(*) FROM consent_history WHERE vehicle_id = %s", stray) == 1


def test_consent_imports_as_events(fresh_database: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("INSERT INTO customers (customer_id) VALUES ('C1'), ('C2')")
        good = tmp_path / "consent.csv"
        good.write_text(
            "customer_id,scope,granted,at,source\n"
            "C1,marketing,true,2026-08-01T10:00:00Z,dealer\n"
            "C1,marketing,true,2026-08-01T10:00:00Z,dealer\n"
            "C2,rd,false,2026-08-02T10:00:00+08:00,\n"
        )
        assert import_file(conn, "consent", good).imported == 3
        assert import_file(conn, "consent", good).imported == 3  # again: nothing doubled
        assert count(conn, "SELECT count(*) FROM consent_events") == 2
        assert consent.allows(conn, "C1", "marketing") and not consent.allows(conn, "C2", "rd")
        assert count(conn, "SELECT count(*) FROM consent_events WHERE source = 'import'") == 1
        bad = tmp_path / "bad.csv"
        bad.write_text(
            "customer_id,scope,granted,at,source\n"
            "C1,ads,true,2026-08-01T10:00:00Z,app\n"
            "C1,rd,maybe,2026-08-01T10:00:00Z,app\n"
            "C1,rd,true,2026-08-01T10:00:00,app\n"
            "C1,rd,true,2026-08-01T10:00:00Z,car\n"
        )
        with pytest.raises(RowErrors) as info:
            import_file(conn, "consent", bad)
        assert [line for line, _ in info.value.errors] == [2, 3, 4, 5]
        bad.write_text(
            "customer_id,scope,granted,at\nC1,rd,true,2026-08-01T10:00:00Z\nC9,rd,true,2026-08-01T10:00:00Z\n"
        )
        with pytest.raises(RowErrors, match="line 3: customer_id 'C9' is not in customers"):
            import_file(conn, "consent", bad)
        assert count(conn, "SELECT count(*) FROM consent_events") == 2


def test_simulated_customers_carry_consent(fresh_database: str, tmp_path: Path) -> None:
    pop = simulate_population(400, seed=5, days=3)
    files = write_population_files(pop, tmp_path)
    assert IMPORT_ORDER.index("consent") == IMPORT_ORDER.index("customers") + 1
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for kind in IMPORT_ORDER[:3]:
            import_file(conn, kind, files[kind])
        # the scopes a dealer records at the purchase (dealer_sharing is not drawn: nobody has it by default)
        assert count(conn, "SELECT count(*) FROM consent_events") == 400 * len(CONSENT_RATES)
        shares: dict[str, float] = dict(
            conn.execute(
                "SELECT scope, avg(granted::int)::float FROM consent_current GROUP BY scope"
            ).fetchall()
        )
    for scope, rate in CONSENT_RATES.items():
        assert shares[scope] == pytest.approx(rate, abs=0.06)
    assert 0.0 < shares["marketing"] < 1.0  # most, not all
    # consent has a generator of its own: the population's other draws are what they were
    again = simulate_population(400, seed=5, days=3)
    assert (again.consent["granted"] == pop.consent["granted"]).all()


def test_consent_routes(
    database_url: str, db: psycopg.Connection[tuple[object, ...]], vehicle_prefix: str
) -> None:
    from fastapi.testclient import TestClient

    from cloud.access.keys import create_key
    from cloud.api.app import create_app
    from cloud.privacy.audit import personal_subject

    customer = _customer(db, vehicle_prefix)
    admin = {"Authorization": f"Bearer {create_key(db, name='dpo', scopes=['privacy:admin']).key}"}
    marketing = {"Authorization": f"Bearer {create_key(db, name='mk', scopes=['marketing:write']).key}"}
    path = f"/v1/privacy/customers/{customer}/consent"
    with TestClient(create_app(database_url)) as api:
        empty = api.get(path, headers=admin)
        assert empty.status_code == 200
        assert empty.json() == {
            "customer_id": customer,
            "current": dict.fromkeys(consent.SCOPES, False),
            "history": [],
        }
        made = api.post(path, json={"scope": "rd", "granted": True, "source": "import"}, headers=admin)
        assert made.status_code == 201, made.text
        # marketing records what it collected in the app or at a dealer, nothing else, and reads nothing here
        mine = f"/v1/customers/{customer}/consent"
        ok = api.post(mine, json={"scope": "marketing", "granted": True, "source": "app"}, headers=marketing)
        assert ok.status_code == 201, ok.text
        assert (
            api.post(
                mine, json={"scope": "marketing", "granted": True, "source": "import"}, headers=marketing
            ).status_code
            == 422
        )
        assert (
            api.post(
                path, json={"scope": "rd", "granted": True, "source": "app"}, headers=marketing
            ).status_code
            == 403
        )
        assert api.get(path, headers=marketing).status_code == 403
        bad = api.post(path, json={"scope": "ads", "granted": True, "source": "app"}, headers=admin)
        assert bad.status_code == 422
        car = api.post(path, json={"scope": "rd", "granted": True, "source": "car"}, headers=admin)
        assert car.status_code == 422
        naive = api.post(
            path,
            json={"scope": "rd", "granted": True, "source": "app", "at": "2026-01-01T00:00:00"},
            headers=admin,
        )
        assert naive.status_code == 422
        unknown = api.get(f"/v1/privacy/customers/{vehicle_prefix}nobody/consent", headers=admin)
        assert unknown.status_code == 404
        after = api.get(path, headers=admin).json()
        assert after["current"] == {
            "marketing": True, "profiling": False, "location": False, "rd": True, "dealer_sharing": False,
        }  # fmt: skip
        assert [(e["scope"], e["source"]) for e in after["history"]] == [
            ("rd", "import"),
            ("marketing", "app"),
        ]
    audited = db.execute(
        "SELECT action, outcome FROM audit_log WHERE subject = %s ORDER BY id",
        (personal_subject("customer", customer),),
    ).fetchall()
    assert audited == [
        ("privacy.consent.read", "ok"),
        ("privacy.consent.record", "ok"),
        ("privacy.consent.record", "ok"),
        ("privacy.consent.read", "ok"),
    ]


def test_the_migration_backfills_what_the_trigger_would_have_recorded(fresh_database: str) -> None:
    from cloud.db.migrate import shipped_migrations

    sql_text = next(m.sql for m in shipped_migrations() if m.version == "0014")
    start = sql_text.index(
        "INSERT INTO consent_events", sql_text.index("-- consent the cars reported before")
    )
    backfill = sql_text[start : sql_text.index(";", start)]
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        customer = _customer(conn, "bf", "bf-car1", "bf-car2")
        reports = [
            ("bf-car1", 0, (True, False, True)),
            ("bf-car1", 1, (True, False, True)),
            ("bf-car1", 2, (True, True, False)),
            ("bf-car2", 1, (False, False, False)),
            ("bf-car2", 3, (False, False, False)),
        ]
        for seq, (vehicle_id, hours, (telemetry, location, profiling)) in enumerate(reports, start=1):
            message = _status(
                vehicle_id,
                seq,
                T0 + timedelta(hours=hours),
                telemetry=telemetry,
                location=location,
                profiling=profiling,
            )
            store_batch(conn, [message])
        query = "SELECT scope, granted, at, vehicle_id FROM consent_events ORDER BY at, vehicle_id, scope"
        by_trigger = conn.execute(query).fetchall()
        assert len(by_trigger) == 3 + 2 + 3  # car1: first report, then location and profiling; car2: first
        conn.execute("DELETE FROM consent_events")
        conn.execute(backfill.encode())
        assert conn.execute(query).fetchall() == by_trigger
        assert consent.current(conn, customer)["location"] is True
