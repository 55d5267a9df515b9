"""The consent gate decides what leaves the car."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge_agent.agent import EdgeAgent
from edge_agent.consent import ConsentGate
from edge_agent.outbox import Outbox
from edge_agent.protocol import (
    ConsentState,
    DrivingEvent,
    DtcRecord,
    DtcV1,
    EventKind,
    EventsV1,
    FeatureUsage,
    GeoPoint,
    PushV1,
    StatusV1,
    TelemetryV1,
    TripSummaryV1,
    decode,
)

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
HOME = GeoPoint(lat=31.234567, lon=121.476543)
AC = "Vehicle.Cabin.HVAC.IsAirConditioningActive"


def _telemetry() -> TelemetryV1:
    return TelemetryV1(
        t0=T0,
        t_ms=[0, 1000],
        signals={
            "Vehicle.Speed": [50.0, 51.0],
            "Vehicle.CurrentLocation.Latitude": [31.234567, 31.2351],
            "Vehicle.CurrentLocation.Longitude": [121.476543, None],
        },
    )


def _trip() -> TripSummaryV1:
    return TripSummaryV1(
        trip_id="T1", started_at=T0, ended_at=T0 + timedelta(minutes=10), distance_km=5, duration_s=600,
        moving_s=500, idle_s=100, max_speed_kmh=60, avg_speed_kmh=30, night_share=0, samples=6000,
        start_location=HOME, end_location=GeoPoint(lat=31.3, lon=121.5),
        feature_usage={AC: FeatureUsage(activations=1, active_s=600)},
    )  # fmt: skip


def _events() -> EventsV1:
    event = DrivingEvent(
        kind=EventKind.HARSH_BRAKE, trip_id="T1", start=T0, end=T0, peak=-5, peak_unit="m/s^2", location=HOME
    )
    return EventsV1(events=[event])


ALL = ConsentState(telemetry=True, location=True, profiling=True)
NONE = ConsentState()


def test_full_consent_sends_everything_unchanged() -> None:
    gate = ConsentGate(ALL)
    for body in (_telemetry(), _trip(), _events()):
        assert gate.apply(body) == body


def test_without_telemetry_consent_no_raw_signals_leave() -> None:
    assert ConsentGate(ConsentState(location=True, profiling=True)).apply(_telemetry()) is None


def test_without_location_consent_positions_are_coarsened() -> None:
    gate = ConsentGate(ConsentState(telemetry=True, profiling=True))  # coarse, 0.01 degrees
    telemetry = gate.apply(_telemetry())
    assert isinstance(telemetry, TelemetryV1)
    assert telemetry.signals["Vehicle.CurrentLocation.Latitude"] == [31.23, 31.24]
    assert telemetry.signals["Vehicle.CurrentLocation.Longitude"] == [121.48, None]
    assert telemetry.signals["Vehicle.Speed"] == [50.0, 51.0]
    trip = gate.apply(_trip())
    assert isinstance(trip, TripSummaryV1)
    assert trip.start_location == GeoPoint(lat=31.23, lon=121.48)
    events = gate.apply(_events())
    assert isinstance(events, EventsV1) and events.events[0].location == GeoPoint(lat=31.23, lon=121.48)


def test_location_can_be_dropped_instead() -> None:
    gate = ConsentGate(ConsentState(telemetry=True, location_mode="drop"))
    telemetry = gate.apply(_telemetry())
    assert isinstance(telemetry, TelemetryV1) and set(telemetry.signals) == {"Vehicle.Speed"}
    trip = gate.apply(_trip())
    assert isinstance(trip, TripSummaryV1) and trip.start_location is None and trip.end_location is None
    only_position = TelemetryV1(t0=T0, t_ms=[0], signals={"Vehicle.CurrentLocation.Latitude": [31.0]})
    assert gate.apply(only_position) is None


def test_precision_is_configurable() -> None:
    gate = ConsentGate(ConsentState(location_precision_deg=0.1))
    trip = gate.apply(_trip())
    assert isinstance(trip, TripSummaryV1) and trip.start_location == GeoPoint(lat=31.2, lon=121.5)


def test_without_profiling_consent_feature_usage_stays_in_the_car() -> None:
    trip = ConsentGate(ConsentState(telemetry=True, location=True)).apply(_trip())
    assert isinstance(trip, TripSummaryV1)
    assert trip.feature_usage == {} and trip.distance_km == 5  # the safety-relevant summary still goes


def test_operational_messages_always_leave() -> None:
    gate = ConsentGate(NONE)
    dtc = DtcV1(codes=[DtcRecord(code="P0420", first_seen=T0)])
    status = StatusV1(state="online", agent_version="1")
    assert gate.apply(dtc) == dtc and gate.apply(status) == status
    assert isinstance(gate.apply(_events()), EventsV1)


@pytest.mark.parametrize(
    ("marketing", "profiling", "shown"), [(True, False, False), (True, True, True), (False, False, True)]
)
def test_marketing_pushes_need_profiling_consent(marketing: bool, profiling: bool, shown: bool) -> None:
    push = PushV1(push_id="p1", title="Winter tyres", text="...", marketing=marketing)
    assert ConsentGate(ConsentState(profiling=profiling)).allows_push(push) is shown


def test_withdrawing_consent_regates_what_is_still_waiting(tmp_path) -> None:
    outbox = Outbox(tmp_path / "o.db", "car1")
    agent = EdgeAgent(outbox, consent=ALL)
    agent.send(_telemetry(), compress=True)
    agent.send(_trip())
    agent.send(_events())
    seqs = [p.seq for p in outbox.pending()]
    agent.set_consent(ConsentState(profiling=True))  # telemetry and exact location withdrawn
    waiting = {p.seq: decode(p.topic, p.payload).body for p in outbox.pending()}
    assert list(waiting) == seqs[1:]  # telemetry is gone; the others keep their seq
    trip = waiting[seqs[1]]
    assert isinstance(trip, TripSummaryV1) and trip.start_location == GeoPoint(lat=31.23, lon=121.48)
    assert trip.feature_usage  # profiling is still granted
    events = waiting[seqs[2]]
    assert isinstance(events, EventsV1) and events.events[0].location == GeoPoint(lat=31.23, lon=121.48)
    assert outbox.stored_bytes == sum(len(p.payload) for p in outbox.pending())
