"""The simulator: seeded, physically consistent, with ground truth the edge can be checked against."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge_agent import signals as vss
from edge_agent.detectors import DEFAULT_THRESHOLDS
from edge_agent.protocol import EventKind
from simulators.fleet import build_fleet, injected_counts, simulate_fleet
from simulators.personas import PersonaName
from simulators.vehicle import DT_S, Powertrain, VehicleSpec, initial_state, simulate_day

DAY = date(2026, 11, 2)


def _day(persona: PersonaName, seed: int, powertrain: Powertrain = Powertrain.ICE) -> list:
    spec = VehicleSpec("car1", persona, powertrain)
    rng = np.random.default_rng(seed)
    trips, _ = simulate_day(spec, DAY, initial_state(spec, rng), rng)
    return trips


def test_same_seed_same_trips() -> None:
    a, b = _day(PersonaName.AGGRESSIVE, 3), _day(PersonaName.AGGRESSIVE, 3)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.events == y.events
        for name in x.block.signals:
            np.testing.assert_array_equal(x.block.signals[name], y.block.signals[name])
    c = _day(PersonaName.AGGRESSIVE, 4)
    assert [t.start for t in c] != [t.start for t in a]


@pytest.mark.parametrize("persona", list(PersonaName))
def test_frames_are_10hz_with_the_required_signals(persona: PersonaName) -> None:
    for trip in _day(persona, 11):
        t = trip.block.t
        assert np.allclose(np.diff(t), DT_S)
        for name in (
            vss.SPEED,
            vss.ACCEL_LONGITUDINAL,
            vss.ACCEL_LATERAL,
            vss.YAW_RATE,
            vss.ENGINE_SPEED,
            vss.FUEL_LEVEL,
            vss.ODOMETER,
            vss.LATITUDE,
            vss.LONGITUDE,
        ):
            assert name in trip.block.signals, name
        assert trip.block.signals[vss.SPEED].min() >= 0
        assert np.all(np.diff(trip.block.signals[vss.ODOMETER]) >= 0)


def test_ev_offers_power_and_charge() -> None:
    trip = _day(PersonaName.CALM_COMMUTER, 5, Powertrain.EV)[0]
    assert vss.MOTOR_POWER in trip.block.signals and vss.STATE_OF_CHARGE in trip.block.signals
    assert vss.ENGINE_SPEED not in trip.block.signals


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_speed_is_the_integral_of_acceleration(seed: int) -> None:
    for trip in _day(PersonaName.AGGRESSIVE, seed):
        speed = trip.block.signals[vss.SPEED] / 3.6
        accel = trip.block.signals[vss.ACCEL_LONGITUDINAL]
        # over 10 s windows, sensor noise (0.08 m/s^2 per sample, 0.2 km/h on speed) adds up to ~0.11 m/s sd
        window = 100
        m = accel.size // window
        gained = accel[: m * window].reshape(m, window).sum(axis=1) * DT_S
        ends = speed[window - 1 :: window][:m]
        change = ends - np.concatenate(([0.0], ends[:-1]))
        assert np.max(np.abs(gained - change)) < 0.7
        assert trip.distance_km == pytest.approx(
            trip.block.signals[vss.ODOMETER][-1] - trip.block.signals[vss.ODOMETER][0], abs=0.05
        )


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_outside_injected_events_signals_stay_below_thresholds(seed: int) -> None:
    limits = {t.kind: abs(t.value) for t in DEFAULT_THRESHOLDS if t.signal != vss.YAW_RATE}
    for trip in _day(PersonaName.AGGRESSIVE, seed):
        t = trip.block.t
        inside = np.zeros(t.size, dtype=bool)
        for e in trip.events:
            inside |= (t >= e.start - 0.31) & (t <= e.end + 0.31)
        lon = trip.block.signals[vss.ACCEL_LONGITUDINAL][~inside]
        lat = trip.block.signals[vss.ACCEL_LATERAL][~inside]
        assert lon.max() < limits[EventKind.HARSH_ACCEL] - 0.2
        assert -lon.min() < limits[EventKind.HARSH_BRAKE] - 0.2
        assert np.abs(lat).max() < limits[EventKind.HARSH_CORNER] - 0.2
        for e in trip.events:
            assert e.end - e.start >= 0.9 - 1e-6  # ten samples at least


def test_personas_differ_as_described() -> None:
    specs = build_fleet(40, seed=9)
    trips = simulate_fleet(specs, DAY, 2, seed=9)
    per_km: dict[PersonaName, list[float]] = {p: [] for p in PersonaName}
    night: dict[PersonaName, list[float]] = {p: [] for p in PersonaName}
    for spec in specs:
        ts = trips[spec.vehicle_id]
        km = sum(t.distance_km for t in ts)
        per_km[spec.persona].append(sum(injected_counts(ts).values()) / km * 100)
        tz = ZoneInfo(spec.timezone)
        hours = [datetime.fromtimestamp(t.start, UTC).astimezone(tz).hour for t in ts]
        night[spec.persona].append(np.mean([h >= 21 or h < 5 for h in hours]))
    assert np.mean(per_km[PersonaName.AGGRESSIVE]) > 5 * np.mean(per_km[PersonaName.CALM_COMMUTER])
    assert np.mean(night[PersonaName.NIGHT_DRIVER]) == 1.0
    assert np.mean(night[PersonaName.CALM_COMMUTER]) == 0.0
    highway = [t for s in specs if s.persona is PersonaName.HIGHWAY for t in trips[s.vehicle_id]]
    assert np.mean([t.distance_km for t in highway]) > 80
