"""The MQTT uplink on private Mosquitto instances: mutual TLS with per-vehicle certificates, and a broker that
goes away mid-stream (reconnect with backoff, replay in order, nothing lost)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.outbox import Outbox
from edge_agent.protocol import BrokerAddress, DrivingEvent, EventKind, EventsV1, decode
from edge_agent.uplink import MqttUplink
from tests.helpers import MOSQUITTO, wait_until
from tests.helpers import PrivateBroker as Broker

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed")


def _event(i: int) -> EventsV1:
    t = datetime(2026, 11, 2, tzinfo=UTC) + timedelta(seconds=i)
    return EventsV1(events=[DrivingEvent(kind=EventKind.HARSH_BRAKE, trip_id="T1", start=t, end=t, peak=-4.0,
                                         peak_unit="m/s^2")])  # fmt: skip


class Collector:
    """A persistent-session subscriber that keeps every message it receives, in order."""

    def __init__(self, port: int, tls: dict[str, str] | None = None) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="collector",
                                  clean_session=False, protocol=mqtt.MQTTv311)  # fmt: skip
        if tls:
            self.client.tls_set(ca_certs=tls["ca"], certfile=tls["cert"], keyfile=tls["key"],
                                cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
        self.client.on_connect = lambda c, *a: c.subscribe("ds/v1/+/+", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def seqs(self, kind: str = "events") -> list[int]:
        return [decode(t, p).seq for t, p in list(self.received) if t.endswith("/" + kind)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_broker_restart_mid_stream_loses_nothing_and_keeps_order(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    collector = Collector(broker.port)
    outbox = Outbox(tmp_path / "car.db", "car1")
    uplink = MqttUplink(outbox, BrokerAddress("127.0.0.1", broker.port), inflight=8)
    try:
        uplink.start()
        sent = [outbox.enqueue(_event(i)) for i in range(50)]
        uplink.notify()
        assert uplink.flush(20)
        broker.stop()  # the car drives through a tunnel
        sent += [outbox.enqueue(_event(i)) for i in range(50, 120)]
        uplink.notify()
        time.sleep(1.0)
        assert outbox.depth() >= 70  # nothing is deleted without a PUBACK
        broker.start()
        assert uplink.flush(60)  # reconnected with backoff and replayed from the outbox
        assert wait_until(lambda: set(collector.seqs()) >= set(sent), timeout=30)
        seqs = collector.seqs()
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == sorted(first_seen) == sent  # in order; a redelivered duplicate is allowed
    finally:
        uplink.stop(graceful=False)
        collector.close()
        broker.stop()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[Path]:
    """A test CA, a server certificate for 127.0.0.1 and client certificates for a car and the collector."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path / "pki"
    d.mkdir()
    ca = [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
    ]
    _openssl(*ca, "-subj", "/CN=drivesight test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, extra in (("server", ["-extfile", "san.ext"]), ("VIN0001", []), ("collector", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "1", *extra, cwd=d)  # fmt: skip
    yield d


def test_mutual_tls_with_a_per_vehicle_certificate(tmp_path: Path, pki: Path) -> None:
    tls = (
        f"cafile {pki}/ca.crt\ncertfile {pki}/server.crt\nkeyfile {pki}/server.key\n"
        "require_certificate true\nuse_identity_as_username true\nallow_anonymous false"
    )
    broker = Broker(tmp_path, extra=tls)
    broker.start()
    collector = Collector(
        broker.port, {"ca": f"{pki}/ca.crt", "cert": f"{pki}/collector.crt", "key": f"{pki}/collector.key"}
    )
    address = BrokerAddress("127.0.0.1", broker.port, tls=True)
    outbox = Outbox(tmp_path / "car.db", "VIN0001")
    uplink = MqttUplink(outbox, address, ca_file=f"{pki}/ca.crt", cert_file=f"{pki}/VIN0001.crt",
                        key_file=f"{pki}/VIN0001.key")  # fmt: skip
    stranger = MqttUplink(
        Outbox(tmp_path / "x.db", "VIN0002"), address, ca_file=f"{pki}/ca.crt"
    )  # no certificate
    try:
        uplink.start()
        seq = outbox.enqueue(_event(1))
        uplink.notify()
        assert uplink.flush(20)
        assert wait_until(lambda: seq in collector.seqs(), timeout=10)
        stranger.start()
        assert not stranger.wait_connected(3)  # the broker refuses a car without a certificate
    finally:
        uplink.stop(graceful=False)
        stranger.stop(graceful=False)
        collector.close()
        broker.stop()
