"""Seeded vehicle simulator: whole trips of 10 Hz VSS frames with ground truth.

A trip is built from manoeuvres of constant acceleration (pull away, cruise, stop, idle), so speed is the
exact integral of the longitudinal acceleration and every injected harsh event has an exact start and end.
Curves are laid over the cruise phases as lateral-acceleration pulses; the yaw rate follows from
``a_lat = v * yaw``. Position, odometer, engine speed or motor power and fuel or charge follow from the
motion. Sensor noise is added last; the ground truth (persona, injected events, true distance and idle
time) is kept beside the signals.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import numpy as np

from edge_agent import signals as vss
from edge_agent.protocol import ConsentState, EventKind
from edge_agent.signals import FloatArray, SignalBlock

from .personas import PERSONAS, Persona, PersonaName

DT_S = 0.1
HARSH_BRAKE_MS2 = (4.5, 6.5)
HARSH_ACCEL_MS2 = (3.8, 5.0)
HARSH_CORNER_MS2 = (5.0, 7.0)
HARSH_DURATION_S = (1.0, 2.0)
ACCEL_NOISE_MS2 = 0.08
#: curves and lateral pulses need at least this speed (m/s) to be physical
MIN_CURVE_SPEED_MS = 20 / 3.6
RAMP_SAMPLES = 2
#: fault codes the simulator injects (SAE J2012): catalyst, lean mixture, misfire, lost ECM communication,
#: battery voltage, tyre pressure sensor
FAULT_CODES = ("P0420", "P0171", "P0300", "U0100", "P0562", "C0750")


class HealthFault(StrEnum):
    """Vehicle-health faults the simulator can inject (ground truth for the anomaly detector)."""

    OVERHEATING = "overheating"  # coolant climbs past 110 °C
    CHARGING = "charging"  # the alternator stops charging: 12 V battery sags
    MISFIRE = "misfire"  # engine speed turns ragged


class Powertrain(StrEnum):
    """What moves the car; decides which energy signals it offers."""

    ICE = "ice"
    EV = "ev"


@dataclass(frozen=True, slots=True)
class InjectedEvent:
    """A harsh event the simulator put into the signals: ``peak`` is its magnitude in m/s^2."""

    kind: EventKind
    start: float
    end: float
    peak: float


@dataclass(frozen=True, slots=True)
class SimulatedTrip:
    """One trip's signals and what really happened in it."""

    block: SignalBlock
    persona: PersonaName
    events: tuple[InjectedEvent, ...]
    distance_km: float
    idle_s: float
    #: per feature signal: (activations, seconds on)
    features: dict[str, tuple[int, float]] = field(default_factory=dict)
    dtcs: tuple[tuple[float, str], ...] = ()
    #: an injected health fault and the time it starts, if any
    health_fault: tuple[HealthFault, float] | None = None

    @property
    def start(self) -> float:
        """Epoch seconds of the first sample."""
        return float(self.block.t[0])

    @property
    def end(self) -> float:
        """Epoch seconds of the last sample."""
        return float(self.block.t[-1])


@dataclass(frozen=True, slots=True)
class VehicleSpec:
    """A simulated vehicle: identity, driver, powertrain and where it lives."""

    vehicle_id: str
    persona: PersonaName
    powertrain: Powertrain = Powertrain.ICE
    model: str = "DS-Compact"
    home: tuple[float, float] = (31.2304, 121.4737)
    timezone: str = "Asia/Shanghai"
    #: probability that a trip reports a new fault code
    fault_rate: float = 0.05
    #: probability that a trip develops a health fault (overheating, charging, misfire)
    health_fault_rate: float = 0.05
    #: what the owner agreed may leave the car
    consent: ConsentState = field(
        default_factory=lambda: ConsentState(telemetry=True, location=True, profiling=True)
    )


@dataclass(frozen=True, slots=True)
class VehicleState:
    """What carries over from one trip to the next."""

    lat: float
    lon: float
    heading_rad: float = 0.0
    odometer_km: float = 12_000.0
    energy_pct: float = 80.0


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


