"""Pushes and config over the real broker: display hook, feedback up to the database, config while running."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import paho.mqtt.client as mqtt
import psycopg

from cloud.downlink import DownlinkPublisher
from cloud.ingest.worker import IngestWorker
from edge_agent import signals as vss
from edge_agent.agent import EdgeAgent
from edge_agent.downlink import Downlink
from edge_agent.outbox import Outbox
from edge_agent.protocol import (
    BrokerAddress,
    ConfigV1,
    ConsentState,
    FeedbackV1,
    PushAction,
    PushV1,
    downlink_topic,
    encode,
)
from edge_agent.signals import SignalBlock
from edge_agent.uplink import MqttUplink
from tests.helpers import wait_until


class ClickingDriver:
    """A display hook whose driver opens every push and clicks the ones with a link."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def show(self, push: PushV1, respond: Callable[[PushAction], None]) -> None:
        self.shown.append(push.push_id)
        respond(PushAction.OPENED)
        if push.url:
            respond(PushAction.CLICKED)


def test_push_feedback_and_config_round_trip(
    tmp_path, database_url: str, db: psycopg.Connection, broker: BrokerAddress, ingest_group: str | None,
    vehicle_prefix: str, mqtt_client: mqtt.Client,
) -> None:  # fmt: skip
    vehicle = vehicle_prefix + "push"
    worker = IngestWorker(
        database_url, broker, group=ingest_group, client_id=f"dl-{vehicle}", persistent=False
    )
    worker.start()
    outbox = Outbox(tmp_path / "o.db", vehicle)
    agent = EdgeAgent(outbox, consent=ConsentState(telemetry=True, location=True, profiling=True))
    driver = ClickingDriver()
    uplink: MqttUplink | None = None

    def report_consent(config: ConfigV1) -> None:
        if config.consent is not None and uplink is not None:
            uplink.send_status("online")

    downlink = Downlink(agent, driver, on_config=report_consent)
    uplink = MqttUplink(outbox, broker, on_downlink=downlink.receive, status_fields=agent.status_fields)
    uplink.start()
    try:
        assert uplink.wait_subscribed(10)
        cloud = DownlinkPublisher(mqtt_client)
        now = datetime.now(UTC)
        offer = PushV1(
            push_id="p1", campaign_id="c1", title="Winter tyres", text="10% off", url="https://x/y"
        )
        seq = cloud.send(vehicle, offer)
        mqtt_client.publish(
            downlink_topic(vehicle, "push"), encode(vehicle, seq, offer), qos=1
        )  # a redelivery
        cloud.send(
            vehicle, PushV1(push_id="p2", title="Old news", text="", expires_at=now - timedelta(hours=1))
        )
        cloud.send(vehicle, ConfigV1(speed_limit_kmh=80, consent=ConsentState(telemetry=True, location=True)))
        cloud.send(
            vehicle, PushV1(push_id="p3", campaign_id="c1", title="Service plan", text="", marketing=True)
        )
        cloud.send(
            vehicle, PushV1(push_id="p4", title="Recall 24V-123", text="Visit a dealer", marketing=False)
        )
        assert wait_until(
            lambda: downlink.poll() >= 0 and downlink.duplicates + len(driver.shown) >= 3, timeout=15
        )
        # the new speed limit is in force: 100 km/h for 20 s is speeding now
        t = datetime.now(UTC).timestamp() + np.arange(200) * 0.1
        agent.process(SignalBlock(t, {vss.SPEED: np.full(200, 100.0)}))
        agent.close_trip()
        assert uplink.flush(15)
    finally:
        uplink.stop()
    assert driver.shown == ["p1", "p4"]  # p2 expired, p3 is marketing after profiling was withdrawn
    assert downlink.duplicates == 1
    expected = {
        ("p1", "delivered"), ("p1", "opened"), ("p1", "clicked"), ("p2", "expired"), ("p3", "suppressed"),
        ("p4", "delivered"), ("p4", "opened"),
    }  # fmt: skip

    def feedback() -> set[tuple[str, str]]:
        rows = db.execute(
            "SELECT push_id, action FROM push_feedback WHERE vehicle_id = %s", (vehicle,)
        ).fetchall()
        return {(str(p), str(a)) for p, a in rows}

    try:
        assert wait_until(lambda: feedback() == expected, timeout=20), feedback()
        speeding = "SELECT count(*) FROM driving_events WHERE vehicle_id = %s AND kind = 'speeding'"
        assert wait_until(lambda: db.execute(speeding, (vehicle,)).fetchone() == (1,), timeout=20)
        consent = db.execute("SELECT consent FROM vehicles WHERE vehicle_id = %s", (vehicle,)).fetchone()
        assert consent is not None and consent[0]["profiling"] is False and consent[0]["telemetry"] is True
    finally:
        worker.stop()


