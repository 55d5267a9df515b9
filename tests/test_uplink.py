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

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import signals as vss
from edge_agent.agent import EdgeAgent, TelemetrySettings
from edge_agent.outbox import Outbox
from edge_agent.protocol import (
    BrokerAddress,
    DrivingEvent,
    EventKind,
    EventsV1,
    ReceiptV1,
    TelemetryV1,
    decode,
    downlink_topic,
    encode,
)
from edge_agent.signals import SignalBlock
from edge_agent.uplink import MqttUplink
from tests.helpers import MOSQUITTO, wait_until
from tests.helpers import PrivateBroker as Broker

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed")


def _event(i: int) -> EventsV1:
    t = datetime(2026, 11, 2, tzinfo=UTC) + timedelta(seconds=i)
    return EventsV1(events=[DrivingEvent(kind=EventKind.HARSH_BRAKE, trip_id="T1", start=t, end=t, peak=-4.0,
                                         peak_unit="m/s^2")])  # fmt: skip


class Collector:
    """A persistent-session subscriber that keeps every message it receives, in order; with ``receipts`` it
    confirms each one to its car as the ingest does after storing it."""

    def __init__(
        self,
        port: int,
        tls: dict[str, str] | None = None,
        client_id: str = "collector",
        receipts: bool = False,
    ) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.receipts = receipts
        self.subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False, protocol=mqtt.MQTTv311)  # fmt: skip
        if tls:
            self.client.tls_set(ca_certs=tls["ca"], certfile=tls["cert"], keyfile=tls["key"],
                                cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
        self.client.on_connect = lambda c, *a: c.subscribe("ds/v1/+/+", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self._received(c, m.topic, bytes(m.payload))
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # paho accepts a float
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _received(self, client: mqtt.Client, topic: str, payload: bytes) -> None:
        self.received.append((topic, payload))
        if self.receipts:
            message = decode(topic, payload)
            receipt = ReceiptV1(seqs=[(message.seq, message.seq)])
            client.publish(
                downlink_topic(message.vehicle_id, "receipt"), encode(message.vehicle_id, 1, receipt)
            )

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


def _kill9(broker: Broker) -> None:
    """SIGKILL: the broker saves nothing, as in a crash or a power cut."""
    assert broker.process is not None
    broker.process.kill()
    broker.process.wait(10)
    broker.process = None


@pytest.mark.parametrize("resend_window_s", [60.0, 0.0], ids=["resend", "control-without-resend"])
def test_broker_killed_after_its_puback_loses_nothing(tmp_path: Path, resend_window_s: float) -> None:
    """Mosquitto saves to disk only every autosave_interval: what it acknowledged since is gone after a crash.

    The control run (no resend window) shows the loss this test exists for: it asserts that messages are lost.
    """
    broker = Broker(tmp_path, extra="allow_anonymous true\nautosave_interval 3600\nautosave_on_changes false")
    broker.start()
    collector = Collector(broker.port)  # the ingest's persistent session, subscribed...
    collector.close()  # ...and away (restarting): the broker queues for it
    outbox = Outbox(tmp_path / "car.db", "car1")
    uplink = MqttUplink(outbox, BrokerAddress("127.0.0.1", broker.port), inflight=8, persistent_session=True,
                        resend_window_s=resend_window_s)  # fmt: skip
    try:
        uplink.start()
        assert uplink.flush(20)
        broker.stop()  # a clean stop saves both sessions: this is the broker's last save
        broker.start()
        assert wait_until(lambda: uplink.connections == 2, timeout=30)
        sent = [outbox.enqueue(_event(i)) for i in range(40)]
        uplink.notify()
        assert uplink.flush(20)  # every message acknowledged by the broker (PUBACK)
        assert outbox.depth() == 0
        _kill9(broker)
        broker.start()  # restored from its last save: both sessions, none of the 40 messages
        assert wait_until(lambda: uplink.connections == 3, timeout=30)
        # the broker says it remembers the car's session, yet has forgotten what it acknowledged to it
        assert uplink.session_present is True
        assert uplink.flush(30)
        collector = Collector(broker.port)  # the ingest comes back and reads its queue
        if resend_window_s:
            assert wait_until(lambda: set(collector.seqs()) >= set(sent), timeout=30)
            assert uplink.resent >= len(sent)
        else:
            time.sleep(2)
            assert uplink.resent == 0
            assert not set(sent) & set(collector.seqs())  # the loss the resend window prevents
    finally:
        uplink.stop(graceful=False)
        collector.close()
        broker.stop()


@pytest.mark.parametrize("resend_window_s", [1.0, 0.0], ids=["receipts", "control-trusting-puback"])
def test_a_message_acked_before_the_ingest_subscribed_is_sent_again_until_its_receipt(
    tmp_path: Path, resend_window_s: float
) -> None:
    """A broker that restarted without its state acknowledges messages for which no subscriber exists yet and
    routes them nowhere. Only the ingest's receipt ends a message's life in the car.

    The control run (trusting the PUBACK) shows the loss this test exists for: it asserts that the messages
    never arrive.
    """
    broker = Broker(tmp_path)
    broker.start()  # a broker with no sessions: the ingest has not subscribed (again) yet
    outbox = Outbox(tmp_path / "car.db", "car1")
    uplink = MqttUplink(outbox, BrokerAddress("127.0.0.1", broker.port), resend_window_s=resend_window_s)
    collector = None
    try:
        uplink.start()
        assert uplink.wait_subscribed(10)  # the car's receipt subscription
        sent = [outbox.enqueue(_event(i)) for i in range(5)]
        uplink.notify()
        assert uplink.flush(20)  # PUBACKed, and delivered to nobody
        collector = Collector(broker.port, receipts=True)  # the ingest subscribes
        if resend_window_s:
            assert wait_until(lambda: set(collector.seqs()) >= set(sent), timeout=30)
            assert wait_until(lambda: outbox.stored_bytes == 0, timeout=10), outbox.delivered()
            assert uplink.resent >= len(sent) and uplink.confirmed >= len(sent)
            received = len(collector.seqs())
            time.sleep(2.5)  # confirmed: never sent again (the next resend would have come after 2 s)
            assert len(collector.seqs()) == received
        else:
            time.sleep(2)
            assert outbox.stored_bytes == 0 and uplink.resent == 0
            assert not set(sent) & set(collector.seqs())  # the loss the receipts prevent
    finally:
        uplink.stop(graceful=False)
        if collector is not None:
            collector.close()
        broker.stop()


def test_the_client_id_is_the_vehicle_id(tmp_path: Path) -> None:
    """A broker that admits only client ids starting with VIN admits the car as itself, not as edge-VIN..."""
    broker = Broker(tmp_path, extra="allow_anonymous true\nclientid_prefixes VIN")
    broker.start()
    collector = Collector(broker.port, client_id="VIN-collector")
    outbox = Outbox(tmp_path / "car.db", "VIN0001")
    uplink = MqttUplink(outbox, BrokerAddress("127.0.0.1", broker.port))
    old_style = MqttUplink(Outbox(tmp_path / "x.db", "VIN0002"), BrokerAddress("127.0.0.1", broker.port),
                           client_id="edge-VIN0002")  # fmt: skip
    try:
        assert uplink.client_id == "VIN0001"
        uplink.start()
        seq = outbox.enqueue(_event(1))
        uplink.notify()
        assert uplink.flush(20)
        assert wait_until(lambda: seq in collector.seqs(), timeout=10)
        old_style.start()
        assert not old_style.wait_connected(3)
    finally:
        uplink.stop(graceful=False)
        old_style.stop(graceful=False)
        collector.close()
        broker.stop()


def test_batches_are_split_to_the_brokers_limit_and_every_sample_arrives_once(tmp_path: Path) -> None:
    """A broker with a 4 KiB limit acknowledges a larger message and drops it: the edge never sends one."""
    limit = 4096
    broker = Broker(tmp_path, extra=f"allow_anonymous true\nmessage_size_limit {limit}")
    broker.start()
    collector = Collector(broker.port)
    outbox = Outbox(tmp_path / "car.db", "car1", max_message_bytes=limit)
    agent = EdgeAgent(outbox, telemetry=TelemetrySettings(period_s=0.5, batch_s=300.0))
    uplink = MqttUplink(outbox, BrokerAddress("127.0.0.1", broker.port))
    rng = np.random.default_rng(7)
    t0 = float(int(time.time()) - 3600)
    n = 1800  # 15 minutes at 2 Hz: three 600-sample batches, each far over the limit
    t = t0 + np.arange(n, dtype=np.float64) * 0.5
    columns = {
        vss.SPEED: np.round(rng.uniform(0, 130, n), 3),
        vss.ACCEL_LONGITUDINAL: np.round(rng.normal(0, 1, n), 4),
        vss.LATITUDE: np.round(48 + rng.normal(0, 0.01, n), 6),
        vss.LONGITUDE: np.round(11 + rng.normal(0, 0.01, n), 6),
    }
    try:
        uplink.start()
        for start in range(0, n, 100):
            agent.process(
                SignalBlock(t[start : start + 100], {k: v[start : start + 100] for k, v in columns.items()})
            )
            uplink.notify()
        agent.close_trip()
        uplink.notify()
        assert uplink.flush(30)
        assert outbox.dropped() == {}
        assert wait_until(
            lambda: "trip" in {t.rsplit("/", 1)[1] for t, _ in list(collector.received)}, timeout=20
        )
        unique = {}
        for topic, payload in list(collector.received):
            assert len(payload) <= limit
            message = decode(topic, payload)
            unique[message.seq] = (
                message  # a QoS 1 redelivery may repeat a message; the cloud keeps one per seq
            )
        samples: dict[str, list[tuple[int, float | None]]] = {name: [] for name in columns}
        batches = 0
        for message in unique.values():
            if isinstance(message.body, TelemetryV1):
                batches += 1
                base = round(message.body.t0.timestamp() * 1000)
                for name, values in message.body.signals.items():
                    samples[name] += [(base + ms, v) for ms, v in zip(message.body.t_ms, values, strict=True)]
        assert batches >= 3 * 4  # each 600-sample batch had to be split at least four ways
        for name, column in columns.items():
            expected = [(round(ti * 1000), float(v)) for ti, v in zip(t, column, strict=True)]
            assert sorted(samples[name]) == expected, name  # every sample once: none lost, none twice
    finally:
        uplink.stop(graceful=False)
        collector.close()
        broker.stop()


def test_a_stored_message_over_the_limit_is_never_published(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    collector = Collector(broker.port)
    outbox = Outbox(tmp_path / "car.db", "car1")
    big = outbox.enqueue(EventsV1(events=_event(0).events * 40))
    small = outbox.enqueue(_event(1))
    outbox.max_message_bytes = 2048  # lowered while it waited (at a restart the outbox drops it itself)
    uplink = MqttUplink(outbox, BrokerAddress("127.0.0.1", broker.port))
    try:
        uplink.start()
        assert uplink.flush(20)
        assert wait_until(lambda: small in collector.seqs(), timeout=10)
        assert big not in collector.seqs()
        assert outbox.dropped()["events"][0] == 1
    finally:
        uplink.stop(graceful=False)
        collector.close()
        broker.stop()


def test_a_status_that_finds_the_outbox_full_of_trips_is_counted_not_fatal(tmp_path: Path) -> None:
    from edge_agent.outbox import OutboxFull
    from edge_agent.protocol import StatusV1
    from tests.outbox_child import trip

    broker = Broker(tmp_path)
    broker.start()
    outbox = Outbox(tmp_path / "car.db", "car1", max_bytes=320 * 1024, max_message_bytes=16384)
    models = {f"model_{i:02d}_{'x' * 50}": "v" * 64 for i in range(64)}  # a status of about 9 KB
    i = 0
    while True:  # trips, until a status of that size no longer fits (it may not push a trip out)
        outbox.enqueue(trip(i))
        i += 1
        try:
            outbox.ack([outbox.enqueue(StatusV1(state="online", agent_version="t", models=models))])
        except OutboxFull:
            break
    address = BrokerAddress("127.0.0.1", broker.port)
    uplink = MqttUplink(outbox, address, status_fields=lambda: {"models": models})
    try:
        uplink.start()  # queues the "online" status: refused and counted, not raised
        assert outbox.dropped()["status"][0] == 2
        assert uplink.flush(30)  # and the trips go out
    finally:
        uplink.stop(graceful=False)
        broker.stop()
