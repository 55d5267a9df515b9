"""Trip segmentation and summaries."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from edge_agent import signals as vss
from edge_agent.agent import EdgeAgent
from edge_agent.outbox import Outbox
from edge_agent.protocol import TripSummaryV1, decode
from edge_agent.signals import SignalBlock
from edge_agent.trips import TripAccumulator, TripSettings


def _constant(t0: float, seconds: float, speed_kmh: float) -> SignalBlock:
    t = t0 + np.arange(int(seconds * 10)) * 0.1
    return SignalBlock(t, {vss.SPEED: np.full(t.size, speed_kmh)})


def test_distance_duration_idle_at_constant_speed() -> None:
    acc = TripAccumulator.begin(TripSettings(), 1_000.0)
    acc.add(_constant(1_000.0, 360, 60.0))  # 6 minutes at 60 km/h
    acc.add(_constant(1_360.0, 60, 0.0))  # then 1 minute standing
    s = acc.summary()
    assert s.duration_s == pytest.approx(419.9)
    assert s.distance_km == pytest.approx(6.0, abs=0.01)
    assert s.idle_s == pytest.approx(60.0, abs=0.11)
    assert s.moving_s == pytest.approx(359.9, abs=0.11)
    assert s.max_speed_kmh == 60.0


def test_night_share_uses_the_vehicle_time_zone() -> None:
    # 21:30 to 22:30 in Shanghai (UTC+8): half of the hour is night
    start = datetime(2026, 11, 2, 13, 30, tzinfo=UTC).timestamp()
    for tz, expected in (("Asia/Shanghai", 0.5), ("UTC", 0.0)):
        acc = TripAccumulator.begin(TripSettings(timezone=tz), start)
        acc.add(_constant(start, 3600, 50.0))
        assert acc.summary().night_share == pytest.approx(expected, abs=0.001)


def test_gaps_cut_trips(tmp_path) -> None:
    outbox = Outbox(tmp_path / "o.db", "car1")
    agent = EdgeAgent(outbox, trip_settings=TripSettings(trip_gap_s=300))
    first = _constant(0.0, 120, 30.0)
    second = _constant(120.0 + 600, 120, 30.0)  # 10 minutes later: a new trip
    joined = SignalBlock(
        np.concatenate([first.t, second.t]),
        {vss.SPEED: np.concatenate([first.signals[vss.SPEED], second.signals[vss.SPEED]])},
    )
    agent.run([joined.slice(0, 1000), joined.slice(1000, 2400)])
    bodies = [decode(i.topic, i.payload).body for i in outbox.pending(limit=100)]
    trips = [b for b in bodies if isinstance(b, TripSummaryV1)]
    assert [round(b.distance_km, 2) for b in trips] == [1.0, 1.0]
    assert [b.started_at.timestamp() for b in trips] == [0.0, 720.0]


def test_too_short_trip_is_dropped(tmp_path) -> None:
    outbox = Outbox(tmp_path / "o.db", "car1")
    agent = EdgeAgent(outbox, trip_settings=TripSettings(min_trip_s=30))
    agent.run([_constant(0.0, 10, 5.0)])
    assert outbox.depth() == 0


def test_missing_speed_samples_do_not_poison_the_summary() -> None:
    block = _constant(0.0, 100, 36.0)
    block.signals[vss.SPEED][10:20] = np.nan  # type: ignore[index]
    acc = TripAccumulator.begin(TripSettings(), 0.0)
    acc.add(block)
    s = acc.summary()
    assert not math.isnan(s.distance_km) and s.distance_km == pytest.approx(1.0, abs=0.002)


def test_feature_usage_matches_the_simulator(tmp_path) -> None:
    from datetime import date

    from simulators.personas import PersonaName
    from simulators.vehicle import VehicleSpec, initial_state, simulate_day

    spec = VehicleSpec("car1", PersonaName.HIGHWAY)
    rng = np.random.default_rng(4)
    trips, _ = simulate_day(spec, date(2026, 11, 2), initial_state(spec, rng), rng)
    outbox = Outbox(tmp_path / "o.db", "car1")
    EdgeAgent(outbox).run(t.block.slice(i, i + 777) for t in trips for i in range(0, len(t.block), 777))
    summaries = [b for b in (decode(i.topic, i.payload).body for i in outbox.pending(limit=1000))
                 if isinstance(b, TripSummaryV1)]  # fmt: skip
    assert len(summaries) == len(trips)
    for summary, trip in zip(summaries, trips, strict=True):
        assert set(summary.feature_usage) == set(trip.features)
        for name, (activations, active_s) in trip.features.items():
            usage = summary.feature_usage[name]
            assert usage.activations == activations, name
            assert usage.active_s == pytest.approx(active_s, abs=0.11), name
    assert any(u.activations for s in summaries for u in s.feature_usage.values())


def test_energy_and_fuel_litres() -> None:
    n = 36_001  # one hour at 10 Hz
    t = np.arange(n) * 0.1
    ev = SignalBlock(t, {vss.SPEED: np.full(n, 60.0), vss.MOTOR_POWER: np.full(n, 20.0)})
    acc = TripAccumulator.begin(TripSettings(), 0.0)
    acc.add(ev)
    assert acc.summary().energy_used_kwh == pytest.approx(20.0)
    fuel = SignalBlock(t, {vss.SPEED: np.full(n, 60.0), vss.FUEL_LEVEL: np.linspace(80.0, 70.0, n)})
    for settings, litres in ((TripSettings(tank_capacity_l=50.0), 5.0), (TripSettings(), None)):
        acc = TripAccumulator.begin(settings, 0.0)
        acc.add(fuel)
        s = acc.summary()
        assert s.fuel_used_pct == pytest.approx(10.0) and s.fuel_used_l == litres


def test_fault_codes_are_sent_once_and_listed_in_the_trip(tmp_path) -> None:
    from edge_agent.protocol import DtcV1

    outbox = Outbox(tmp_path / "o.db", "car1")
    agent = EdgeAgent(outbox)
    first = SignalBlock(np.arange(600) * 0.1, {vss.SPEED: np.full(600, 30.0)}, dtcs=((12.0, "P0420"),))
    again = SignalBlock(60 + np.arange(600) * 0.1, {vss.SPEED: np.full(600, 30.0)},
                        dtcs=((70.0, "P0420"), (80.0, "U0100")))  # fmt: skip
    agent.run([first, again])
    bodies = [decode(i.topic, i.payload).body for i in outbox.pending(limit=100)]
    reports = [r.code for b in bodies if isinstance(b, DtcV1) for r in b.codes]
    assert reports == ["P0420", "U0100"]  # each code reported once, as soon as it appeared
    (trip,) = [b for b in bodies if isinstance(b, TripSummaryV1)]
    assert trip.dtcs == ["P0420", "U0100"]


def test_block_slices_keep_each_fault_code_once() -> None:
    block = SignalBlock(
        np.arange(10.0), {}, dtcs=((-1.0, "P0001"), (3.5, "P0002"), (9.0, "P0003"), (20.0, "P0004"))
    )
    pieces = [block.slice(i, i + 3) for i in range(0, 10, 3)]
    assert [d for p in pieces for d in p.dtcs] == list(block.dtcs)


def test_time_going_backwards_starts_a_new_trip(tmp_path) -> None:
    outbox = Outbox(tmp_path / "o.db", "car1")
    agent = EdgeAgent(outbox)
    later = _constant(10_000.0, 120, 30.0)
    earlier = _constant(9_000.0, 120, 30.0)  # the clock was set back: not a negative-length trip
    jumpy = SignalBlock(np.concatenate([later.t[:600], earlier.t]), {vss.SPEED: np.full(1800, 30.0)})
    agent.run([later.slice(600, 1200), jumpy])  # back in time between blocks and inside a block
    trips = [
        b for b in (decode(i.topic, i.payload).body for i in outbox.pending()) if isinstance(b, TripSummaryV1)
    ]
    assert len(trips) == 3
    assert all(t.duration_s >= 0 and t.idle_s >= 0 for t in trips)


def test_telemetry_batches_are_cut_at_batch_s_even_from_one_big_block(tmp_path) -> None:
    from edge_agent.agent import TelemetrySettings
    from edge_agent.protocol import TelemetryV1

    outbox = Outbox(tmp_path / "o.db", "car1", max_bytes=1 << 30)
    agent = EdgeAgent(outbox, telemetry=TelemetrySettings(period_s=1.0, batch_s=60.0))
    n = 2 * 3600 * 10  # a two-hour trip handed over in one block
    block = SignalBlock(np.arange(n) * 0.1, {vss.SPEED: np.full(n, 100.0), vss.LATITUDE: np.full(n, 31.2)})
    agent.run([block])
    batches = [b for b in (decode(i.topic, i.payload).body for i in outbox.pending(limit=1000))
               if isinstance(b, TelemetryV1)]  # fmt: skip
    assert len(batches) == 120
    assert all(len(b.t_ms) == 60 and b.t_ms[-1] == 59_000 for b in batches)
    assert [b.t0.timestamp() for b in batches] == [60.0 * i for i in range(120)]


def test_oversize_messages_are_split_not_lost(tmp_path) -> None:
    from datetime import UTC, datetime, timedelta

    from edge_agent.protocol import DrivingEvent, EventKind, EventsV1

    outbox = Outbox(tmp_path / "o.db", "car1")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events = [
        DrivingEvent(kind=EventKind.HARSH_BRAKE, trip_id="T1", start=t0 + timedelta(seconds=i),
                     end=t0 + timedelta(seconds=i + 1), peak=-4.5, peak_unit="m/s^2")
        for i in range(1000)
    ]  # fmt: skip
    EdgeAgent(outbox).send(EventsV1(events=events))  # about 190 KB as one message: over the 128 KB limit
    sent = [decode(i.topic, i.payload).body for i in outbox.pending(limit=100)]
    assert len(sent) > 1
    assert [e for b in sent if isinstance(b, EventsV1) for e in b.events] == events