def test_downlink_for_another_vehicle_or_malformed_is_rejected(tmp_path) -> None:
    outbox = Outbox(tmp_path / "o.db", "car1")
    downlink = Downlink(EdgeAgent(outbox), ClickingDriver())
    push = PushV1(push_id="p", title="t", text="")
    downlink.handle(downlink_topic("car2", "push"), encode("car2", 1, push))
    downlink.handle(downlink_topic("car1", "push"), b"{not json")
    downlink.handle(downlink_topic("car1", "config"), encode("car1", 2, push))  # push on the config topic
    assert downlink.rejected == 3 and outbox.depth() == 0
    threading.Thread(
        target=downlink.receive, args=(downlink_topic("car1", "push"), encode("car1", 3, push))
    ).start()
    assert wait_until(lambda: downlink.poll() == 1 or outbox.depth() > 0, timeout=5)
    assert outbox.depth() == 2  # delivered + opened


def test_a_push_republished_under_a_new_seq_is_shown_once(tmp_path) -> None:
    """The cloud re-publishes a push it never saw acknowledged (a crash) under the same push id and a newer
    seq: the car shows it once, reports once, and still does after a restart."""
    outbox = Outbox(tmp_path / "o.db", "car1")
    driver = ClickingDriver()
    downlink = Downlink(EdgeAgent(outbox), driver)
    push = PushV1(push_id="p-same", campaign_id="c1", title="Winter tyres", text="", marketing=False)
    downlink.handle(downlink_topic("car1", "push"), encode("car1", 10, push))
    downlink.handle(downlink_topic("car1", "push"), encode("car1", 11, push))  # re-published after a crash
    assert driver.shown == ["p-same"] and downlink.repeated_pushes == 1 and downlink.duplicates == 0
    assert outbox.depth() == 2  # delivered + opened, once
    restarted = Downlink(EdgeAgent(outbox), driver)
    restarted.handle(downlink_topic("car1", "push"), encode("car1", 12, push))
    other = PushV1(push_id="p-other", title="Recall", text="", marketing=False)
    restarted.handle(downlink_topic("car1", "push"), encode("car1", 13, other))
    assert driver.shown == ["p-same", "p-other"] and restarted.repeated_pushes == 1


def test_a_simulated_driver_reports_displayed_then_what_they_did(tmp_path) -> None:
    """The simulated car's display (simulators/push_world.py): every push it shows is reported displayed,
    then opened or dismissed (or nothing) and converted, as the response model draws; a driver who loves
    the push's categories opens more than one who does not."""
    import numpy as np

    from edge_agent.protocol import decode
    from simulators.push_world import RespondingDriver

    def opened_share(preference: list[float], seed: int) -> float:
        outbox = Outbox(tmp_path / f"o{seed}.db", "car1")
        noon = datetime(2026, 10, 5, 4, 0, tzinfo=UTC)
        clock = iter(noon + timedelta(days=8 * k) for k in range(10_000))  # no fatigue: a push a week+
        driver = RespondingDriver(
            np.array(preference), np.random.default_rng(seed), clock=lambda: next(clock)
        )
        downlink = Downlink(EdgeAgent(outbox), driver, clock=lambda: noon)
        for k in range(300):
            push = PushV1(push_id=f"p{k}", title="Electric charging plan", text="for electric lovers")
            downlink.handle(downlink_topic("car1", "push"), encode("car1", k + 1, push))
        actions = []
        for item in outbox.pending(limit=10_000):
            body = decode(item.topic, item.payload, now=noon, max_clock_skew=timedelta(days=3650)).body
            assert isinstance(body, FeedbackV1)
            actions.append(body.action)
        assert actions.count(PushAction.DELIVERED) == actions.count(PushAction.DISPLAYED) == 300
        assert actions.count(PushAction.CONVERTED) <= actions.count(PushAction.OPENED)
        assert actions.count(PushAction.OPENED) + actions.count(PushAction.DISMISSED) <= 300
        return actions.count(PushAction.OPENED) / 300

    fan = opened_share([0.0, 0.9, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0], seed=1)  # "electric" is the 2nd category
    indifferent = opened_share([0.3, 0.0, 0.3, 0.0, 0.2, 0.2, 0.0, 0.0], seed=2)
    assert fan > indifferent + 0.2, (fan, indifferent)
