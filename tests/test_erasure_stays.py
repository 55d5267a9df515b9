"""An erased person stays erased: an old CRM file imported again and a car that keeps sending after its owner
was erased bring nothing of them back (the ledger's keyed hashes are matched at import and at ingest), while
the other person's data flows and a car sold to a new owner is registered and stored again."""

from __future__ import annotations

import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud.analytics.imports import ImportError_, import_file
from cloud.ingest.worker import IngestWorker
from cloud.privacy import erasure
from edge_agent.protocol import BrokerAddress, uplink_topic
from tests.helpers import count, wait_until
from tests.privacy_world import Person, _messages, build_world
from tests.test_erasure import holding

KEY = b"test-ledger-key-0123456789abcdef"
#: the order the world's files were imported in (references first)
KINDS = ("dealers", "customers", "consent", "vehicles", "service_visits", "complaints", "accounts", "items")
KINDS += ("interactions",)


def _erase(url: str, person: Person) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        request = erasure.request_erasure(conn, person.customer_id, key_id=1)
        erasure.confirm_erasure(conn, request.request_id, request.token, key_id=2, ledger_key=KEY)


def _items(vehicle_id: str) -> list[tuple[str, bytes]]:
    """What the car sends, as (topic, payload), plus one payload the contract refuses on its topic."""
    items = [(str(m.topic), m.payload) for m in _messages(vehicle_id)]
    return [*items, (uplink_topic(vehicle_id, "trip"), b'{"not": "a trip"}')]


@pytest.fixture
def erased_world(fresh_database: str, tmp_path: Path) -> tuple[str, Person, Person]:
    """The privacy world with its first person erased (its files stay in ``tmp_path``)."""
    a, b = build_world(fresh_database, tmp_path)
    _erase(fresh_database, a)
    return fresh_database, a, b


def test_an_old_crm_file_imported_again_brings_nobody_back(
    erased_world: tuple[str, Person, Person], tmp_path: Path
) -> None:
    url, a, b = erased_world
    with psycopg.connect(url, autocommit=True) as conn:
        others_before = holding(conn, b)
        # without the ledger's key the import cannot tell who was erased: refused whole, nothing written
        with pytest.raises(ImportError_, match="erasure ledger holds 1 entries"):
            import_file(conn, "customers", tmp_path / "customers.csv")
        results = {kind: import_file(conn, kind, tmp_path / f"{kind}.csv", ledger_key=KEY) for kind in KINDS}
        assert holding(conn, a) == {}
        assert holding(conn, b) == others_before
        # each file's line of the erased person is reported by number (line 2: the first after the header)
        assert results["customers"].erased_lines == (2,) and results["customers"].imported == 1
        assert results["vehicles"].erased_lines == (2, 3) and results["vehicles"].imported == 1
        assert results["service_visits"].erased_lines == (2, 3)
        for kind in ("consent", "complaints", "accounts", "interactions"):
            assert results[kind].erased_lines == (2,), kind
        assert results["dealers"].erased_lines == () and results["items"].erased_lines == ()


def test_a_car_that_keeps_sending_is_not_stored_until_it_has_a_new_owner(
    erased_world: tuple[str, Person, Person],
    tmp_path: Path,
    broker: BrokerAddress,
    ingest_group: str | None,
) -> None:
    url, a, b = erased_world
    worker = IngestWorker(
        url,
        broker,
        group=ingest_group,
        client_id=f"erased-{uuid.uuid4().hex[:8]}",
        persistent=False,
        ledger_key=KEY,
    )
    worker.start()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        gone, other = _items(a.vehicle_ids[0]), _items(b.vehicle_ids[0])
        for topic, payload in [*gone, *other]:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        m = worker.metrics

        def handled() -> int:  # received is counted before a batch is written: wait until it was dealt with
            return m.stored + m.duplicates + m.dead_letters + m.erased

        assert wait_until(lambda: handled() >= len(gone) + len(other), timeout=30)
        # every message of the erased car acknowledged, none stored, not even as a dead letter
        assert worker.metrics.erased == len(gone)
        with psycopg.connect(url, autocommit=True) as conn:
            assert holding(conn, a) == {}
            dead = "SELECT count(*) FROM dead_letters WHERE topic LIKE %s"
            assert count(conn, dead, f"%{b.vehicle_ids[0]}%") == 2  # the world's one and the new one

            # the car is sold to the other person: registered again by an import, it is stored again
            sold = tmp_path / "sold.csv"
            sold.write_text(
                "vehicle_id,customer_id,dealer_id,model,model_year,powertrain,purchased_at,price\n"
                f"{a.vehicle_ids[0]},{b.customer_id},D1,DS-SUV,2024,ice,2026-11-20,150000\n"
            )
            assert import_file(conn, "vehicles", sold, ledger_key=KEY).imported == 1
            for topic, payload in gone:
                client.publish(topic, payload, qos=1).wait_for_publish(10)
            trips = "SELECT count(*) FROM trips WHERE vehicle_id = %s"
            assert wait_until(lambda: count(conn, trips, a.vehicle_ids[0]) == 1, timeout=30)
            assert worker.metrics.erased == len(gone)  # nothing more dropped
            assert holding(conn, a).keys() >= {"vehicles", "trips"}  # the car's id, now the new owner's
            assert count(conn, "SELECT count(*) FROM customers WHERE customer_id = %s", a.customer_id) == 0
    finally:
        client.disconnect()
        client.loop_stop()
        worker.stop()