class _Longitudinal:
    """Builds the piecewise-constant acceleration trace and records injected events."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.accels: list[float] = []
        self.counts: list[int] = []
        self.n = 0
        self.v = 0.0
        self.events: list[tuple[EventKind, int, int, float]] = []

    def add(self, accel: float, samples: int) -> None:
        if samples <= 0:
            return
        self.accels.append(accel)
        self.counts.append(samples)
        self.n += samples
        self.v = max(0.0, self.v + accel * samples * DT_S)

    def change_speed(self, target: float, rate: float) -> None:
        """Accelerate or brake to ``target`` m/s at about ``rate`` m/s^2, landing on it exactly."""
        delta = target - self.v
        samples = max(1, round(abs(delta) / (rate * DT_S)))
        accel = delta / (samples * DT_S)
        self.add(accel, samples)
        self.v = target

    def harsh(self, kind: EventKind, magnitude: float, duration_s: float) -> bool:
        samples = round(duration_s / DT_S)
        if samples * DT_S < HARSH_DURATION_S[0]:
            return False
        start = self.n
        self.add(magnitude if kind is EventKind.HARSH_ACCEL else -magnitude, samples)
        self.events.append((kind, start, self.n - 1, magnitude))
        return True

    def trace(self) -> tuple[FloatArray, FloatArray]:
        """Acceleration and speed per sample; speed computed per segment so that stops are exactly 0."""
        accels = np.asarray(self.accels, dtype=np.float64)
        counts = np.asarray(self.counts, dtype=np.int64)
        seg_start_v = np.concatenate([[0.0], np.cumsum(accels * counts * DT_S)[:-1]])
        offsets = np.arange(self.n) - np.repeat(np.cumsum(counts) - counts, counts)
        speed = np.repeat(seg_start_v, counts) + np.repeat(accels, counts) * (offsets + 1) * DT_S
        speed[speed < 1e-6] = 0.0
        return np.repeat(accels, counts), speed


def _plan_longitudinal(persona: Persona, minutes: float, rng: np.random.Generator) -> _Longitudinal:
    plan = _Longitudinal(rng)
    target_samples = int(minutes * 60 / DT_S)
    mean_leg_s = 600.0 / max(persona.stops_per_10min, 0.05)
    while plan.n < target_samples:
        cruise = _uniform(rng, persona.cruise_kmh) / 3.6
        plan.change_speed(cruise, _uniform(rng, persona.accel_ms2))
        leg_s = min(max(20.0, float(rng.exponential(mean_leg_s))), (target_samples - plan.n) * DT_S + 20)
        elapsed = 0.0
        while elapsed < leg_s:
            piece_s = _uniform(rng, (10.0, 40.0))
            plan.add(0.0, round(piece_s / DT_S))
            elapsed += piece_s
            p_brake = persona.harsh_brake_per_min * piece_s / 60
            p_accel = persona.harsh_accel_per_min * piece_s / 60
            draw = rng.random()
            if draw < p_brake and plan.v >= 40 / 3.6:
                magnitude = _uniform(rng, HARSH_BRAKE_MS2)
                duration = min(_uniform(rng, HARSH_DURATION_S), (plan.v - 10 / 3.6) / magnitude)
                if plan.harsh(EventKind.HARSH_BRAKE, magnitude, duration):
                    plan.add(0.0, round(_uniform(rng, (2.0, 5.0)) / DT_S))
                    plan.change_speed(cruise, _uniform(rng, persona.accel_ms2))
            elif draw < p_brake + p_accel:
                magnitude = _uniform(rng, HARSH_ACCEL_MS2)
                duration = min(_uniform(rng, HARSH_DURATION_S), (30 / 3.6) / magnitude)
                if plan.harsh(EventKind.HARSH_ACCEL, magnitude, duration):
                    plan.add(0.0, round(_uniform(rng, (2.0, 5.0)) / DT_S))
                    plan.change_speed(cruise, _uniform(rng, persona.decel_ms2))
        plan.change_speed(0.0, _uniform(rng, persona.decel_ms2))
        plan.add(0.0, round(_uniform(rng, persona.idle_s) / DT_S))
    return plan


def _lateral(
    persona: Persona, speed: FloatArray, rng: np.random.Generator
) -> tuple[FloatArray, list[tuple[EventKind, int, int, float]]]:
    """Lay curves over the speed trace: trapezoidal lateral pulses where the car moves fast enough."""
    n = speed.shape[0]
    lateral = np.zeros(n)
    events: list[tuple[EventKind, int, int, float]] = []
    k = 0
    while True:
        gap_s = _uniform(rng, (8.0, 45.0))
        k += round(gap_s / DT_S)
        harsh = rng.random() < persona.harsh_corner_per_min * gap_s / 60
        length_s = _uniform(rng, HARSH_DURATION_S) if harsh else _uniform(rng, (3.0, 10.0))
        plateau = round(length_s / DT_S)
        total = plateau + 2 * RAMP_SAMPLES
        if k + total >= n:
            break
        if speed[k : k + total].min() < MIN_CURVE_SPEED_MS:
            continue
        magnitude = _uniform(rng, HARSH_CORNER_MS2) if harsh else _uniform(rng, persona.curve_lateral_ms2)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        ramp = np.linspace(0.0, 1.0, RAMP_SAMPLES + 2)[1:-1]
        shape = np.concatenate([ramp, np.ones(plateau), ramp[::-1]])
        lateral[k : k + total] = sign * magnitude * shape
        if harsh:
            events.append(
                (EventKind.HARSH_CORNER, k + RAMP_SAMPLES, k + RAMP_SAMPLES + plateau - 1, magnitude)
            )
        k += total
    return lateral, events


def simulate_trip(
    spec: VehicleSpec,
    start: float,
    minutes: float,
    state: VehicleState,
    rng: np.random.Generator,
) -> tuple[SimulatedTrip, VehicleState]:
    """Simulate one trip of about ``minutes`` starting at epoch ``start``; return it and the state after."""
    persona = PERSONAS[spec.persona]
    plan = _plan_longitudinal(persona, minutes, rng)
    accel, speed = plan.trace()
    n = accel.shape[0]
    lateral, corner_events = _lateral(persona, speed, rng)
    t = (start + np.arange(n) * DT_S).astype(np.float64)

    moving = speed > 0.5
    yaw_rad = np.where(moving, lateral / np.maximum(speed, 0.5), 0.0)
    heading = state.heading_rad + np.cumsum(yaw_rad) * DT_S
    step = speed * DT_S
    north = np.cumsum(step * np.cos(heading))
    east = np.cumsum(step * np.sin(heading))
    lat = state.lat + north / 111_320.0
    lon = state.lon + east / (111_320.0 * math.cos(math.radians(state.lat)))
    odometer = state.odometer_km + np.cumsum(step) / 1000.0
    speed_kmh = speed * 3.6

    cols: dict[str, FloatArray] = {
        vss.SPEED: np.where(
            speed > 0, np.maximum(speed_kmh + rng.normal(0, persona.speed_noise_kmh, n), 0), 0
        ),
        vss.ACCEL_LONGITUDINAL: accel + rng.normal(0, ACCEL_NOISE_MS2, n),
        vss.ACCEL_LATERAL: lateral + rng.normal(0, ACCEL_NOISE_MS2, n),
        vss.YAW_RATE: np.degrees(yaw_rad) + rng.normal(0, 0.05, n),
        vss.ODOMETER: odometer,
        vss.LATITUDE: lat,
        vss.LONGITUDE: lon,
    }
    if spec.powertrain is Powertrain.ICE:
        gear = np.clip(1 + speed_kmh // 22, 1, 6)
        rpm = np.where(gear < 6, 800 + 2200 * (speed_kmh % 22) / 22, 800 + speed_kmh * 18)
        cols[vss.ENGINE_SPEED] = rpm
        litres_per_km = 0.065 * (1 + 0.15 * np.maximum(accel, 0))
        cols[vss.FUEL_LEVEL] = state.energy_pct - np.cumsum(litres_per_km * step / 1000) / 50.0 * 100
    else:
        force = 1600 * accel + 0.5 * 1.2 * 0.65 * speed**2 + 0.01 * 1600 * 9.81 * moving
        power_kw = np.maximum(force * speed / 1000 / 0.9, -60.0)
        cols[vss.MOTOR_POWER] = power_kw
        cols[vss.STATE_OF_CHARGE] = state.energy_pct - np.cumsum(power_kw * DT_S) / 3600 / 60.0 * 100
    for key in (vss.FUEL_LEVEL, vss.STATE_OF_CHARGE):
        if key in cols:
            cols[key] = np.clip(cols[key], 0, 100)

    health_fault = _health(spec, cols, t, speed_kmh, rng)
    features = _features(spec, accel, speed_kmh, rng)
    cols.update(features)
    dtcs: tuple[tuple[float, str], ...] = ()
    if rng.random() < spec.fault_rate:
        dtcs = ((float(t[int(rng.integers(0, n))]), str(rng.choice(FAULT_CODES))),)

    events = sorted(
        (
            InjectedEvent(kind, float(t[i0]), float(t[i1]), magnitude)
            for kind, i0, i1, magnitude in plan.events + corner_events
        ),
        key=lambda e: e.start,
    )
    trip = SimulatedTrip(
        block=SignalBlock(t, cols, dtcs),
        persona=spec.persona,
        events=tuple(events),
        distance_km=float(odometer[-1] - state.odometer_km),
        idle_s=float(np.count_nonzero(speed == 0) * DT_S),
        features={name: _usage(column) for name, column in features.items()},
        dtcs=dtcs,
        health_fault=health_fault,
    )
    energy_key = vss.FUEL_LEVEL if spec.powertrain is Powertrain.ICE else vss.STATE_OF_CHARGE
    after = replace(
        state,
        lat=float(lat[-1]),
        lon=float(lon[-1]),
        heading_rad=float(heading[-1] % (2 * math.pi)),
        odometer_km=float(odometer[-1]),
        energy_pct=float(cols[energy_key][-1]) if cols[energy_key][-1] > 15 else 90.0,
    )
    return trip, after


def _health(
    spec: VehicleSpec,
    cols: dict[str, FloatArray],
    t: FloatArray,
    speed_kmh: FloatArray,
    rng: np.random.Generator,
) -> tuple[HealthFault, float] | None:
    """Coolant temperature and 12 V battery voltage, with a health fault injected at random (in place)."""
    n = t.shape[0]
    elapsed = t - t[0]
    voltage: FloatArray = np.full(n, 14.2) + rng.normal(0, 0.05, size=n)  # alternator (or DC-DC) charging
    ice = spec.powertrain is Powertrain.ICE
    if ice:
        ambient = float(rng.uniform(5, 30))
        coolant: FloatArray = 90.0 - (90.0 - ambient) * np.exp(-elapsed / 150.0) + rng.normal(0, 0.3, n)
        cols[vss.ENGINE_SPEED] = cols[vss.ENGINE_SPEED] + rng.normal(0, 10, n)
    fault = None
    if rng.random() < spec.health_fault_rate and n > 6000:
        kinds = [HealthFault.CHARGING] + ([HealthFault.OVERHEATING, HealthFault.MISFIRE] if ice else [])
        kind = kinds[int(rng.integers(0, len(kinds)))]
        onset = int(rng.integers(int(0.3 * n), int(0.6 * n)))
        since = np.clip(elapsed - elapsed[onset], 0, None)
        after = np.arange(n) >= onset
        if kind is HealthFault.OVERHEATING:
            peak = float(rng.uniform(115, 125))
            coolant = np.where(after, coolant + (peak - 90.0) * np.minimum(since / 300.0, 1.0), coolant)
        elif kind is HealthFault.CHARGING:
            voltage = np.where(
                after, 12.3 - 0.4 * np.minimum(since / 900.0, 1.0) + rng.normal(0, 0.03, n), voltage
            )
        else:
            cols[vss.ENGINE_SPEED] = np.where(
                after, cols[vss.ENGINE_SPEED] + rng.normal(0, 180, n), cols[vss.ENGINE_SPEED]
            )
        fault = (kind, float(t[onset]))
    cols[vss.BATTERY_VOLTAGE] = voltage
    if ice:
        cols[vss.COOLANT_TEMPERATURE] = coolant
    return fault


def _usage(column: FloatArray) -> tuple[int, float]:
    """Ground truth of a feature column: times switched on (on at the start counts) and seconds on."""
    on = column > 0
    starts = int(np.count_nonzero(on & ~np.concatenate(([False], on[:-1]))))
    return starts, float(np.count_nonzero(on[1:]) * DT_S)  # the first sample closes no interval


def _features(
    spec: VehicleSpec, accel: FloatArray, speed_kmh: FloatArray, rng: np.random.Generator
) -> dict[str, FloatArray]:
    """Comfort and assistance features: cruise control on fast steady legs, A/C, seat heating, lane alerts."""
    n = accel.shape[0]
    uses_cruise = rng.random() < (0.9 if spec.persona is PersonaName.HIGHWAY else 0.3)
    cruise = ((speed_kmh > 80) & (accel == 0) & uses_cruise).astype(np.float64)
    air_con = np.full(n, 1.0 if rng.random() < 0.5 else 0.0)
    heating = np.zeros(n)
    if rng.random() < (0.7 if spec.persona is PersonaName.NIGHT_DRIVER else 0.2):
        heating[: min(n, int(600 / DT_S))] = 50.0  # warm the seat for the first ten minutes
    warning = np.zeros(n)
    rate_per_min = 0.05 if spec.persona is PersonaName.AGGRESSIVE else 0.01
    for _ in range(int(rng.poisson(rate_per_min * n * DT_S / 60))):
        at = int(rng.integers(0, max(n - 20, 1)))
        warning[at : at + 10] = 1.0
    return {
        vss.CRUISE_CONTROL: cruise,
        vss.AIR_CONDITIONING: air_con,
        vss.SEAT_HEATING: heating,
        vss.LANE_DEPARTURE_WARNING: warning,
    }


def initial_state(spec: VehicleSpec, rng: np.random.Generator) -> VehicleState:
    """A plausible starting state near the vehicle's home."""
    return VehicleState(
        lat=spec.home[0] + float(rng.normal(0, 0.05)),
        lon=spec.home[1] + float(rng.normal(0, 0.05)),
        heading_rad=float(rng.uniform(0, 2 * math.pi)),
        odometer_km=float(rng.uniform(2_000, 80_000)),
        energy_pct=float(rng.uniform(40, 95)),
    )


