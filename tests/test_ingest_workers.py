"""Ingest workers under stress: a shared subscription splits the load; a killed worker loses nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud.ingest.worker import IngestWorker
from edge_agent.protocol import BrokerAddress, DrivingEvent, EventKind, EventsV1, encode, uplink_topic
from tests.helpers import MOSQUITTO, PrivateBroker, count, wait_until

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def _payloads(vehicles: list[str], per_vehicle: int) -> Iterator[tuple[str, bytes]]:
    for i in range(per_vehicle):
        for v in vehicles:
            t = T0 + timedelta(seconds=i)
            event = DrivingEvent(
                kind=EventKind.HARSH_BRAKE, trip_id="T1", start=t, end=t, peak=-4, peak_unit="m/s^2"
            )
            yield uplink_topic(v, "events"), encode(v, i + 1, EventsV1(events=[event]))


def _publish_all(client: mqtt.Client, payloads: Iterator[tuple[str, bytes]]) -> int:
    infos = [client.publish(topic, payload, qos=1) for topic, payload in payloads]
    for info in infos:
        info.wait_for_publish(30)
    return len(infos)


def test_two_workers_on_a_shared_subscription_split_the_load(
    database_url: str, db: psycopg.Connection, broker: BrokerAddress, ingest_group: str | None,
    vehicle_prefix: str, mqtt_client: mqtt.Client,
) -> None:  # fmt: skip
    if ingest_group is None:
        pytest.skip("this broker has no shared subscriptions (amqtt); mosquitto and EMQX have them")
    workers = [
        IngestWorker(
            database_url, broker, group=ingest_group, client_id=f"{ingest_group}-{i}", persistent=False
        )
        for i in range(2)
    ]
    for w in workers:
        w.start()
    try:
        vehicles = [f"{vehicle_prefix}{i}" for i in range(10)]
        sent = _publish_all(mqtt_client, _payloads(vehicles, 100))
        like = vehicle_prefix + "%"
        assert wait_until(
            lambda: (
                count(db, "SELECT count(*) FROM ingested_messages WHERE vehicle_id LIKE %s", like) == sent
            ),
            timeout=60,
        )
    finally:
        for w in workers:
            w.stop()
    received = [w.metrics.received for w in workers]
    assert sum(received) == sent  # each message went to one worker of the group
    assert min(received) > sent * 0.2  # and both did a real share
    assert (
        count(db, "SELECT count(*) FROM driving_events WHERE vehicle_id LIKE %s", vehicle_prefix + "%")
        == sent
    )


@pytest.fixture
def deploy_broker(tmp_path: Path) -> Iterator[BrokerAddress]:
    """A private mosquitto with deploy/'s queue limits (the system broker keeps the default 1000)."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    private = PrivateBroker(tmp_path, deploy_limits=True)
    private.start()
    try:
        yield BrokerAddress.parse(private.url)
    finally:
        private.stop()


def test_a_worker_killed_mid_stream_and_restarted_stores_everything_once(
    database_url: str, db: psycopg.Connection, deploy_broker: BrokerAddress, vehicle_prefix: str
) -> None:
    broker = deploy_broker
    mqtt_client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    mqtt_client.connect(broker.host, broker.port)
    mqtt_client.loop_start()
    group = f"crash-{uuid.uuid4().hex[:6]}"
    client_id = f"{group}-worker"  # the same id after the restart: the broker kept its session and queue
    cmd = [sys.executable, "-m", "tests.ingest_child", database_url, broker.url(), group, client_id]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert first.stdout is not None and first.stdout.readline().strip() == "subscribed"
    vehicles = [f"{vehicle_prefix}{i}" for i in range(5)]
    payloads = list(_payloads(vehicles, 400))
    half = len(payloads) // 2
    sent = _publish_all(mqtt_client, iter(payloads[:half]))
    for line in first.stdout:  # kill it part-way through, once it has stored something
        if int(line) > 0:
            break
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # the other half arrives while the worker is dead: the broker queues it for the persistent session
    sent += _publish_all(mqtt_client, iter(payloads[half:]))
    like = vehicle_prefix + "%"
    stored_at_kill = count(db, "SELECT count(*) FROM ingested_messages WHERE vehicle_id LIKE %s", like)
    assert 0 < stored_at_kill <= half < sent
    second = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        assert wait_until(
            lambda: (
                count(db, "SELECT count(*) FROM ingested_messages WHERE vehicle_id LIKE %s", like) == sent
            ),
            timeout=90,
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(10)
        mqtt_client.disconnect()
        mqtt_client.loop_stop()
    assert count(db, "SELECT count(*) FROM driving_events WHERE vehicle_id LIKE %s", like) == sent
