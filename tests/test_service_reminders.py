"""Service reminders end to end on the real database and broker: simulated cars (EdgeAgent, MqttUplink,
Downlink) drive and report faults through the ingest, master data and bookings come in as CRM imports, and
``drivesight cloud service remind --now T --json`` decides, pushes to the cars and tells dealers; the cars'
feedback comes back through the ingest."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from cloud.analytics.imports import import_file
from cloud.cli import main as cloud_main
from cloud.ingest.worker import IngestWorker
from cloud.privacy import consent
from cloud.push.webhooks import verify
from cloud.service.plans import PlanError, load_plans
from edge_agent import signals as vss
from edge_agent.agent import EdgeAgent
from edge_agent.downlink import Downlink
from edge_agent.outbox import Outbox
from edge_agent.protocol import BrokerAddress, ConsentState, DtcRecord, DtcV1, PushAction, PushV1
from edge_agent.signals import SignalBlock
from edge_agent.uplink import MqttUplink
from tests.helpers import wait_until
from tests.test_webhooks import _Receiver as Receiver

SECRET = "service-webhook-secret-0123456789"


class Driver:
    """A display hook whose driver reads every push (displayed) and opens it."""

    def __init__(self) -> None:
        self.shown: list[PushV1] = []

    def show(self, push: PushV1, respond: Callable[[PushAction], None]) -> None:
        self.shown.append(push)
        respond(PushAction.DISPLAYED)
        respond(PushAction.OPENED)


class SimCar:
    """A simulated car: the edge agent with its outbox, uplink and downlink on the real broker. Its owner
    gave no profiling consent: a marketing push would be suppressed, a service message is shown."""

    def __init__(self, tmp: Path, vehicle_id: str, broker: BrokerAddress) -> None:
        self.vehicle_id = vehicle_id
        self.outbox = Outbox(tmp / f"{vehicle_id}.db", vehicle_id)
        self.agent = EdgeAgent(
            self.outbox, consent=ConsentState(telemetry=True, location=False, profiling=False)
        )
        self.driver = Driver()
        self.downlink = Downlink(self.agent, self.driver)
        self.uplink = MqttUplink(
            self.outbox, broker, on_downlink=self.downlink.receive, status_fields=self.agent.status_fields
        )

    def start(self) -> None:
        """Connect and subscribe to the car's downlink."""
        self.uplink.start()
        assert self.uplink.wait_subscribed(10)

    def drive(self, odometer_km: float) -> None:
        """A minute's trip at 50 km/h (the agent sends trips of 30 s or more) ending at ``odometer_km``."""
        t = datetime.now(UTC).timestamp() - 120 + np.arange(600) * 0.1  # ended a minute ago
        odometer = odometer_km - 0.8 + np.arange(600) * (0.8 / 599)
        self.agent.process(SignalBlock(t, {vss.SPEED: np.full(600, 50.0), vss.ODOMETER: odometer}))
        self.agent.close_trip()
        assert self.uplink.flush(15)

    def report_fault(self, *codes: str) -> None:
        """Fault codes as the car reports them when they appear."""
        at = datetime.now(UTC)
        self.agent.send(DtcV1(codes=[DtcRecord(code=c, first_seen=at) for c in codes]))
        assert self.uplink.flush(15)

    def wait_shown(self, n: int, timeout: float = 15) -> bool:
        """Handle the downlink until ``n`` pushes were shown (False on timeout)."""
        return wait_until(lambda: self.downlink.poll() >= 0 and len(self.driver.shown) >= n, timeout=timeout)

    def settle(self, seconds: float = 1.5) -> None:
        """Handle whatever arrives within ``seconds`` (to see that nothing does)."""
        wait_until(lambda: self.downlink.poll() < 0, timeout=seconds)
        assert self.uplink.flush(15)

    def stop(self) -> None:
        """Disconnect."""
        self.uplink.stop()


