"""Simulator -> edge agent -> MQTT -> ingest -> PostgreSQL -> HTTP API, on the real broker and database.

Every trip and every harsh event the simulator produced must come out of the API exactly once, and a
second delivery of every message (at-least-once on the wire) must change nothing.
"""

from __future__ import annotations

import threading
from datetime import date, datetime

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from cloud.access.keys import create_key
from cloud.api.app import create_app
from cloud.ingest.worker import IngestWorker
from edge_agent.agent import TelemetrySettings
from edge_agent.protocol import HARSH_KINDS, BrokerAddress
from simulators.fleet import build_fleet, drive_fleet, simulate_fleet
from simulators.vehicle import SimulatedTrip
from tests.helpers import count, wait_until


class _Recorder:
    """Keeps a copy of every uplink payload of the test's vehicles, to deliver them all a second time."""

    def __init__(self, broker: BrokerAddress, prefix: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe("ds/v1/+/+", qos=1)
        assert self._subscribed.wait(10)
        self.prefix = prefix

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.split("/")[2].startswith(self.prefix):
            with self._lock:
                self.messages.append((msg.topic, bytes(msg.payload)))

    def replay(self) -> int:
        with self._lock:
            messages = list(self.messages)
        for topic, payload in messages:
            self.client.publish(topic, payload, qos=1).wait_for_publish(10)
        return len(messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("seed", [20261102])
def test_every_trip_and_event_arrives_exactly_once(
    seed: int, database_url: str, db: psycopg.Connection, broker: BrokerAddress, ingest_group: str | None,
    vehicle_prefix: str, tmp_path,
) -> None:  # fmt: skip
    specs = build_fleet(8, seed, prefix=vehicle_prefix)  # two of each persona
    trips = simulate_fleet(specs, date(2026, 11, 2), 1, seed)
    worker = IngestWorker(
        database_url, broker, group=ingest_group, client_id=f"e2e-{vehicle_prefix}", persistent=False
    )
    worker.start()
    recorder = _Recorder(broker, vehicle_prefix)
    try:
        # every car waits for the ingest's receipts: what it forgets is stored
        fleet = drive_fleet(specs, trips, broker, tmp_path, telemetry=TelemetrySettings(), confirmed=True)
        assert fleet.unflushed == []
        ledger = "SELECT count(*) FROM ingested_messages WHERE vehicle_id LIKE %s"
        like = vehicle_prefix + "%"
        assert wait_until(lambda: count(db, ledger, like) == fleet.messages_acknowledged, timeout=60)
        stored_before = {
            table: count(db, f"SELECT count(*) FROM {table} WHERE vehicle_id LIKE %s", like)
            for table in ("trips", "driving_events", "telemetry", "ingested_messages")
        }
        # deliver everything a second time: storage must not change
        duplicates_before = worker.metrics.duplicates
        replayed = recorder.replay()
        assert replayed >= fleet.messages_acknowledged
        assert wait_until(lambda: worker.metrics.duplicates - duplicates_before >= replayed, timeout=60)
        for table, n in stored_before.items():
            assert count(db, f"SELECT count(*) FROM {table} WHERE vehicle_id LIKE %s", like) == n, table
    finally:
        recorder.close()
        worker.stop()

    key = create_key(db, name="end to end", scopes=["fleet:read"]).key
    with TestClient(create_app(database_url), headers={"Authorization": f"Bearer {key}"}) as api:
        for spec in specs:
            _check_vehicle(api, spec.vehicle_id, trips[spec.vehicle_id])
    for spec in specs:
        _check_fault_codes(db, spec.vehicle_id, trips[spec.vehicle_id])
    assert sum(len(t.events) for ts in trips.values() for t in ts) > 20  # the fleet really had events to find


HARSH = {k.value for k in HARSH_KINDS}


def _check_vehicle(api: TestClient, vehicle_id: str, truth: list[SimulatedTrip]) -> None:
    """The API returns each simulated trip once, with its harsh events, feature usage and fault codes."""
    response = api.get(f"/v1/vehicles/{vehicle_id}/trips", params={"limit": 1000})
    assert response.status_code == 200
    assert response.json()["next_cursor"] is None
    stored = sorted(response.json()["items"], key=lambda t: t["started_at"])
    assert len(stored) == len(truth), vehicle_id
    for got, want in zip(stored, truth, strict=True):
        assert got["trip_id"] == f"T{round(want.start * 1000)}"
        assert got["distance_km"] == pytest.approx(want.distance_km, rel=0.005)
        assert got["idle_s"] == pytest.approx(want.idle_s, abs=0.1 * 30 + 0.02 * want.idle_s)
        assert got["feature_usage"].keys() == want.features.keys()
        for name, (activations, _seconds) in want.features.items():
            assert got["feature_usage"][name]["activations"] == activations
        assert got["dtcs"] == [code for _t, code in want.dtcs]
        page = api.get(f"/v1/vehicles/{vehicle_id}/trips/{got['trip_id']}/events", params={"limit": 1000})
        assert page.json()["next_cursor"] is None
        events = page.json()["items"]
        harsh = sorted((e for e in events if e["kind"] in HARSH), key=lambda e: e["started_at"])
        assert len(harsh) == sum(got["event_counts"].get(k, 0) for k in HARSH)
        assert len(harsh) == len(want.events)  # the simulator's ground truth is its harsh events
        for e_got, e_want in zip(harsh, want.events, strict=True):
            assert e_got["kind"] == e_want.kind.value
            assert abs(datetime.fromisoformat(e_got["started_at"]).timestamp() - e_want.start) <= 0.3
            assert abs(datetime.fromisoformat(e_got["ended_at"]).timestamp() - e_want.end) <= 0.3
            assert e_got["duration_s"] == pytest.approx(e_want.end - e_want.start, abs=0.6)


def _check_fault_codes(db: psycopg.Connection, vehicle_id: str, truth: list[SimulatedTrip]) -> None:
    """Each fault code is reported once per vehicle, when first seen."""
    first_seen: dict[str, float] = {}
    for trip in truth:
        for t, code in trip.dtcs:
            first_seen.setdefault(code, t)
    rows = db.execute(
        "SELECT code, first_seen FROM dtc_reports WHERE vehicle_id = %s ORDER BY first_seen", (vehicle_id,)
    ).fetchall()
    assert [(code, round(ts.timestamp(), 3)) for code, ts in rows] == [
        (c, round(t, 3)) for c, t in sorted(first_seen.items(), key=lambda kv: kv[1])
    ]
