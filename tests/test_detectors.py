"""Harsh-event detectors on synthetic signals with known events."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import signals as vss
from edge_agent.detectors import DEFAULT_THRESHOLDS, Direction, EventDetectors, RunDetector, Threshold
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
    assert [e.peak for e in events] == [5.0, 3.5, 4.6]


def test_short_spikes_are_not_events() -> None:
    lon = _pulse(300, 50, 5, -6.0)  # 0.4 s: below the 0.5 s minimum
    assert _run(EventDetectors(), _block(lon), chunk=300) == []


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
    detector = RunDetector(Threshold(EventKind.HARSH_BRAKE, vss.ACCEL_LONGITUDINAL, 3.4, Direction.BELOW))
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
    assert event.kind is EventKind.HARSH_CORNER and event.peak == 5.0
