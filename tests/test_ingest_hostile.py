"""Issue 11's hostile payloads against a real ingest worker, and the failure modes behind them.

Each hostile payload gets a dead-letter row with its reason, the good messages interleaved with them are
stored exactly once, the worker stays healthy, and no table holds a value the contract would refuse.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg

from cloud.ingest.store import store_batch
from cloud.ingest.worker import IngestWorker
from cloud.ingest.writer import BatchWriter
from edge_agent.protocol import EventKind, TripSummaryV1, decode, encode, uplink_topic
from tests.helpers import count, wait_until
from tests.hostile import good_payloads, hostile_payloads, implausible_values


def test_hostile_payloads_are_dead_lettered_and_the_good_ones_stored_once(
    db: psycopg.Connection, ingest_worker: IngestWorker, mqtt_client: mqtt.Client, vehicle_prefix: str
) -> None:
    v = vehicle_prefix + "h"
    now = datetime.now(UTC)
    hostile = hostile_payloads(v, 1000, now)
    good = good_payloads(v, 1, now)
    interleaved = [p for pair in zip(good * 3, hostile, strict=False) for p in pair] + hostile[
        len(good) * 3 :
    ]
    for p in [*interleaved, *good]:  # every good message twice: redelivery is not a conflict
        mqtt_client.publish(p.topic, p.payload, qos=1).wait_for_publish(10)
    bad = [p for p in hostile if p.reason]

    def dead() -> list[tuple[str, str]]:
        return [(str(r[0]), str(r[1])) for r in db.execute(
            "SELECT reason, detail FROM dead_letters WHERE topic LIKE %s ORDER BY id", (f"ds/v1/{v}/%",)
        ).fetchall()]  # fmt: skip

    expected_ledger = len(good) + len(hostile) - len(bad)
    assert wait_until(
        lambda: (
            len(dead()) >= len(bad)
            and count(db, "SELECT count(*) FROM ingested_messages WHERE vehicle_id = %s", v)
            == expected_ledger
        )
    ), dead()
    time.sleep(0.5)  # anything still to arrive would show up now
    reasons = sorted(r for r, _ in dead())
    assert reasons == sorted(p.reason for p in bad if p.reason), dead()
    assert ingest_worker.health() == (True, "ok")
    assert count(db, "SELECT count(*) FROM ingested_messages WHERE vehicle_id = %s", v) == expected_ledger
    assert count(db, "SELECT count(*) FROM trips WHERE vehicle_id = %s", v) == 1
    assert count(db, "SELECT count(*) FROM driving_events WHERE vehicle_id = %s", v) == 1
    assert count(db, "SELECT count(*) FROM dtc_reports WHERE vehicle_id = %s", v) == 1
    assert count(db, "SELECT count(*) FROM push_feedback WHERE vehicle_id = %s", v) == 1
    # the good telemetry's 3 rows, plus the two messages whose implausible samples were dropped (3 rows)
    assert count(db, "SELECT count(*) FROM telemetry WHERE vehicle_id = %s", v) == 6
    assert count(db, "SELECT count(*) FROM telemetry WHERE vehicle_id = %s AND speed_kmh = 50", v) == 1
    assert ingest_worker.metrics.dropped_samples.get("Vehicle.Speed", 0) >= 1
    assert ingest_worker.metrics.dropped_samples.get("Vehicle.CurrentLocation.Latitude", 0) >= 1
    dropped = db.execute(
        "SELECT dropped FROM ingested_messages WHERE vehicle_id = %s AND dropped IS NOT NULL ORDER BY seq",
        (v,),
    ).fetchall()
    assert [r[0] for r in dropped] == [{"Vehicle.Speed": 1}, {"Vehicle.CurrentLocation.Latitude": 1}]
    assert implausible_values(db, v) == []


def _trip(vehicle: str, seq: int, trip_id: str, distance_km: float) -> object:
    t = datetime.now(UTC) - timedelta(hours=3)
    body = TripSummaryV1(
        trip_id=trip_id, started_at=t, ended_at=t + timedelta(minutes=20), distance_km=distance_km,
        duration_s=1200, moving_s=1100, idle_s=100, max_speed_kmh=80, avg_speed_kmh=37.5, night_share=0,
        event_counts={EventKind.HARSH_BRAKE: 1}, samples=12000,
    )  # fmt: skip
    return decode(uplink_topic(vehicle, "trip"), encode(vehicle, seq, body))


def test_a_conflicting_resend_keeps_the_first_version_and_is_dead_lettered(
    db: psycopg.Connection, vehicle_prefix: str
) -> None:
    v = vehicle_prefix + "c"
    first = store_batch(db, [_trip(v, 1, "T1", 10.0)])  # type: ignore[list-item]
    again = store_batch(db, [_trip(v, 1, "T1", 11.0)])  # type: ignore[list-item]  # other content, same key
    assert (first.stored, again.stored, again.dead_reasons) == (1, 0, {"conflicting_resend": 1})
    same = _trip(v, 2, "T2", 5.0)
    assert store_batch(db, [same, same]).duplicates == 1  # type: ignore[list-item]
    assert store_batch(db, [same]).duplicates == 1  # type: ignore[list-item]  # byte-identical: a redelivery
    in_one_batch = store_batch(db, [_trip(v, 3, "T3", 1.0), _trip(v, 3, "T3", 2.0)])  # type: ignore[list-item]
    assert (in_one_batch.stored, in_one_batch.dead_reasons) == (1, {"conflicting_resend": 1})
    assert db.execute(
        "SELECT distance_km FROM trips WHERE vehicle_id = %s AND trip_id = 'T3'", (v,)
    ).fetchone() == (1.0,)
    details = db.execute(
        "SELECT detail FROM dead_letters WHERE reason = 'conflicting_resend' AND topic = %s",
        (f"ds/v1/{v}/trip",),
    ).fetchall()
    assert len(details) == 2 and f"({v}, 1) is stored with other content" in details[0][0]


def test_a_trip_sent_again_under_a_new_seq_is_a_correction_with_history(
    db: psycopg.Connection, vehicle_prefix: str
) -> None:
    v = vehicle_prefix + "k"
    store_batch(db, [_trip(v, 5, "T1", 10.0)])  # type: ignore[list-item]
    store_batch(db, [_trip(v, 7, "T1", 12.0)])  # type: ignore[list-item]  # a correction: last write wins
    store_batch(db, [_trip(v, 6, "T1", 11.0)])  # type: ignore[list-item]  # late, older: history only

    def current() -> tuple[object, ...] | None:
        return db.execute("SELECT seq, distance_km FROM trips WHERE vehicle_id = %s", (v,)).fetchone()

    assert current() == (7, 12.0)
    history = db.execute(
        "SELECT seq, (version->>'distance_km')::float8 FROM trip_versions WHERE vehicle_id = %s ORDER BY seq",
        (v,),
    ).fetchall()
    assert history == [(5, 10.0), (6, 11.0)]
    # the ledger and the trips agree: three messages, one trip row whose seq is the newest of them
    assert count(db, "SELECT count(*) FROM ingested_messages WHERE vehicle_id = %s", v) == 3
    store_batch(db, [_trip(v, 9, "T1", 13.0), _trip(v, 8, "T1", 12.5)])  # type: ignore[list-item]
    assert current() == (9, 13.0)
    assert count(db, "SELECT count(*) FROM trip_versions WHERE vehicle_id = %s", v) == 4


def test_a_message_the_database_refuses_is_isolated_and_the_rest_stored(fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        # stands in for any refusal the contract cannot foresee (a constraint, a trigger, a full disk quota)
        conn.execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.trip_id LIKE 'POISON%' THEN RAISE EXCEPTION 'refused %', NEW.trip_id; END IF;"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON trips FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        )
        items = []
        for i in range(40):
            trip_id = "POISON" if i in (3, 29) else f"T{i}"
            m = _trip("car1", i + 1, f"{trip_id}-{i}", 1.0)
            items.append((str(m.topic), m.payload))  # type: ignore[attr-defined]
        items.append(("ds/v1/car1/trip", b"junk"))
        result, messages = BatchWriter().write(conn, items)
        assert len(messages) == 40
        assert (result.stored, result.dead_letters, result.isolations) == (38, 3, 1)
        assert result.dead_reasons == {"store_failed": 2, "malformed": 1}
        assert count(conn, "SELECT count(*) FROM trips") == 38
        refused = conn.execute(
            "SELECT detail FROM dead_letters WHERE reason = 'store_failed' ORDER BY id"
        ).fetchall()
        assert ["refused POISON-3" in refused[0][0], "refused POISON-29" in refused[1][0]] == [True, True]
        # the refused payloads are kept whole: after a fix, a replay stores them (see test_deadletters)
        assert count(conn, "SELECT count(*) FROM dead_letters WHERE size_bytes = length(payload)") == 3


def test_a_stalled_ingest_exits_non_zero_and_says_why(
    fresh_database: str, broker: object, mqtt_client: mqtt.Client, vehicle_prefix: str
) -> None:
    """The writer blocks on a locked table while messages wait: health turns bad, the command exits 1."""
    env = {
        **os.environ,
        "DRIVESIGHT_DATABASE_URL": fresh_database,
        "DRIVESIGHT_MQTT_URL": broker.url(),  # type: ignore[attr-defined]
        "DRIVESIGHT_INGEST_GROUP": "",
        "DRIVESIGHT_INGEST_CLIENT_ID": f"stall-{vehicle_prefix}",
        "DRIVESIGHT_INGEST_STALL_TIMEOUT_S": "2",
        "DRIVESIGHT_INGEST_BATCH_SIZE": "1",
        "DRIVESIGHT_INGEST_METRICS_PORT": "0",
    }
    with psycopg.connect(fresh_database) as locker:
        locker.execute("LOCK TABLE ingested_messages IN ACCESS EXCLUSIVE MODE")  # held until rollback
        process = subprocess.Popen(
            [sys.executable, "-m", "simulators.cli", "cloud", "ingest"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(3)  # subscribed by then
            v = vehicle_prefix + "s"
            for p in good_payloads(v, 1, datetime.now(UTC)):
                mqtt_client.publish(p.topic, p.payload, qos=1).wait_for_publish(10)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
            locker.rollback()
    assert process.stderr is not None
    err = process.stderr.read()
    assert code == 1, err
    assert "unhealthy, exiting to be restarted: no batch stored for" in err
