"""One identity per client on the broker (deploy/mosquitto/ as shipped, on a private Mosquitto).

Each attack that worked against the previous configuration is tried again and must fail: a car taking over
another car's or the ingest's session, a car joining the ingest's shared group or reading or writing another
car's topics, an oversize message vanishing without a trace, a login without the right secret. Legitimate
traffic must still flow: a car's uplink reaches a real ingest worker and its database, a downlink reaches
its car and no other.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest

from cloud.downlink import BrokerRefused, DownlinkPublisher, connect
from cloud.ingest.worker import IngestWorker
from edge_agent.outbox import Outbox
from edge_agent.protocol import BrokerAddress, PushV1, StatusV1, downlink_topic, encode, uplink_topic
from edge_agent.uplink import MqttUplink
from tests.brokers import DEPLOY_MOSQUITTO, DeployBroker, Probe, dynsec_plugin
from tests.helpers import wait_until

pytestmark = pytest.mark.skipif(
    dynsec_plugin() is None, reason="Mosquitto's dynamic security plugin is not installed"
)

NOT_AUTHORIZED = 0x87
SHARED_INGEST = "$share/ingest/ds/v1/+/+"


class Fleet:
    """The broker and the identities every test uses."""

    def __init__(self, broker: DeployBroker) -> None:
        self.broker = broker
        prefix = f"t{uuid.uuid4().hex[:6]}-"
        self.a, self.b, self.p = prefix + "A", prefix + "B", prefix + "P"
        self.unknown = prefix + "U"  # signed by the vehicle CA but never provisioned
        broker.provision_cloud()
        broker.add_vehicle(self.a)
        broker.add_vehicle(self.b)
        broker.add_vehicle(self.p, password=True)
        self.certs = {vin: broker.ca.issue(vin) for vin in (self.a, self.b, self.unknown)}
        self._probes: list[Probe] = []

    @property
    def ca_file(self) -> str:
        """The CA that signed the broker's certificate (and the cars')."""
        return str(self.broker.ca.cert_file)

    def car(self, vin: str, *, client_id: str | None = None, **kwargs: object) -> Probe:
        """A car connected over mutual TLS with its own certificate (and any client id it likes)."""
        probe = self._probe(client_id or vin, **kwargs)
        reason = probe.connect(self.broker.tls_port, ca_file=self.ca_file, cert=self.certs[vin])
        assert reason is not None and not reason.is_failure, reason
        return probe

    def service(self, user: str, client_id: str, **kwargs: object) -> Probe:
        """A cloud service connected on the internal listener with its password."""
        probe = self._probe(client_id, **kwargs)
        reason = probe.connect(self.broker.internal_port, username=user, password=self.broker.password(user))
        assert reason is not None and not reason.is_failure, reason
        return probe

    def _probe(self, client_id: str, **kwargs: object) -> Probe:
        probe = Probe(client_id, **kwargs)  # type: ignore[arg-type]
        self._probes.append(probe)
        return probe

    def address(self, user: str) -> BrokerAddress:
        """The internal listener as ``user``."""
        return BrokerAddress("127.0.0.1", self.broker.internal_port, False, user, self.broker.password(user))

    def close(self) -> None:
        """Disconnect every probe still open."""
        for probe in self._probes:
            probe.close()
        self._probes.clear()


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployBroker]:
    """deploy/mosquitto/ on spare ports, with the password variant's listener enabled as well."""
    broker = DeployBroker(tmp_path_factory.mktemp("mosquitto"), password_variant=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def module_fleet(secure_broker: DeployBroker) -> Fleet:
    """The identities, provisioned once (provision.sh takes a second or two)."""
    return Fleet(secure_broker)


@pytest.fixture
def fleet(module_fleet: Fleet) -> Iterator[Fleet]:
    """The fleet, with this test's probes closed afterwards."""
    yield module_fleet
    module_fleet.close()


def _publish_acked(probe: Probe, topic: str, payload: bytes) -> int:
    mid = probe.publish(topic, payload)
    assert probe.wait(lambda: mid in probe.pubacks), f"no PUBACK for {topic}"
    return mid


def _uplink(vin: str, seq: int) -> tuple[str, bytes]:
    body = StatusV1(state="online", agent_version="test")
    return uplink_topic(vin, "status"), encode(vin, seq, body)


# ------------------------------------------------------------------------------------ legitimate traffic


def test_a_cars_uplink_reaches_the_ingest_database_and_its_downlink_only_that_car(
    tmp_path: Path, database_url: str, fleet: Fleet
) -> None:
    """The edge's own uplink over mTLS (it keeps its client id edge-VIN: the broker replaces it), a real
    ingest worker as the ingest identity, a real downlink publisher as the downlink identity."""
    worker = IngestWorker(
        database_url, fleet.address("ingest"), group="ingest", client_id="drivesight-ingest-e2e",
        persistent=False,
    )  # fmt: skip
    worker.start()
    received: list[str] = []
    car = MqttUplink(
        Outbox(tmp_path / "outbox.db", fleet.a),
        BrokerAddress("127.0.0.1", fleet.broker.tls_port, tls=True),
        ca_file=fleet.ca_file, cert_file=fleet.certs[fleet.a][0], key_file=fleet.certs[fleet.a][1],
        on_downlink=lambda topic, payload: received.append(topic),
    )  # fmt: skip
    other = fleet.car(fleet.b)
    publisher = connect(fleet.address("downlink"), client_id="drivesight-downlink-test")
    try:
        car.start()
        assert car.wait_subscribed(10)
        assert car.flush(10), "the broker did not acknowledge the car's status"
        with psycopg.connect(database_url) as conn:

            def online() -> bool:
                row = conn.execute("SELECT status FROM vehicles WHERE vehicle_id = %s", (fleet.a,)).fetchone()
                conn.rollback()
                return row is not None and row[0] == "online"

            assert wait_until(online, timeout=10), "the car's status never reached the database"
        # the ingest identity may send the car its receipt: the car's outbox empties
        assert car.flush(10, confirmed=True), f"no receipt for the car's {car.outbox.delivered()}"
        assert car.confirmed >= 1
        # another car may not listen to this car's downlink
        assert other.subscribe(f"ds/v1/{fleet.a}/down/+")[0].value == NOT_AUTHORIZED
        DownlinkPublisher(publisher).send(fleet.a, PushV1(push_id="p1", title="Hello", text=""))
        assert wait_until(lambda: received == [downlink_topic(fleet.a, "push")], timeout=10)
        time.sleep(0.3)
        assert other.messages == []
    finally:
        car.stop()
        publisher.disconnect()
        publisher.loop_stop()
        worker.stop()


def test_the_ingest_worker_says_so_when_the_broker_refuses_its_subscription(
    database_url: str, fleet: Fleet
) -> None:
    """Only $share/ingest is the ingest's: a worker configured for another group must not sit idle."""
    worker = IngestWorker(
        database_url, fleet.address("ingest"), group="elsewhere", client_id="drivesight-ingest-wrong",
        persistent=False,
    )  # fmt: skip
    try:
        with pytest.raises(PermissionError, match="refused the subscription"):
            worker.start()
        assert not worker.health()[0]
    finally:
        worker.stop()


# ---------------------------------------------------------------------------------------------- attacks


def test_a_car_cannot_take_over_another_cars_session_or_wipe_its_queue(fleet: Fleet) -> None:
    victim = fleet.car(fleet.b, protocol=mqtt.MQTTv311, clean=False)
    assert victim.subscribe(f"ds/v1/{fleet.b}/down/+")[0].value == 1
    # while the victim is online: the attacker connects with its client id
    attacker = fleet.car(fleet.a, client_id=fleet.b, protocol=mqtt.MQTTv311, clean=True)
    time.sleep(0.3)
    assert victim.disconnect is None, "the victim was kicked off"
    attacker.close()
    # while the victim is away with messages queued: a clean session under its id would wipe them
    victim.close()
    cloud = fleet.service("downlink", "drivesight-downlink-t1")
    for i in range(5):
        _publish_acked(cloud, downlink_topic(fleet.b, "push"), f"push {i}".encode())
    fleet.car(fleet.a, client_id=fleet.b, protocol=mqtt.MQTTv311, clean=True).close()
    back = fleet.car(fleet.b, protocol=mqtt.MQTTv311, clean=False)
    assert back.wait(lambda: len(back.messages) >= 5), f"{len(back.messages)} of 5 queued messages arrived"
    assert f"as {fleet.a} " in fleet.broker.log(), "the broker did not replace the client id by the CN"


def test_a_car_cannot_take_over_the_ingest_session(fleet: Fleet) -> None:
    ingest_id = "drivesight-ingest-victim"
    ingest = fleet.service("ingest", ingest_id, protocol=mqtt.MQTTv311, clean=False)
    assert ingest.subscribe(SHARED_INGEST)[0].value == 1
    ingest.close()
    car = fleet.car(fleet.b)
    for seq in range(1, 21):
        _publish_acked(car, *_uplink(fleet.b, seq))
    fleet.car(fleet.a, client_id=ingest_id, protocol=mqtt.MQTTv311, clean=True).close()
    back = fleet.service("ingest", ingest_id, protocol=mqtt.MQTTv311, clean=False)
    assert back.wait(lambda: len(back.messages) >= 20), f"{len(back.messages)} of 20 queued messages arrived"
    back.close()
    fleet.service("ingest", ingest_id, protocol=mqtt.MQTTv311, clean=True)  # end the persistent session


def test_only_the_ingest_may_join_the_ingest_group_or_read_other_cars(fleet: Fleet) -> None:
    ingest = fleet.service("ingest", "drivesight-ingest-share")
    assert ingest.subscribe(SHARED_INGEST)[0].value == 1
    attacker = fleet.car(fleet.a)
    for topic in (
        SHARED_INGEST, "$share/ingest/#", "$share/other/ds/v1/+/+", "ds/v1/+/+", "#",
        f"ds/v1/{fleet.b}/+", f"ds/v1/{fleet.b}/down/+", f"$share/x/ds/v1/{fleet.b}/down/+", "$SYS/#",
    ):  # fmt: skip
        assert attacker.subscribe(topic)[0].value == NOT_AUTHORIZED, f"a car may subscribe to {topic}"
    car = fleet.car(fleet.b)
    for seq in range(1, 101):
        _publish_acked(car, *_uplink(fleet.b, seq))
    assert ingest.wait(lambda: len(ingest.messages) >= 100), f"the ingest got {len(ingest.messages)} of 100"
    assert attacker.messages == []


def test_a_car_publishes_only_its_own_uplink(fleet: Fleet) -> None:
    ingest = fleet.service("ingest", "drivesight-ingest-pub")
    assert ingest.subscribe(SHARED_INGEST)[0].value == 1
    car = fleet.car(fleet.a)
    forged = [
        uplink_topic(fleet.b, "status"),
        downlink_topic(fleet.a, "push"),
        downlink_topic(fleet.b, "push"),
    ]
    for topic in forged:
        mid = _publish_acked(car, topic, b"{}")
        assert car.pubacks[mid].value == NOT_AUTHORIZED, f"a car may publish on {topic}"
    _publish_acked(car, *_uplink(fleet.a, 1))
    assert ingest.wait(lambda: len(ingest.messages) >= 1)
    time.sleep(0.2)
    assert [m.topic for m in ingest.messages] == [uplink_topic(fleet.a, "status")]


def test_an_oversize_message_is_refused_visibly(fleet: Fleet) -> None:
    limit = int(
        re.findall(r"^max_packet_size (\d+)$", (DEPLOY_MOSQUITTO / "mosquitto.conf").read_text(), re.M)[0]
    )
    ingest = fleet.service("ingest", "drivesight-ingest-size")
    assert ingest.subscribe(SHARED_INGEST)[0].value == 1
    car = fleet.car(fleet.a)
    # an MQTT 5 client learns the limit before it sends anything
    assert getattr(car.connack_props, "MaximumPacketSize", None) == limit
    _publish_acked(car, uplink_topic(fleet.a, "events"), b"x" * (limit - 1024))  # under the limit: passes
    car.publish(uplink_topic(fleet.a, "events"), b"x" * (300 * 1024))
    assert car.wait(lambda: car.disconnect is not None), "the broker accepted a 300 KiB message"
    car.close()  # no reconnect: paho would send the message again
    assert wait_until(
        lambda: f"Client {fleet.a} disconnected due to oversize packet" in fleet.broker.log(), 5
    )
    time.sleep(0.2)
    assert [len(m.payload) for m in ingest.messages] == [limit - 1024]


def test_logins_without_the_right_secret_are_refused(fleet: Fleet) -> None:
    broker = fleet.broker
    internal = [
        ("ingest", "wrong password"),
        (fleet.a, ""),  # a certificate car has no password: it cannot log in on the internal listener
        (fleet.a, None),
        (None, None),  # anonymous
    ]
    for user, password in internal:
        probe = Probe("drivesight-ingest-guess")
        reason = probe.connect(broker.internal_port, username=user, password=password)
        probe.close()
        assert reason is not None and reason.value == NOT_AUTHORIZED, (user, reason)
    # the car listener wants a certificate of the vehicle CA
    for cert in (None, "rogue"):
        probe = Probe(fleet.a)
        client_cert = None
        if cert == "rogue":
            from tests.brokers import make_ca

            client_cert = make_ca(broker.dir / "rogue", "rogue-ca").issue(fleet.a)
        try:
            reason = probe.connect(broker.tls_port, ca_file=fleet.ca_file, cert=client_cert)
        except OSError:
            reason = None  # the TLS handshake failed
        probe.close()
        assert reason is None or reason.is_failure, f"connected with certificate {cert}"
    # a login with the downlink identity's password is the only way to publish downlinks
    with pytest.raises(BrokerRefused, match="Not authorized"):
        connect(BrokerAddress("127.0.0.1", broker.internal_port, False, "downlink", "guess"))


def test_a_certificate_alone_gives_no_access(fleet: Fleet) -> None:
    """A car the broker was never told about (or was removed from it) can connect but do nothing."""
    stranger = fleet.car(fleet.unknown)
    assert stranger.subscribe(f"ds/v1/{fleet.unknown}/down/+")[0].value == NOT_AUTHORIZED
    mid = _publish_acked(stranger, *_uplink(fleet.unknown, 1))
    assert stranger.pubacks[mid].value == NOT_AUTHORIZED


def test_password_variant_forces_the_client_id_to_the_vehicle_id(fleet: Fleet) -> None:
    broker = fleet.broker
    assert broker.password_port is not None
    victim = fleet.car(fleet.b)
    car = Probe(fleet.b)  # a password car trying the other car's client id
    reason = car.connect(broker.password_port, username=fleet.p, password=broker.password(fleet.p))
    assert reason is not None and not reason.is_failure
    time.sleep(0.3)
    assert victim.disconnect is None, "the victim was kicked off"
    assert car.subscribe(f"ds/v1/{fleet.b}/down/+")[0].value == NOT_AUTHORIZED
    assert car.subscribe(f"ds/v1/{fleet.p}/down/+")[0].value == 1
    car.close()
    # on the internal listener (no forcing there) the plugin binds the car's user name to its client id
    elsewhere = Probe("drivesight-ingest-1")
    reason = elsewhere.connect(broker.internal_port, username=fleet.p, password=broker.password(fleet.p))
    elsewhere.close()
    assert reason is not None and reason.value == NOT_AUTHORIZED
    wrong = Probe(fleet.p)
    reason = wrong.connect(broker.password_port, username=fleet.p, password="not the password")
    wrong.close()
    assert reason is not None and reason.value == NOT_AUTHORIZED


def test_provisioning_again_keeps_identities_and_rotates_a_service_password(fleet: Fleet) -> None:
    broker = fleet.broker
    old = broker.password("downlink")
    broker.provision_cloud()  # what compose's mqtt-identities does on every start
    broker.add_vehicle(fleet.a)
    new = broker.password("downlink")
    with pytest.raises(BrokerRefused):
        connect(BrokerAddress("127.0.0.1", broker.internal_port, False, "downlink", old)).disconnect()
    client = connect(BrokerAddress("127.0.0.1", broker.internal_port, False, "downlink", new))
    client.disconnect()
    client.loop_stop()
    car = fleet.car(fleet.a)
    assert car.subscribe(f"ds/v1/{fleet.a}/down/+")[0].value == 1
    assert car.subscribe(f"ds/v1/{fleet.b}/down/+")[0].value == NOT_AUTHORIZED


def test_the_model_publisher_reaches_a_car_as_the_downlink_identity(
    tmp_path: Path, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``drivesight-cloud models publish`` with its settings as compose gives them (password from a file)."""
    from cloud.model_rollout import publish

    password_file = tmp_path / "downlink.password"
    password_file.write_text(fleet.broker.password("downlink") + "\n")
    monkeypatch.setenv("DRIVESIGHT_MQTT_URL", f"mqtt://downlink@127.0.0.1:{fleet.broker.internal_port}")
    monkeypatch.setenv("DRIVESIGHT_MQTT_PASSWORD_FILE", str(password_file))
    car = fleet.car(fleet.a)
    assert car.subscribe(f"ds/v1/{fleet.a}/down/+")[0].value == 1
    artifacts = Path(__file__).resolve().parent.parent / "models" / "artifacts" / "driving_style"
    assert publish("driving_style", artifacts, [fleet.a], online=False, key=None) == 0
    assert car.wait(lambda: len(car.messages) >= 1)
    assert {m.topic for m in car.messages} == {downlink_topic(fleet.a, "model")}
    # the ingest's password is not the downlink's: the same command as another identity is refused
    password_file.write_text(fleet.broker.password("ingest"))
    with pytest.raises(BrokerRefused):
        publish("driving_style", artifacts, [fleet.a], online=False, key=None)