def simulate_day(
    spec: VehicleSpec, day: date, state: VehicleState, rng: np.random.Generator
) -> tuple[list[SimulatedTrip], VehicleState]:
    """Simulate one local day of the vehicle's persona: its trips in time order, at least 10 minutes apart."""
    persona = PERSONAS[spec.persona]
    tz = ZoneInfo(spec.timezone)
    midnight = datetime.combine(day, time(0), tzinfo=tz)
    count = int(rng.integers(persona.trips_per_day[0], persona.trips_per_day[1] + 1))
    windows = persona.start_hours
    starts = sorted(
        (midnight + timedelta(hours=_uniform(rng, windows[i % len(windows)]))).timestamp()
        for i in range(count)
    )
    trips: list[SimulatedTrip] = []
    not_before = -math.inf
    for start in starts:
        begin = max(start, not_before)
        trip, state = simulate_trip(spec, begin, _uniform(rng, persona.trip_minutes), state, rng)
        trips.append(trip)
        not_before = trip.end + 600.0
    return trips, state


def simulated_drive(
    vehicle_id: str, persona: str, *, days: int, seed: int, timezone: str, block_samples: int = 600
) -> Iterator[SignalBlock]:
    """A simulated car's signals for ``days`` days ending yesterday, in blocks as a real source yields them
    (``drivesight sim car``)."""
    spec = VehicleSpec(vehicle_id, PersonaName(persona), timezone=timezone)
    rng = np.random.default_rng(seed)
    state = initial_state(spec, rng)
    first = date.today() - timedelta(days=days)
    for d in range(days):
        trips, state = simulate_day(spec, first + timedelta(days=d), state, rng)
        for trip in trips:
            for start in range(0, len(trip.block), block_samples):
                yield trip.block.slice(start, start + block_samples)
