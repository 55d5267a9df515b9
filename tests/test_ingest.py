"""Ingest: exactly-once storage by (vehicle_id, seq) and dead letters, on the real database and broker."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from cloud.ingest.store import store_batch
from cloud.ingest.worker import IngestWorker
from edge_agent.protocol import (
    BrokerAddress,
    DrivingEvent,
    EventKind,
    EventsV1,
    Message,
    ReceiptV1,
    TripSummaryV1,
    decode,
    downlink_topic,
    encode,
    uplink_topic,
)
from tests.helpers import count, wait_until

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def _trip(trip_id: str) -> TripSummaryV1:
    return TripSummaryV1(
        trip_id=trip_id, started_at=T0, ended_at=T0 + timedelta(minutes=20), distance_km=12.5,
        duration_s=1200,
        moving_s=1100, idle_s=100, max_speed_kmh=80, avg_speed_kmh=37.5, night_share=0,
        event_counts={EventKind.HARSH_BRAKE: 1}, samples=12000,
    )  # fmt: skip


def _events(trip_id: str, n: int) -> EventsV1:
    return EventsV1(
        events=[
            DrivingEvent(
                kind=EventKind.HARSH_BRAKE,
                trip_id=trip_id,
                start=T0 + timedelta(seconds=i),
                end=T0 + timedelta(seconds=i + 1),
                peak=5.0,
                peak_unit="m/s^2",
            )
            for i in range(n)
        ]
    )


def _message(vehicle_id: str, seq: int, body: TripSummaryV1 | EventsV1) -> Message:
    return decode(uplink_topic(vehicle_id, body.KIND), encode(vehicle_id, seq, body))


def test_redelivered_batch_is_stored_once(db: psycopg.Connection, vehicle_prefix: str) -> None:
    v = vehicle_prefix + "a"
    batch = [_message(v, 1, _trip("T1")), _message(v, 2, _events("T1", 3)), _message(v, 3, _trip("T2"))]
    first = store_batch(db, batch)
    again = store_batch(db, batch)
    mixed = store_batch(db, [batch[0], batch[0], _message(v, 4, _events("T2", 2))])
    assert (first.stored, first.duplicates) == (3, 0)
    assert (again.stored, again.duplicates) == (0, 3)
    assert (mixed.stored, mixed.duplicates) == (1, 2)
    assert count(db, "SELECT count(*) FROM trips WHERE vehicle_id = %s", v) == 2
    assert count(db, "SELECT count(*) FROM driving_events WHERE vehicle_id = %s", v) == 5
    assert count(db, "SELECT count(*) FROM ingested_messages WHERE vehicle_id = %s", v) == 4


def test_status_keeps_the_newest_by_seq(db: psycopg.Connection, vehicle_prefix: str) -> None:
    from edge_agent.protocol import StatusV1

    v = vehicle_prefix + "s"
    online = decode(uplink_topic(v, "status"), encode(v, 5, StatusV1(state="online", agent_version="1")))
    offline = decode(uplink_topic(v, "status"), encode(v, 4, StatusV1(state="offline", agent_version="1")))
    store_batch(db, [online])
    store_batch(db, [offline])  # older seq arriving late must not overwrite
    row = db.execute("SELECT status, status_seq FROM vehicles WHERE vehicle_id = %s", (v,)).fetchone()
    assert row == ("online", 5)


def test_last_will_ends_only_its_own_boot_session(db: psycopg.Connection, vehicle_prefix: str) -> None:
    from edge_agent.protocol import StatusV1

    v = vehicle_prefix + "w"

    def status(seq: int, state: str, boot: str, will: bool = False) -> Message:
        body = StatusV1(state=state, agent_version="1", boot_id=boot, last_will=will)  # type: ignore[arg-type]
        return decode(uplink_topic(v, "status"), encode(v, seq, body))

    def current() -> tuple[object, ...] | None:
        return db.execute("SELECT status, boot_id FROM vehicles WHERE vehicle_id = %s", (v,)).fetchone()

    store_batch(db, [status(10, "online", "boot1")])
    store_batch(
        db, [status(9, "offline", "boot1", will=True)]
    )  # reserved at connect: a lower seq, still applies
    assert current() == ("offline", "boot1")
    store_batch(db, [status(20, "online", "boot2")])
    store_batch(db, [status(19, "offline", "boot1", will=True)])  # a late will of the previous boot: ignored
    assert current() == ("online", "boot2")
    store_batch(db, [status(21, "offline", "boot2", will=True), status(22, "online", "boot2")])
    assert current() == ("offline", "boot2")  # in one batch the will still ends its session


def test_invalid_payloads_land_in_dead_letters(
    db: psycopg.Connection, ingest_worker: IngestWorker, mqtt_client: mqtt.Client, vehicle_prefix: str
) -> None:
    v = vehicle_prefix + "bad"
    good = encode(v, 1, _trip("T1"))
    cases = {
        "malformed": (uplink_topic(v, "trip"), b"{not json"),
        "schema_mismatch": (uplink_topic(v, "events"), good),
        "vehicle_mismatch": (uplink_topic(vehicle_prefix + "other", "trip"), good),
        "invalid": (
            uplink_topic(v, "trip"),
            json.dumps(
                {
                    "schema": "trip.v1",
                    "vehicle_id": v,
                    "seq": 2,
                    "sent_at": "2026-01-01T00:00:00Z",
                    "body": {},
                }
            ).encode(),
        ),
        "too_large": (uplink_topic(v, "trip"), b" " * (200 * 1024)),
        "bad_topic": (f"ds/v1/{v}/bogus", good),
    }
    for topic, payload in cases.values():
        mqtt_client.publish(topic, payload, qos=1).wait_for_publish(5)
    mqtt_client.publish(uplink_topic(v, "trip"), good, qos=1).wait_for_publish(5)

    def dead() -> dict[str, tuple[str, bytes, int, bytes]]:
        rows = db.execute(
            "SELECT reason, detail, payload, size_bytes, sha256 FROM dead_letters WHERE topic LIKE %s",
            (f"ds/v1/{vehicle_prefix}%",),
        ).fetchall()
        return {r[0]: (r[1], bytes(r[2]), r[3], bytes(r[4])) for r in rows}

    assert wait_until(lambda: len(dead()) == len(cases))
    found = dead()
    assert set(found) == set(cases)
    for reason, (_topic, payload) in cases.items():
        # the payload is kept up to 64 KiB, with its full size and digest: nothing vanishes unaccounted
        _detail, kept, size, digest = found[reason]
        assert kept == payload[: 64 * 1024] and size == len(payload), reason
        assert digest == hashlib.sha256(payload).digest(), reason
    assert len(found["too_large"][1]) == 64 * 1024 < found["too_large"][2]
    assert "body.trip_id: Field required" in found["invalid"][0]
    assert wait_until(lambda: count(db, "SELECT count(*) FROM trips WHERE vehicle_id = %s", v) == 1)
    assert ingest_worker.metrics.dead_letters == len(cases)


def test_each_car_gets_receipts_for_what_was_stored_found_stored_or_dead_lettered(
    db: psycopg.Connection,
    broker: BrokerAddress,
    ingest_worker: IngestWorker,
    mqtt_client: mqtt.Client,
    vehicle_prefix: str,
) -> None:
    """The car forgets a message only on its receipt: every message whose envelope names its seq gets one
    after the commit (stored, a duplicate, or refused by the contract and kept as a dead letter), and only
    its own car gets it."""
    v, other = vehicle_prefix + "rcpt", vehicle_prefix + "rcpt2"
    receipts: dict[str, set[int]] = {v: set(), other: set()}
    car = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        message = decode(msg.topic, bytes(msg.payload))
        assert isinstance(message.body, ReceiptV1)
        for first, last in message.body.seqs:
            receipts[message.vehicle_id].update(range(first, last + 1))

    car.on_message = on_message
    car.on_subscribe = lambda *_args: subscribed.set()
    car.connect(broker.host, broker.port)
    car.loop_start()
    try:
        car.subscribe([(downlink_topic(v, "receipt"), 0), (downlink_topic(other, "receipt"), 0)])
        assert subscribed.wait(10)
        invalid = {
            "schema": "trip.v1",
            "vehicle_id": v,
            "seq": 7,
            "sent_at": "2026-01-01T00:00:00Z",
            "body": {},
        }
        for topic, payload in [
            (uplink_topic(v, "trip"), encode(v, 1, _trip("R1"))),
            (uplink_topic(v, "events"), encode(v, 2, _events("R1", 2))),
            (uplink_topic(v, "events"), encode(v, 2, _events("R1", 2))),  # a redelivery
            (uplink_topic(v, "trip"), encode(v, 3, _trip("R3"))),
            (uplink_topic(v, "trip"), json.dumps(invalid).encode()),  # a dead letter that names its seq
            (uplink_topic(v, "trip"), b"{not json"),  # names no seq: no receipt can name it
            (uplink_topic(other, "trip"), encode(other, 9, _trip("R9"))),
        ]:
            mqtt_client.publish(topic, payload, qos=1).wait_for_publish(5)
        assert wait_until(lambda: receipts[v] >= {1, 2, 3, 7} and receipts[other] == {9}, timeout=20), (
            receipts
        )
        time.sleep(0.5)
        assert receipts == {v: {1, 2, 3, 7}, other: {9}}  # each car its own, nothing it did not send
        assert ingest_worker.metrics.receipts >= 2
    finally:
        car.disconnect()
        car.loop_stop()


def test_metrics_and_health_endpoints(
    ingest_worker: IngestWorker, mqtt_client: mqtt.Client, vehicle_prefix: str
) -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from cloud.embedded import free_port
    from cloud.ingest.metrics_server import serve_metrics

    v = vehicle_prefix + "m"
    mqtt_client.publish(uplink_topic(v, "trip"), encode(v, 1, _trip("T1")), qos=1).wait_for_publish(5)
    mqtt_client.publish(uplink_topic(v, "trip"), b"junk", qos=1).wait_for_publish(5)
    assert wait_until(lambda: ingest_worker.metrics.stored >= 1 and ingest_worker.metrics.dead_letters >= 1)
    port = free_port()
    server = serve_metrics(ingest_worker, host="127.0.0.1", port=port)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
    finally:
        server.shutdown()
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert values[("drivesight_ingest_stored_total", ())] >= 1
    assert values[("drivesight_ingest_dead_letters_total", (("reason", "malformed"),))] >= 1
    assert values[("drivesight_ingest_received_total", ())] >= 2
    assert values[("drivesight_ingest_healthy", ())] == 1
    assert ("drivesight_ingest_queue_depth", ()) in values and ("drivesight_ingest_lag_s", ()) in values
    assert health.status_code == 200 and health.text.strip() == "ok"