def _noon_zone(at: datetime) -> str:
    """A fixed-offset IANA zone in which ``at`` is between 12:00 and 13:00 local time."""
    offset = 12 - at.hour
    return f"Etc/GMT{-offset:+d}"


@pytest.fixture
def world(
    fresh_database: str, broker: BrokerAddress, ingest_group: str | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """A fresh database with its ingest worker; the job's environment set as an operator would."""
    monkeypatch.setenv("DRIVESIGHT_DATABASE_URL", fresh_database)
    monkeypatch.setenv("DRIVESIGHT_MQTT_URL", broker.url())
    monkeypatch.setenv("DRIVESIGHT_PUSH_WEBHOOK_SECRET", SECRET)
    monkeypatch.delenv("DRIVESIGHT_SERVICE_PLANS", raising=False)
    worker = IngestWorker(
        fresh_database, broker, group=ingest_group, client_id=f"svc-{uuid.uuid4().hex[:8]}", persistent=False
    )
    worker.start()
    now = (datetime.now(UTC) + timedelta(minutes=5)).replace(second=0, microsecond=0)
    try:
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            yield {"conn": conn, "now": now, "zone": _noon_zone(now), "broker": broker, "url": fresh_database}
    finally:
        worker.stop()


def _csv(path: Path, header: str, *lines: str) -> Path:
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def _master_data(
    conn: psycopg.Connection[Any], tmp: Path, zone: str, cars: list[tuple[str, str, str, int]], hook: str = ""
) -> None:
    """Dealer D1 (booking page, optional webhook), a customer per car (vehicle, customer, model, days since
    delivery), the cars with their zone."""
    import_file(
        conn,
        "dealers",
        _csv(tmp / "dealers.csv", "dealer_id,name,booking_url,webhook_url",
             f"D1,Dealer One,https://d1.example/book,{hook}"),
    )  # fmt: skip
    import_file(conn, "customers", _csv(tmp / "customers.csv", "customer_id", *(c for _, c, _, _ in cars)))
    today = datetime.now(UTC).date()
    import_file(
        conn,
        "vehicles",
        _csv(tmp / "vehicles.csv",
             "vehicle_id,customer_id,dealer_id,model,model_year,powertrain,purchased_at,time_zone",
             *(f"{v},{c},D1,{m},2024,ice,{today - timedelta(days=d)},{zone}" for v, c, m, d in cars)),
    )  # fmt: skip


def remind(at: datetime, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``drivesight cloud service remind --now AT --json``: its exit status must be 0 and stdout one JSON
    document."""
    capsys.readouterr()
    assert cloud_main(["service", "remind", "--now", at.isoformat(), "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def _decisions(conn: psycopg.Connection[Any], vehicle: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT channel, reason, attempt, outcome, suppressed_by, why FROM service_reminders"
        " WHERE vehicle_id = %s ORDER BY reminder_id",
        (vehicle,),
    ).fetchall()


def _feedback(conn: psycopg.Connection[Any], push_id: str) -> set[str]:
    rows = conn.execute("SELECT action FROM push_feedback WHERE push_id = %s", (push_id,)).fetchall()
    return {str(r[0]) for r in rows}


def test_due_by_mileage_reaches_the_car_renotifies_and_stops_on_booking(
    world: dict[str, Any], tmp_path: Path, vehicle_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Car A (DS-Sedan: every 20,000 km or 12 months) was serviced 100 days ago at 10,000 km and now reads
    31,000 km: due by mileage, not by time. Car B was serviced 30 days ago at 5,000 km and reads 6,000: not
    due. A gets the reminder with its dealer's booking link, shows it, and its DISPLAYED comes back; a day
    later nothing; after 7 days attempt 2; after a booking from the CRM nothing more, the stop recorded."""
    conn, now = world["conn"], world["now"]
    a, b = vehicle_prefix + "A", vehicle_prefix + "B"
    _master_data(
        conn, tmp_path, world["zone"], [(a, a + "-c", "DS-Sedan", 400), (b, b + "-c", "DS-Sedan", 400)]
    )
    today = now.date()
    import_file(
        conn,
        "service_visits",
        _csv(tmp_path / "visits.csv", "visit_id,vehicle_id,dealer_id,visited_at,kind,odometer_km",
             f"VA,{a},D1,{today - timedelta(days=100)},service,10000",
             f"VB,{b},D1,{today - timedelta(days=30)},service,5000"),
    )  # fmt: skip
    cars = {v: SimCar(tmp_path, v, world["broker"]) for v in (a, b)}
    try:
        for car in cars.values():
            car.start()
        cars[a].drive(31_000)
        cars[b].drive(6_000)
        trips = "SELECT count(*) FROM trips WHERE vehicle_id = ANY(%s) AND odometer_km IS NOT NULL"
        assert wait_until(lambda: conn.execute(trips, ([a, b],)).fetchone() == (2,), timeout=20)

        first = remind(now, capsys)
        assert first["due"] == {"due_by_mileage": 1} and first["acknowledged"] == 1, first
        assert cars[a].wait_shown(1)
        push = cars[a].driver.shown[0]
        assert push.marketing is False and push.url == "https://d1.example/book"
        assert push.campaign_id == "service" and "service" in push.title.lower()
        assert wait_until(lambda: {"delivered", "displayed"} <= _feedback(conn, push.push_id), timeout=20)
        [(channel, reason, attempt, outcome, by, why)] = _decisions(conn, a)
        assert (channel, reason, attempt, outcome, by) == ("push", "due_by_mileage", 1, "sent", None)
        assert "21,000 km driven" in why and "VA" in why

        # a day later: not again (re-notification waits 7 days); B, not due, never gets anything
        assert remind(now + timedelta(days=1), capsys)["published"] == 0
        second = remind(now + timedelta(days=7, minutes=5), capsys)
        assert second["decided"] == {"push:sending": 1} and second["acknowledged"] == 1, second
        assert cars[a].wait_shown(2)
        again = cars[a].driver.shown[1]
        assert again.push_id != push.push_id
        assert wait_until(lambda: "displayed" in _feedback(conn, again.push_id), timeout=20)
        assert [d[2:4] for d in _decisions(conn, a)] == [(1, "sent"), (2, "sent")]

        # the dealer's CRM: A booked a visit on day 8; on day 14 the third reminder is not sent
        import_file(
            conn,
            "bookings",
            _csv(tmp_path / "bookings.csv", "booking_id,vehicle_id,dealer_id,booked_at,appointment_at",
                 f"BK1,{a},D1,{(now + timedelta(days=8)).isoformat()},"
                 f"{(now + timedelta(days=20)).isoformat()}"),
        )  # fmt: skip
        third = remind(now + timedelta(days=14, minutes=10), capsys)
        assert third["decided"] == {"push:stopped_by_booking": 1} and third["published"] == 0, third
        assert remind(now + timedelta(days=15), capsys)["decided"] == {}  # stopped once, for good
        cars[a].settle()
        cars[b].settle()
        assert len(cars[a].driver.shown) == 2
        assert cars[b].driver.shown == [] and _decisions(conn, b) == []
        assert [d[3] for d in _decisions(conn, a)] == ["sent", "sent", "stopped_by_booking"]
        assert "booking BK1" in _decisions(conn, a)[-1][5]
    finally:
        for car in cars.values():
            car.stop()
    # the same through the API (marketing:read): the decisions by status, the customer's service picture
    from fastapi.testclient import TestClient

    from cloud.access.keys import create_key
    from cloud.api.app import create_app

    key = create_key(conn, name="after-sales", scopes=["marketing:read"]).key
    with TestClient(create_app(world["url"])) as api:
        auth = {"Authorization": f"Bearer {key}"}
        sent = api.get("/v1/service/reminders", params={"vehicle_id": a, "status": "sent"}, headers=auth)
        assert sent.status_code == 200, sent.text
        items = sent.json()["items"]
        assert [(r["attempt"], r["reason"]) for r in items] == [(2, "due_by_mileage"), (1, "due_by_mileage")]
        assert "displayed" in items[1]["feedback"]
        paged = api.get("/v1/service/reminders", params={"limit": 1}, headers=auth).json()
        rest = api.get(
            "/v1/service/reminders", params={"limit": 5, "cursor": paged["next_cursor"]}, headers=auth
        ).json()
        assert len(paged["items"]) == 1 and len(rest["items"]) == 2 and rest["next_cursor"] is None
        picture = api.get(f"/v1/customers/{a}-c/service", headers=auth)
        assert picture.status_code == 200, picture.text
        [vehicle] = picture.json()["vehicles"]
        assert vehicle["odometer_km"] == pytest.approx(31_000) and vehicle["last_service"]["visit_id"] == "VA"
        assert [d["reason"] for d in vehicle["due"]] == ["due_by_mileage"]
        assert [b["booking_id"] for b in picture.json()["bookings"]] == ["BK1"]
        assert api.get("/v1/customers/nobody/service", headers=auth).status_code == 404


def test_a_severe_fault_tells_the_dealer_only_with_consent(
    world: dict[str, Any], tmp_path: Path, vehicle_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two new cars (not due for service) report P0301 (a misfire: severe by plans.toml's P03 prefix) and
    P0420 (not severe). Both owners get the in-car reminder for P0301 only; the dealer's webhook is told of
    F1's fault, signed, because F1's owner allows dealer_sharing, and not of F2's (no_consent) until F2's
    owner grants it. The dealer is told once per fault."""
    conn, now = world["conn"], world["now"]
    receiver = Receiver([])  # a dealer's endpoint: takes every POST (200) and keeps it
    f1, f2 = vehicle_prefix + "F1", vehicle_prefix + "F2"
    try:
        _master_data(
            conn, tmp_path, world["zone"], [(f1, f1 + "-c", "DS-SUV", 20), (f2, f2 + "-c", "DS-SUV", 20)],
            hook=receiver.url,
        )  # fmt: skip
        consent.record(conn, f1 + "-c", "dealer_sharing", True, "dealer")
        cars = {v: SimCar(tmp_path, v, world["broker"]) for v in (f1, f2)}
        try:
            for car in cars.values():
                car.start()
                car.report_fault("P0301", "P0420")
            faults = "SELECT count(*) FROM dtc_reports WHERE vehicle_id = ANY(%s)"
            assert wait_until(lambda: conn.execute(faults, ([f1, f2],)).fetchone() == (4,), timeout=20)
            run = remind(now, capsys)
            assert run["due"] == {"fault_code": 2} and run["webhooks_delivered"] == 1, run
            assert run["decided"] == {
                "push:sending": 2, "dealer_webhook:sending": 1, "dealer_webhook:no_consent": 1,
            }  # fmt: skip
            for car in cars.values():
                assert car.wait_shown(1)
                assert "P0301" in car.driver.shown[0].text and car.driver.shown[0].marketing is False
            [(headers, body)] = receiver.requests
            stamp = int(headers["X-Drivesight-Timestamp"])
            assert verify(SECRET.encode(), stamp, body, headers["X-Drivesight-Signature"], now=stamp)
            told = json.loads(body)
            assert (told["vehicle_id"], told["fault_code"], told["dealer_id"]) == (f1, "P0301", "D1")
            # the same refusal an hour later is not recorded again
            assert remind(now + timedelta(hours=1), capsys)["unchanged"] == {"dealer_webhook:no_consent": 1}
            f2_webhooks = [d for d in _decisions(conn, f2) if d[0] == "dealer_webhook"]
            assert [(d[3], d[4]) for d in f2_webhooks] == [("suppressed", "no_consent")]
            assert "dealer_sharing" in f2_webhooks[0][5]
            assert not any(d[1] == "fault_code" and "P0420" in d[5] for d in _decisions(conn, f1))

            # again the next day: F1's dealer is not told twice; F2's owner now allows it, so F2's is
            consent.record(conn, f2 + "-c", "dealer_sharing", True, "app")
            later = remind(now + timedelta(days=1), capsys)
            assert later["webhooks_delivered"] == 1, later
            assert len(receiver.requests) == 2 and json.loads(receiver.requests[1][1])["vehicle_id"] == f2
        finally:
            for car in cars.values():
                car.stop()
    finally:
        receiver.close()


def test_quiet_hours_defer_the_reminder(
    world: dict[str, Any], tmp_path: Path, vehicle_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Car Q was delivered 400 days ago and never serviced: due by time (12 months), not by mileage (it first
    reported 76,000 km: sold with them, not driven since delivery). At 22:xx in the car's zone the reminder
    is suppressed (quiet_hours) and nothing reaches the car; at 10:xx the next morning it is sent and
    shown."""
    conn, now = world["conn"], world["now"]
    q = vehicle_prefix + "Q"
    _master_data(conn, tmp_path, world["zone"], [(q, q + "-c", "DS-Compact", 400)])
    car = SimCar(tmp_path, q, world["broker"])
    try:
        car.start()
        car.drive(76_000)
        trips = "SELECT count(*) FROM trips WHERE vehicle_id = %s AND odometer_km IS NOT NULL"
        assert wait_until(lambda: conn.execute(trips, (q,)).fetchone() == (1,), timeout=20)
        night = remind(now + timedelta(hours=10), capsys)
        assert night["due"] == {"due_by_time": 1} and night["published"] == 0, night
        # an hour later, still quiet: the same suppression, not recorded again
        again = remind(now + timedelta(hours=11), capsys)
        assert again["decided"] == {} and again["unchanged"] == {"push:quiet_hours": 1}, again
        car.settle()
        assert car.driver.shown == []
        [(channel, reason, _, outcome, by, why)] = _decisions(conn, q)
        assert (channel, reason, outcome, by) == ("push", "due_by_time", "suppressed", "quiet_hours")
        assert "within the quiet hours" in why
        morning = remind(now + timedelta(hours=22), capsys)
        assert morning["acknowledged"] == 1, morning
        assert car.wait_shown(1)
        assert [d[3] for d in _decisions(conn, q)] == ["suppressed", "sent"]
        assert (
            "12 months passed" in _decisions(conn, q)[1][5] and "km driven" not in _decisions(conn, q)[1][5]
        )
    finally:
        car.stop()


def test_the_plans_file_is_checked_whole(tmp_path: Path) -> None:
    """Every problem with its place; the shipped file loads."""
    shipped = load_plans()
    assert shipped.interval("DS-EV5").interval_km == 30_000 and shipped.interval("unknown") == shipped.default
    assert shipped.faults.severe("P0301") and not shipped.faults.severe("P0420")
    bad = tmp_path / "plans.toml"
    bad.write_text(
        "[default]\ninterval_km = -1\ninterval_months = 12\n"
        "[reminders]\nbooking_url = 'https://x/{dealer}'\nrenotify_days = [14, 7]\n"
        "[faults]\nprefixes = ['X1']\ncolour = 'red'\n"
    )
    with pytest.raises(PlanError) as info:
        load_plans(bad)
    message = str(info.value)
    for place in ("default.interval_km", "reminders.booking_url", "reminders.renotify_days",
                  "faults.prefixes", "faults.colour"):  # fmt: skip
        assert place in message, message
    bad.write_text("[default\n")
    with pytest.raises(PlanError, match="not valid TOML"):
        load_plans(bad)
