"""Harsh-event detectors on synthetic signals with known events."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import signals as vss
from edge_agent.detectors import (
    DEFAULT_THRESHOLDS,
    Direction,
    EventDetectors,
    RunDetector,
    Threshold,
    VehicleClass,
    thresholds_for,
    with_speed_limit,
)
from edge_agent.protocol import EventKind
from edge_agent.signals import SignalBlock

DT = 0.1
T0 = 1_700_000_000.0


def _block(lon: np.ndarray, lat: np.ndarray | None = None) -> SignalBlock:
    t = T0 + np.arange(lon.size) * DT
    cols = {vss.ACCEL_LONGITUDINAL: lon}
    if lat is not None:
        cols[vss.ACCEL_LATERAL] = lat
    return SignalBlock(t, cols)


def _pulse(n: int, at: int, length: int, value: float, base: np.ndarray | None = None) -> np.ndarray:
    x = np.zeros(n) if base is None else base
    x[at : at + length] = value
    return x


def _run(detectors: EventDetectors, block: SignalBlock, chunk: int) -> list:
    found = []
    for start in range(0, len(block), chunk):
        found += detectors.update(block.slice(start, start + chunk))
    return found + detectors.flush()


def test_known_events_exact_counts_and_times() -> None:
    n = 1000
    lon = _pulse(n, 100, 15, -5.0)  # brake 10.0 s .. 11.4 s
    lon = _pulse(n, 400, 8, 3.5, lon)  # accel 40.0 .. 40.7
    lat = _pulse(n, 700, 20, -4.6)  # corner 70.0 .. 71.9 (either side counts)
    events = _run(EventDetectors(), _block(lon, lat), chunk=n)
    assert [e.kind for e in events] == [EventKind.HARSH_BRAKE, EventKind.HARSH_ACCEL, EventKind.HARSH_CORNER]
    assert [round(e.start - T0, 3) for e in events] == [10.0, 40.0, 70.0]
    assert [round(e.end - T0, 3) for e in events] == [11.4, 40.7, 71.9]
    assert [e.peak for e in events] == [-5.0, 3.5, -4.6]  # the most extreme signed value


def test_short_spikes_are_not_events() -> None:
    lon = _pulse(300, 50, 2, -6.0)  # 0.2 s at -6 m/s^2: an impulse of 1.2 m/s, below the brake's 1.4
    assert _run(EventDetectors(), _block(lon), chunk=300) == []
    lon = _pulse(300, 50, 3, -6.0)  # 0.3 s: 1.8 m/s lost in 0.3 s is a harsh brake
    assert [e.kind for e in _run(EventDetectors(), _block(lon), chunk=300)] == [EventKind.HARSH_BRAKE]


def test_below_threshold_is_not_an_event() -> None:
    lon = _pulse(300, 50, 50, -3.3)  # just under 3.4 m/s^2 for 5 s
    assert _run(EventDetectors(), _block(lon), chunk=300) == []


def test_short_dip_does_not_split_an_event() -> None:
    lon = _pulse(400, 100, 20, -5.0)
    lon[110:112] = -2.0  # 0.2 s dip inside the manoeuvre
    events = _run(EventDetectors(), _block(lon), chunk=400)
    assert len(events) == 1 and round(events[0].duration_s, 3) == 1.9


def test_long_dip_splits_into_two_events() -> None:
    lon = _pulse(400, 100, 10, -5.0)
    lon = _pulse(400, 115, 10, -5.0, lon)  # 0.5 s apart: two manoeuvres
    assert len(_run(EventDetectors(), _block(lon), chunk=400)) == 2


def test_missing_samples_are_not_events() -> None:
    lon = _pulse(300, 50, 30, -5.0)
    lon[60:62] = np.nan  # a short gap inside stays one event
    lon[200:260] = np.nan
    events = _run(EventDetectors(), _block(lon), chunk=300)
    assert len(events) == 1


def test_signal_absent_gives_no_events() -> None:
    block = SignalBlock(T0 + np.arange(10) * DT, {vss.SPEED: np.zeros(10)})
    assert EventDetectors().update(block) == []


def test_run_ending_at_block_end_closes_on_flush() -> None:
    detector = RunDetector(Threshold(EventKind.HARSH_BRAKE, vss.ACCEL_LONGITUDINAL, -3.4, Direction.BELOW))
    assert detector.update(_block(_pulse(100, 90, 10, -5.0))) == []
    (event,) = detector.flush()
    assert round(event.start - T0, 3) == 9.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunks=st.lists(st.integers(1, 400), min_size=1, max_size=30))
def test_result_does_not_depend_on_chunking(seed: int, chunks: list[int]) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    lon = rng.normal(0, 0.1, n)
    lat = rng.normal(0, 0.1, n)
    for _ in range(8):
        at, length = int(rng.integers(0, n - 40)), int(rng.integers(1, 40))
        lon[at : at + length] = rng.choice([-6.0, 5.0]) * rng.uniform(0.5, 1.2)
        at, length = int(rng.integers(0, n - 40)), int(rng.integers(1, 40))
        lat[at : at + length] = rng.choice([-6.0, 6.0]) * rng.uniform(0.5, 1.2)
    block = _block(lon, lat)
    whole = _run(EventDetectors(), block, chunk=n)
    pieces: list = []
    detectors = EventDetectors()
    start = 0
    for size in chunks * (n // max(sum(chunks), 1) + 1):
        if start >= n:
            break
        pieces += detectors.update(block.slice(start, start + size))
        start += size
    pieces += detectors.flush()
    key = lambda e: (e.start, e.kind)  # noqa: E731
    assert sorted(pieces, key=key) == sorted(whole, key=key)


def test_thresholds_are_configurable() -> None:
    strict = tuple(
        Threshold(t.kind, t.signal, 2.0, t.direction, t.min_duration_s)
        if t.kind is EventKind.HARSH_BRAKE
        else t
        for t in DEFAULT_THRESHOLDS
    )
    lon = _pulse(300, 50, 30, -2.5)
    assert _run(EventDetectors(), _block(lon), chunk=300) == []
    assert len(_run(EventDetectors(strict), _block(lon), chunk=300)) == 1


@pytest.mark.parametrize("value", [-5.0, 5.0])
def test_magnitude_direction_counts_both_sides(value: float) -> None:
    lat = _pulse(200, 20, 10, value)
    (event,) = _run(EventDetectors(), _block(np.zeros(200), lat), chunk=200)
    assert event.kind is EventKind.HARSH_CORNER and event.peak == value


def _speed_block(speed_kmh: np.ndarray, t0: float = T0) -> SignalBlock:
    return SignalBlock(t0 + np.arange(speed_kmh.size) * DT, {vss.SPEED: speed_kmh})


def test_speeding_needs_the_limit_held_for_ten_seconds() -> None:
    speed = np.full(3000, 100.0)
    speed[500:650] = 130.0  # 15 s over 120 km/h: an event
    speed[1000:1080] = 140.0  # 8 s: too short
    speed[2000:2200] = 125.0  # 20 s, with a 1 s dip that does not split it
    speed[2100:2110] = 118.0
    events = [e for e in _run(EventDetectors(), _speed_block(speed), 700) if e.kind is EventKind.SPEEDING]
    assert [(round(e.start - T0, 1), round(e.end - T0, 1), e.peak) for e in events] == [
        (50.0, 64.9, 130.0),
        (200.0, 219.9, 125.0),
    ]


def test_speeding_limit_is_configurable_and_can_be_off() -> None:
    speed = np.full(400, 100.0)
    assert not [e for e in _run(EventDetectors(), _speed_block(speed), 400) if e.kind is EventKind.SPEEDING]
    strict = with_speed_limit(DEFAULT_THRESHOLDS, 90.0)
    assert [e.kind for e in _run(EventDetectors(strict), _speed_block(speed), 400)] == [EventKind.SPEEDING]
    assert all(t.kind is not EventKind.SPEEDING for t in thresholds_for(speed_limit_kmh=None))


def test_idling_after_five_minutes_standing() -> None:
    speed = np.full(12_000, 30.0)
    speed[1000:4100] = 0.0  # 310 s standing
    speed[6000:8000] = 0.0  # 200 s: a long red light, not idling
    (event,) = [e for e in _run(EventDetectors(), _speed_block(speed), 999) if e.kind is EventKind.IDLING]
    assert (round(event.start - T0, 1), round(event.duration_s, 1)) == (100.0, 309.9)


def test_night_driving_in_local_time() -> None:
    from datetime import UTC, datetime

    # 21:30-22:30 local at UTC+8 = 13:30-14:30 UTC; moving all along: 30 minutes of it are night
    t0 = datetime(2026, 11, 2, 13, 30, tzinfo=UTC).timestamp()
    block = _speed_block(np.full(36_000, 50.0), t0)
    night = [
        e
        for e in _run(EventDetectors(utc_offset_s=8 * 3600), block, 5000)
        if e.kind is EventKind.NIGHT_DRIVING
    ]
    assert [(round(e.start - t0), round(e.duration_s)) for e in night] == [(1800, 1800)]
    assert not [e for e in _run(EventDetectors(), block, 5000) if e.kind is EventKind.NIGHT_DRIVING]  # UTC


def test_cornering_from_yaw_rate_only_without_lateral_acceleration() -> None:
    yaw = _pulse(300, 100, 20, 40.0)  # 40 deg/s for 2 s
    t = T0 + np.arange(300) * DT
    yaw_only = SignalBlock(t, {vss.YAW_RATE: yaw})
    (event,) = _run(EventDetectors(), yaw_only, 300)
    assert (event.kind, event.unit, event.peak) == (EventKind.HARSH_CORNER, "deg/s", 40.0)
    with_lateral = SignalBlock(t, {vss.YAW_RATE: yaw, vss.ACCEL_LATERAL: np.zeros(300)})
    assert _run(EventDetectors(), with_lateral, 300) == []  # the accelerometer is the better witness


@pytest.mark.parametrize(
    ("vehicle_class", "fires"), [("car", False), ("suv", False), ("van", True), ("truck", True)]
)
def test_thresholds_per_vehicle_class(vehicle_class: str, fires: bool) -> None:
    lon = _pulse(300, 50, 20, -3.1)  # a firm stop: harsh for a van or truck, not for a car
    events = _run(EventDetectors(thresholds_for(VehicleClass(vehicle_class))), _block(lon), 300)
    assert bool(events) is fires
