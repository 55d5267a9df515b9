"""Realistic sensor simulation: a ground-truth drive, then what a car's bus, a phone or an aftermarket IMU
would have recorded of it.

The project's first simulator (:mod:`simulators.vehicle`) writes clean 10 Hz car-frame signals with harsh
events well above the thresholds; real recordings look nothing like that. This module separates the two
things a detector is judged against:

1. :func:`simulate_truth` builds the drive itself at a fine internal rate (200 Hz): speed is the integral of
   the longitudinal acceleration, ``a_lat = v * yaw_rate`` holds exactly, and the drive is made of calm
   stretches (gentle starts and stops at most ~1.5 m/s^2, gentle curves at most ~2 m/s^2, slow turns at
   junctions, standstills) and labelled manoeuvres whose peaks are drawn NEAR the thresholds (2.5-4 m/s^2 by
   default) with jerk-limited shapes lasting 1-3 s: harsh braking, harsh acceleration, harsh cornering and
   aggressive lane changes (a lateral S). Labels use the half-peak width: an event's ``start``/``end`` are
   the first/last instant its magnitude is at least half its peak (a lane change: the whole S).
2. :func:`render` turns a truth into a :class:`Recording` as one sensor profile sees it
   (:class:`SensorProfile`), at any sample rate (10, 25, 50, 100 Hz or odd ones like 37 Hz):

   - ``vehicle-bus``: the ESC's own longitudinal/lateral acceleration and yaw rate, already in the car frame,
     smoothed by the ECU (a few Hz low-pass), quantised like CAN signals; wheel speed at the bus rate;
   - ``phone``: Android-style linear acceleration in the phone's frame (mount misaligned), gravity removed
     by a ~1 s high-pass (a brake spike is followed by a rebound lobe), white plus pink noise, engine and
     road vibration sampled WITHOUT an anti-alias filter, a gyroscope with bias, GPS speed at 1 Hz with
     dropouts and ~1 s latency;
   - ``aftermarket-imu``: raw specific force (gravity included) in a misaligned box, bias and slow drift,
     vibration, a gyroscope, optional GPS speed.

Every array is deterministic per seed. Car-frame signals use the VSS names of :mod:`edge_agent.signals`;
misaligned accelerometers use the replay's raw axis names ``imu.x``/``imu.y``/``imu.z``
(:data:`edge_agent.sources.replay.IMU_AXES`), which :class:`edge_agent.processing.MountCalibrator` rotates
into the car frame. Frames are ISO 8855: x forward, y left, z up.

Columns of a :class:`Recording` (NaN: no sample on that row):

=====================================  ================================================================
``Vehicle.Speed``                      km/h: wheel speed (bus, every row); GPS (phone, IMU: one row a second)
``Vehicle.Acceleration.*``,            bus only: the ESC's signals, m/s^2 and deg/s
``Vehicle.AngularVelocity.Yaw``
``Vehicle.Powertrain...``              bus only: engine speed (rpm), selected gear (126 park, 127 drive)
``imu.x``/``imu.y``/``imu.z``          m/s^2 in the sensor's frame, with gravity. IMU: the raw specific force.
                                       Phone: its linear acceleration plus the gravity it estimated while
                                       parked (a constant), so a calibration that looks for gravity finds it
                                       and rotates the phone's high-passed acceleration
``gyro.x``/``gyro.y``/``gyro.z``       deg/s in the sensor's frame (phone, IMU)
``phone.linear.*``/``phone.gravity.*`` Android's two sensors as a phone reports them (their sum is the raw
                                       accelerometer)
=====================================  ================================================================

Seeds: the benchmark and any tuning should use other seeds than the tests (tests/test_sensor_sim.py uses
1-77 and 20261-20268). For hours of driving, simulate several drives with different seeds rather than one
long one: memory grows with the drive (an hour is ~0.3 GB while rendering).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent import signals as vss
from edge_agent.signals import FloatArray, SignalBlock
from edge_agent.sources.replay import IMU_AXES

G = 9.80665
#: internal simulation rate: well above any output rate, so vibration up to 40 Hz is represented and
#: decimation to a phone's rate aliases it the way a phone's sampling does
INTERNAL_HZ = 200.0
#: 2026-11-02T08:00:00Z, the default start of a simulated drive (daytime: no night-driving events)
T0 = 1793606400.0
#: the label kinds (named like :class:`edge_agent.protocol.EventKind`, plus lane changes)
EVENT_KINDS = ("harsh_brake", "harsh_accel", "harsh_corner", "lane_change")
#: default peak range of labelled manoeuvres, m/s^2: near the car thresholds (3.0 / 3.4 / 4.0)
NEAR_THRESHOLD = (2.5, 4.0)
#: VSS selected gear values (edge_agent.sources.units.VSS_ENUMS): park, drive
GEAR_P, GEAR_D = 126.0, 127.0
SELECTED_GEAR = "Vehicle.Powertrain.Transmission.SelectedGear"
GYRO_AXES = ("gyro.x", "gyro.y", "gyro.z")
PHONE_LINEAR = ("phone.linear.x", "phone.linear.y", "phone.linear.z")
PHONE_GRAVITY = ("phone.gravity.x", "phone.gravity.y", "phone.gravity.z")
#: quantisation of the vehicle bus (the CAN signals' factors in :mod:`simulators.candump`)
BUS_ACCEL_LSB = 0.01
BUS_YAW_LSB = 0.01
BUS_SPEED_LSB = 0.01
#: ABS wheel-speed sensors read nothing below a walking pace (too few teeth pass the pickup)
BUS_MIN_SPEED_KMH = 1.5


class SensorProfile(StrEnum):
    """Which sensor recorded the drive."""

    VEHICLE_BUS = "vehicle-bus"
    PHONE = "phone"
    AFTERMARKET_IMU = "aftermarket-imu"


@dataclass(frozen=True, slots=True)
class LabelledEvent:
    """A manoeuvre in the ground truth: ``start``/``end`` in epoch seconds (half-peak width; a lane change:
    the whole S), ``peak`` the signed extreme in m/s^2 (braking negative, a left corner positive, a lane
    change the extreme of its first lobe)."""

    kind: str
    start: float
    end: float
    peak: float


@dataclass(frozen=True)
class Truth:
    """What really happened, at ``rate_hz`` (the internal rate).

    ``speed`` m/s; ``a_long``/``a_lat`` the kinematic accelerations in m/s^2 (longitudinal along the path,
    lateral = speed x heading rate); ``yaw_rate`` deg/s; ``grade`` the road's slope in rad (uphill
    positive); ``road`` the body's road vibration (n, 3) in m/s^2, car frame; ``engine_rpm``;
    ``gear`` the VSS selected gear (126 park, 127 drive).
    """

    t: FloatArray
    rate_hz: float
    speed: FloatArray
    a_long: FloatArray
    a_lat: FloatArray
    yaw_rate: FloatArray
    grade: FloatArray
    road: FloatArray
    engine_rpm: FloatArray
    gear: FloatArray
    labels: list[LabelledEvent]
    calm: list[tuple[float, float]]
    seed: int

    #: body pitch per m/s^2 of longitudinal acceleration (rad): the nose dives when braking
    PITCH_PER_MS2 = 0.008
    #: body roll per m/s^2 of lateral acceleration (rad): the body leans out of a curve
    ROLL_PER_MS2 = 0.01

    @property
    def duration_s(self) -> float:
        """Length of the drive in seconds."""
        return float(self.t[-1] - self.t[0]) if self.t.size else 0.0

    def attitude(self) -> tuple[FloatArray, FloatArray]:
        """The body's pitch (nose up positive) and roll (left side up positive), rad: road grade plus the
        suspension's response to the accelerations."""
        pitch = self.grade + self.PITCH_PER_MS2 * self.a_long
        roll = self.ROLL_PER_MS2 * self.a_lat
        return pitch, roll

    def specific_force(self) -> FloatArray:
        """What an ideal accelerometer fixed to the body reads, (n, 3) in the car frame (x forward, y left,
        z up), m/s^2: acceleration minus gravity, i.e. about +g on z at rest; braking and the road's slope
        both show on x, as they do on a real ESC sensor."""
        pitch, roll = self.attitude()
        fx = self.a_long * np.cos(pitch) + G * np.sin(pitch)
        fy = self.a_lat * np.cos(roll) + G * np.sin(roll) * np.cos(pitch)
        fz = G * np.cos(pitch) * np.cos(roll)
        return np.column_stack([fx, fy, fz]) + self.road

    def angular_velocity(self) -> FloatArray:
        """Body rates (roll, pitch, yaw), (n, 3) in deg/s, car frame."""
        pitch, roll = self.attitude()
        dt = 1.0 / self.rate_hz
        # ISO 8855: positive pitch rate about +y (left) turns the nose DOWN, so it is minus d(nose up)/dt
        return np.column_stack(
            [np.degrees(np.gradient(roll, dt)), -np.degrees(np.gradient(pitch, dt)), self.yaw_rate]
        )


# ------------------------------------------------------------------------------------------ truth


def _hann_ramp(n: int) -> FloatArray:
    """A raised-cosine rise over ``n`` samples (0 -> 1): finite jerk, unlike a step."""
    if n <= 0:
        return np.empty(0)
    return 0.5 * (1.0 - np.cos(np.pi * (np.arange(n) + 0.5) / n))


def _pulse(dt: float, fwhm_s: float, ramp_s: float, rng: np.random.Generator, wobble: float) -> FloatArray:
    """A unit-peak pulse: raised-cosine ramps and a plateau; its half-peak width is ``fwhm_s``.

    ``wobble`` modulates the plateau (a driver never holds the pedal perfectly still); the result is
    renormalised so its extreme is exactly 1.
    """
    ramp = max(2, round(ramp_s / dt))
    plateau = max(1, round((fwhm_s - ramp_s) / dt))
    up = _hann_ramp(ramp)
    shape = np.concatenate([up, np.ones(plateau), up[::-1]])
    if wobble > 0 and plateau > 4:
        k = np.arange(plateau) * dt
        f = rng.uniform(0.4, 1.2)
        # the modulation fades in and out with the plateau, so the shape stays continuous (finite jerk)
        envelope = np.sin(np.pi * np.arange(plateau) / plateau) ** 2
        dip = envelope * (0.5 + 0.5 * np.sin(2 * np.pi * f * k + rng.uniform(0, 6)))
        shape[ramp : ramp + plateau] *= 1.0 - wobble * dip
    peak = float(shape.max())
    out: FloatArray = shape / peak
    return out


def _half_peak_span(shape: FloatArray) -> tuple[int, int]:
    """First and last index where ``abs(shape)`` is at least half its maximum."""
    mag = np.abs(shape)
    idx = np.flatnonzero(mag >= 0.5 * mag.max())
    return int(idx[0]), int(idx[-1])


@dataclass
class _Planned:
    kind: str
    start: int  # sample index of the shape's first sample
    shape: FloatArray  # signed m/s^2
    whole: bool = False  # label the whole shape (lane change) rather than its half-peak width


@dataclass
class _Plan:
    """Builds the drive piece by piece, tracking speed so every manoeuvre fits the car's state."""

    rng: np.random.Generator
    dt: float
    event_p: float
    peak_range: tuple[float, float]
    kinds: frozenset[str]
    pieces: list[FloatArray] = field(default_factory=list)
    lateral: list[tuple[int, FloatArray]] = field(default_factory=list)
    parked: list[tuple[int, int]] = field(default_factory=list)
    events: list[_Planned] = field(default_factory=list)
    n: int = 0
    v: float = 0.0

    @property
    def time(self) -> float:
        return self.n * self.dt

    def _add(self, a: FloatArray) -> None:
        self.pieces.append(a)
        # forward Euler, the same rule :func:`simulate_truth` integrates with
        self.v = max(0.0, self.v + float(a.sum()) * self.dt)
        self.n += a.size

    def _want(self, kind: str) -> bool:
        return kind in self.kinds and self.rng.random() < self.event_p

    def _peak(self) -> float:
        return float(self.rng.uniform(*self.peak_range))

    def stand(self, seconds: float, *, park: bool = False) -> None:
        n = max(1, round(seconds / self.dt))
        if park:
            self.parked.append((self.n, self.n + n))
        self._add(np.zeros(n))

    def change_speed(self, target: float, peak: float) -> None:
        """Gentle acceleration or braking from the current speed to ``target`` (m/s) with a jerk-limited
        pulse whose area is exactly the change of speed."""
        dv = target - self.v
        if abs(dv) < 0.05:
            return
        peak = min(peak, abs(dv) / 1.2)  # a small change: a short, soft pulse rather than a long, faint one
        ramp_s = min(1.5, abs(dv) / peak / 2)
        fwhm = max(abs(dv) / peak, ramp_s + self.dt)
        shape = _pulse(self.dt, fwhm, ramp_s, self.rng, wobble=0.1)
        a = shape * (dv / (float(shape.sum()) * self.dt))  # exact area: the speed lands on the target
        self._add(a)
        if target == 0.0:
            self.v = 0.0

    def harsh_longitudinal(self, kind: str) -> None:
        """A harsh brake or acceleration from the current speed; the speed change stays physical."""
        peak = self._peak()
        sign = -1.0 if kind == "harsh_brake" else 1.0
        fwhm = float(self.rng.uniform(1.0, 3.0))
        ramp = float(self.rng.uniform(0.3, 0.7))
        if sign < 0:  # never brake through zero speed: shorten the event to what the speed allows
            fwhm = min(fwhm, max(1.0, (self.v - 2.0) / peak))
        shape = _pulse(self.dt, fwhm, ramp, self.rng, wobble=0.12)
        a = sign * peak * shape
        if sign < 0 and self.v + float(a.sum()) * self.dt < 1.0:
            a *= (self.v - 1.0) / (-float(a.sum()) * self.dt)
        self.events.append(_Planned(kind, self.n, a))
        self._add(a)

    def cruise(self, seconds: float) -> None:
        """Roughly constant speed: slow, small speed variations (|a| well under 0.5 m/s^2), gentle curves,
        and maybe a harsh corner or a lane change."""
        n = max(2, round(seconds / self.dt))
        k = np.arange(n) * self.dt
        a = np.zeros(n)
        for _ in range(3):
            f = self.rng.uniform(0.02, 0.12)
            a += self.rng.uniform(0.03, 0.12) * np.sin(2 * np.pi * f * k + self.rng.uniform(0, 2 * np.pi))
        taper = min(n // 2, round(2.0 / self.dt))
        window = np.ones(n)
        window[:taper] = _hann_ramp(taper)
        window[n - taper :] = _hann_ramp(taper)[::-1]
        a *= window
        start, v = self.n, self.v
        self._add(a)
        # lateral content, placed one after another with calm gaps
        # lateral content, placed one after another with calm gaps; at most one harsh manoeuvre per cruise,
        # so the kinds stay roughly balanced against the fewer chances to brake or accelerate harshly
        pos = start + round(self.rng.uniform(2.0, 6.0) / self.dt)
        end = start + n - round(2.0 / self.dt)
        harsh_done = False
        while pos < end:
            shape, kind, whole = self._lateral_manoeuvre(v, gentle_only=harsh_done)
            if pos + shape.size > end:
                break
            self.lateral.append((pos, shape))
            if kind:
                self.events.append(_Planned(kind, pos, shape, whole))
                harsh_done = True
            pos += shape.size + round(self.rng.uniform(4.0, 12.0) / self.dt)

    def _lateral_manoeuvre(self, v: float, *, gentle_only: bool) -> tuple[FloatArray, str, bool]:
        sign = float(self.rng.choice([-1.0, 1.0]))
        lane_change = self.rng.random() < 0.5  # which of the two this cruise may offer
        if not gentle_only and lane_change and v > 30 / 3.6 and self._want("lane_change"):
            # an S: one lobe then the opposite. Displacing d metres with a sine of period T and amplitude
            # A takes A * T^2 / (2 pi) = d, so a sharper swerve is also a shorter one (2-4 s).
            peak, d = self._peak(), self.rng.uniform(3.0, 3.8)
            period = math.sqrt(2 * math.pi * d / peak)
            k = np.arange(max(4, round(period / self.dt))) * self.dt
            return sign * peak * np.sin(2 * np.pi * k / period), "lane_change", True
        if not gentle_only and not lane_change and 20 / 3.6 < v < 90 / 3.6 and self._want("harsh_corner"):
            fwhm, ramp = self.rng.uniform(1.0, 3.0), self.rng.uniform(0.4, 0.8)
            shape = _pulse(self.dt, fwhm, ramp, self.rng, wobble=0.1)
            return sign * self._peak() * shape, "harsh_corner", False
        # a gentle curve: at most ~2 m/s^2, long ramps
        peak = self.rng.uniform(0.3, 1.9) if v > 8 else self.rng.uniform(0.3, 1.2)
        fwhm = self.rng.uniform(3.0, 12.0)
        shape = _pulse(self.dt, fwhm, self.rng.uniform(1.0, 2.5), self.rng, wobble=0.15)
        return sign * peak * shape, "", False

    def junction_turn(self) -> None:
        """A slow 90 degree turn (4-7 m/s, 12-22 deg/s): calm, but a yaw-rate-only rule may fire on it."""
        v = self.v
        omega = math.radians(self.rng.uniform(12.0, 22.0))
        peak = min(v * omega, 1.9)
        omega = peak / v
        ramp = 1.0
        fwhm = (math.pi / 2) / omega  # area of the rate pulse ~ plateau + ramp = heading change / rate
        shape = _pulse(self.dt, fwhm, ramp, self.rng, wobble=0.0)
        sign = float(self.rng.choice([-1.0, 1.0]))
        self.lateral.append((self.n, sign * peak * shape))
        self._add(np.zeros(shape.size))


#: cruising speeds, km/h: town, suburb, country road, motorway
_SPEED_CLASSES = ((30.0, 50.0), (50.0, 70.0), (70.0, 100.0), (100.0, 125.0))


def simulate_truth(
    seed: int,
    *,
    minutes: float = 20.0,
    start: float = T0,
    calm_only: bool = False,
    peak_range: tuple[float, float] = NEAR_THRESHOLD,
    event_probability: float = 0.5,
    kinds: Sequence[str] = EVENT_KINDS,
    rate_hz: float = INTERNAL_HZ,
) -> Truth:
    """A seeded drive of ``minutes`` at ``rate_hz`` with labelled manoeuvres and calm stretches.

    ``peak_range`` is the range manoeuvre peaks are drawn from (m/s^2; the default sits near the
    thresholds, a test that wants certain detections asks for e.g. (5.0, 6.0)); ``event_probability`` is
    the chance each opportunity (a start, a cruise, a slow-down) gets a manoeuvre of a kind in ``kinds``;
    ``calm_only`` gives none at all (for false alarms per hour). ``calm`` lists the stretches at least
    10 s long that are 5 s or more away from any manoeuvre.
    """
    unknown = set(kinds) - set(EVENT_KINDS)
    if unknown:
        raise ValueError(f"unknown event kinds {sorted(unknown)}; known: {', '.join(EVENT_KINDS)}")
    if minutes <= 0:
        raise ValueError("minutes must be positive")
    lo, hi = peak_range
    if not 0 < lo <= hi:
        raise ValueError(f"peak_range must be 0 < low <= high, got {peak_range}")
    rng = np.random.default_rng([seed, 0x7275])
    dt = 1.0 / rate_hz
    total_n = round(minutes * 60 * rate_hz)
    plan = _Plan(rng, dt, 0.0 if calm_only else event_probability, (lo, hi), frozenset(kinds))
    plan.stand(rng.uniform(5.0, 15.0), park=True)
    while plan.time < minutes * 60 - 20:
        _drive_leg(plan)
    plan.stand(max(1.0, minutes * 60 - plan.time + 1.0), park=True)
    a_long = np.concatenate(plan.pieces)[:total_n]
    n = a_long.size
    # speed is the forward-Euler integral of the acceleration; the plan kept it non-negative
    speed = np.concatenate([[0.0], np.cumsum(a_long[:-1]) * dt])
    speed = np.maximum(speed, 0.0)  # guards rounding (~1e-12) after a stop, nothing larger
    a_lat = np.zeros(n)
    for pos, shape in plan.lateral:
        m = min(shape.size, n - pos)
        if m > 0:
            a_lat[pos : pos + m] += shape[:m]
    moving = speed > 0.5
    a_lat[~moving] = 0.0  # no sideways acceleration without motion (a turn only starts once rolling)
    yaw = np.zeros(n)
    yaw[moving] = np.degrees(a_lat[moving] / speed[moving])
    t: FloatArray = start + np.arange(n, dtype=np.float64) * dt
    labels = []
    cut: list[LabelledEvent] = []  # manoeuvres the end of the drive cut short: not labelled, not calm either
    for ev in sorted(plan.events, key=lambda e: e.start):
        if ev.start + ev.shape.size > n:
            if ev.start < n:
                cut.append(LabelledEvent(ev.kind, float(t[ev.start]), float(t[-1]), 0.0))
            continue
        if ev.whole:
            i0, i1 = 0, ev.shape.size - 1
        else:
            i0, i1 = _half_peak_span(ev.shape)
        actual = a_long if ev.kind in ("harsh_brake", "harsh_accel") else a_lat
        window = actual[ev.start : ev.start + ev.shape.size]
        if ev.kind == "lane_change":  # the first lobe's extreme, with its sign
            first = window[: window.size // 2]
            peak = float(first[np.argmax(np.abs(first))])
        else:
            peak = float(window[np.argmax(np.abs(window))])
        labels.append(
            LabelledEvent(ev.kind, float(t[ev.start + i0]), float(t[ev.start + i1]), round(peak, 4))
        )
    calm = _calm_intervals(float(t[0]), float(t[-1]), labels + cut)
    grade = _smooth_noise(rng, n, dt, (0.002, 0.01), 0.02)
    road = _road_vibration(rng, speed, dt)
    gear = np.full(n, GEAR_D)
    for a, b in plan.parked[:1] + plan.parked[-1:]:  # parked before setting off and after the last stop
        gear[a : min(b, n)] = GEAR_P
    return Truth(
        t=t, rate_hz=rate_hz, speed=speed, a_long=a_long, a_lat=a_lat, yaw_rate=yaw, grade=grade,
        road=road, engine_rpm=_engine_rpm(rng, speed, a_long, dt), gear=gear, labels=labels, calm=calm,
        seed=seed,
    )  # fmt: skip


def _drive_leg(plan: _Plan) -> None:
    """From standstill: pull away (maybe turning at a junction, maybe harshly), cruise with speed changes,
    stop (maybe harshly), stand."""
    rng = plan.rng
    lo, hi = _SPEED_CLASSES[int(rng.choice(4, p=[0.35, 0.3, 0.25, 0.1]))]
    cruise_v = rng.uniform(lo, hi) / 3.6
    if rng.random() < 0.4:  # a junction: roll to turning speed, turn, then go on
        plan.change_speed(rng.uniform(4.0, 7.0), rng.uniform(0.8, 1.5))
        plan.junction_turn()
    if plan._want("harsh_accel"):
        plan.change_speed(min(cruise_v, rng.uniform(0.0, 12.0)), rng.uniform(0.8, 1.5))
        plan.harsh_longitudinal("harsh_accel")
    plan.change_speed(cruise_v, rng.uniform(0.6, 1.5))
    for _ in range(int(rng.integers(1, 4))):
        plan.cruise(rng.uniform(15.0, 60.0))
        if plan.v > 45 / 3.6 and plan._want("harsh_brake"):
            plan.harsh_longitudinal("harsh_brake")
            plan.cruise(rng.uniform(6.0, 15.0))
        elif plan.v < 60 / 3.6 and plan._want("harsh_accel"):  # overtaking, merging: from rolling
            plan.harsh_longitudinal("harsh_accel")
            plan.cruise(rng.uniform(6.0, 15.0))
        lo, hi = _SPEED_CLASSES[int(rng.choice(4, p=[0.35, 0.3, 0.25, 0.1]))]
        plan.change_speed(rng.uniform(lo, hi) / 3.6, rng.uniform(0.5, 1.4))
    if plan.v > 35 / 3.6 and plan._want("harsh_brake"):
        plan.harsh_longitudinal("harsh_brake")
    plan.change_speed(0.0, rng.uniform(0.8, 1.5))
    plan.stand(rng.uniform(4.0, 40.0))


def _calm_intervals(t0: float, t1: float, labels: Sequence[LabelledEvent]) -> list[tuple[float, float]]:
    """The stretches of at least 10 s that keep 5 s away from every labelled manoeuvre."""
    margin, minimum = 5.0, 10.0
    calm: list[tuple[float, float]] = []
    cursor = t0
    for e in sorted(labels, key=lambda e: e.start):
        if e.start - margin - cursor >= minimum:
            calm.append((cursor, e.start - margin))
        cursor = max(cursor, e.end + margin)
    if t1 - cursor >= minimum:
        calm.append((cursor, t1))
    return calm


def _smooth_noise(
    rng: np.random.Generator, n: int, dt: float, band_hz: tuple[float, float], amplitude: float
) -> FloatArray:
    """A sum of a few slow sinusoids in ``band_hz``, peak at most about ``amplitude``."""
    k = np.arange(n) * dt
    out = np.zeros(n)
    for _ in range(4):
        out += np.sin(2 * np.pi * rng.uniform(*band_hz) * k + rng.uniform(0, 2 * np.pi))
    return out * (amplitude / 4)


def _band_noise(rng: np.random.Generator, n: int, dt: float, band_hz: tuple[float, float]) -> FloatArray:
    """Unit-RMS Gaussian noise with its power in ``band_hz`` (FFT masking)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, dt)
    spectrum[(f < band_hz[0]) | (f > band_hz[1])] = 0
    x = np.fft.irfft(spectrum, n)
    rms = float(np.sqrt(np.mean(x**2))) or 1.0
    out: FloatArray = x / rms
    return out


def _pink_noise(rng: np.random.Generator, n: int, dt: float, f_min: float = 0.002) -> FloatArray:
    """Unit-RMS 1/f noise: the slow wander (bias instability, temperature) of MEMS sensors."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, dt)
    spectrum[1:] /= np.sqrt(np.maximum(f[1:], f_min))
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    rms = float(np.sqrt(np.mean(x**2))) or 1.0
    out: FloatArray = x / rms
    return out


def _road_vibration(rng: np.random.Generator, speed: FloatArray, dt: float) -> FloatArray:
    """The body's response to the road, (n, 3) m/s^2: heave at 1-3 Hz and wheel hop at 10-18 Hz, mostly
    vertical, growing with speed; nothing at standstill."""
    n = speed.size
    scale = np.minimum(speed / 25.0, 1.2)
    heave = _band_noise(rng, n, dt, (1.0, 3.0)) * 0.15
    hop = _band_noise(rng, n, dt, (10.0, 18.0)) * 0.25
    z = (heave + hop) * scale
    x = _band_noise(rng, n, dt, (1.0, 18.0)) * 0.05 * scale
    y = _band_noise(rng, n, dt, (1.0, 18.0)) * 0.06 * scale
    return np.column_stack([x, y, z])


def _engine_rpm(rng: np.random.Generator, speed: FloatArray, a_long: FloatArray, dt: float) -> FloatArray:
    """Engine speed from a six-speed shift schedule; idle (750-850 rpm, wandering) when slow."""
    kmh = speed * 3.6
    # rpm per km/h in each gear, and the speed each gear is used from
    per_kmh = np.array([110.0, 62.0, 42.0, 32.0, 26.0, 22.0])
    from_kmh = np.array([0.0, 18.0, 32.0, 48.0, 66.0, 85.0])
    gear = np.searchsorted(from_kmh, kmh, side="right") - 1
    rpm = kmh * per_kmh[gear] + 300.0 * np.clip(a_long, 0.0, None)  # harder throttle, higher revs
    idle = 800.0 + 50.0 * _smooth_noise(rng, speed.size, dt, (0.05, 0.3), 1.0)
    out: FloatArray = np.maximum(rpm, idle)
    return out


# ------------------------------------------------------------------------------------------ render


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> FloatArray:
    """The rotation matrix R_z(yaw) @ R_y(pitch) @ R_x(roll) (an orthonormal 3x3 array)."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    rx = np.array([[1, 0, 0], [0, np.cos(r), -np.sin(r)], [0, np.sin(r), np.cos(r)]])
    out: FloatArray = rz @ ry @ rx
    return out


#: how phones sit in a car, as the rotation car -> phone axes before the random misalignment:
#: Android axes are x to the screen's right, y to its top, z out of the screen
_PHONE_MOUNTS = {
    # upright on the dash or windscreen, screen facing the driver: top up, screen backwards
    "portrait": np.array([[0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]),
    # landscape on the dash (navigation): top to the left, screen backwards
    "landscape": np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]),
    # flat in a tray or cup holder, top forward, screen up
    "flat": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
}


def _box_orientations() -> list[FloatArray]:
    """The 24 axis-aligned orientations an aftermarket box can be screwed in (det = +1)."""
    out = []
    eye = np.eye(3)
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        for signs in np.ndindex(2, 2, 2):
            m = eye[list(perm)] * (np.array(signs) * 2 - 1)[:, None]
            if np.linalg.det(m) > 0:
                out.append(m)
    return out


@dataclass
class Recording:
    """What one sensor recorded of a drive: ``t`` epoch seconds (float64, increasing), ``columns`` by name
    (VSS names for car-frame signals, ``imu.*`` raw accelerometer axes, ``gyro.*`` deg/s in the sensor's
    frame, ``phone.*`` the phone's own linear acceleration and gravity), NaN where a signal has no sample,
    and the truth's ``labels`` and ``calm`` stretches. ``meta`` records how the sensor was drawn (mount,
    filters, biases) for diagnostics."""

    t: FloatArray
    columns: dict[str, FloatArray]
    labels: list[LabelledEvent]
    calm: list[tuple[float, float]]
    profile: SensorProfile
    rate_hz: float
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``seed=.. profile=.. rate=..Hz``: put it in every assertion message so a failure reproduces."""
        return f"seed={self.seed} profile={self.profile.value} rate={self.rate_hz:g}Hz"

    def edge_columns(self) -> list[str]:
        """The columns the edge agent reads as they are: VSS signals, the raw accelerometer axes and the
        gyroscope's (which :class:`edge_agent.processing.MountCalibrator` uses to find "forward")."""
        return [c for c in self.columns if c.startswith("Vehicle.") or c in IMU_AXES or c in GYRO_AXES]

    def to_blocks(self, block_s: float = 60.0, *, everything: bool = False) -> Iterator[SignalBlock]:
        """The recording as consecutive signal blocks of ``block_s`` seconds (a source for the agent or a
        :class:`edge_agent.processing.Pipeline`). By default only :meth:`edge_columns`; ``everything``
        adds the phone's own linear acceleration and gravity channels."""
        names = list(self.columns) if everything else self.edge_columns()
        if self.t.size == 0:
            return
        edges = np.searchsorted(self.t, np.arange(self.t[0], self.t[-1] + block_s, block_s), side="left")
        edges = np.unique(np.append(edges, self.t.size))
        for a, b in itertools.pairwise(edges):
            if b > a:
                yield SignalBlock(self.t[a:b], {n: self.columns[n][a:b] for n in names})

    def write_csv(self, directory: str | Path, *, stem: str | None = None) -> tuple[Path, Path]:
        """Write ``STEM.csv`` (every column; empty cells where there is no sample), ``STEM.toml`` (a
        mapping ``drivesight-edge replay STEM.csv --mapping STEM.toml`` accepts) and ``STEM.labels.json``;
        return the CSV's and the mapping's paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = stem or f"{self.profile.value}-{self.rate_hz:g}hz-seed{self.seed}"
        csv_path, mapping_path = directory / f"{stem}.csv", directory / f"{stem}.toml"
        names = list(self.columns)
        cells = [np.char.mod("%.6f", self.t)]
        for name in names:
            column = self.columns[name]
            text = np.char.mod("%.6g", column)
            text[np.isnan(column)] = ""
            cells.append(text)
        with csv_path.open("w", encoding="utf-8", newline="") as f:
            f.write(",".join(["timestamp", *names]) + "\n")
            rows = cells[0].astype(object)
            for text in cells[1:]:
                rows = rows + "," + text.astype(object)
            f.write("\n".join(rows.tolist()))
            f.write("\n")
        mapping_path.write_text(self.mapping_toml(), encoding="utf-8")
        (directory / f"{stem}.labels.json").write_text(json.dumps(self.labels_document(), indent=1))
        return csv_path, mapping_path

    def mapping_toml(self) -> str:
        """The replay mapping of :meth:`write_csv`'s CSV: VSS columns by name; misaligned accelerometers
        through the replay's mount calibration."""
        lines = [
            f"# drivesight sim sensors: {self.describe()}",
            "[time]",
            'column = "timestamp"',
            'format = "epoch_s"',
        ]
        for name in self.columns:
            if name.startswith("Vehicle."):
                lines += ["", f'[signals."{name}"]', f'column = "{name}"']
        if all(a in self.columns for a in IMU_AXES):
            lines += [
                "",
                "[processing]",
                "calibrate_imu = true",
                f"imu_columns = {json.dumps(list(IMU_AXES))}",
            ]
            if all(a in self.columns for a in GYRO_AXES):
                # the gyroscope lets the calibration find "forward" from straight driving and turns; from
                # the change of speed alone a phone's high-passed acceleration against GPS speed a second
                # late can come out backwards
                lines += [f"gyro_columns = {json.dumps(list(GYRO_AXES))}", 'gyro_unit = "deg/s"']
        lines += ["", "[processing]"] if "[processing]" not in lines else []
        lines.append(f'profile = "{self.profile.value}"')
        return "\n".join(lines) + "\n"

    def labels_document(self) -> dict[str, Any]:
        """The ground truth as plain data (the labels JSON)."""
        return {
            "seed": self.seed,
            "profile": self.profile.value,
            "rate_hz": self.rate_hz,
            "start": float(self.t[0]) if self.t.size else None,
            "end": float(self.t[-1]) if self.t.size else None,
            "labels": [{"kind": e.kind, "start": e.start, "end": e.end, "peak": e.peak} for e in self.labels],
            "calm": [list(c) for c in self.calm],
            "meta": self.meta,
        }


def _sample_times(
    rng: np.random.Generator, t0: float, t1: float, rate_hz: float, jitter_s: float, drop: float
) -> FloatArray:
    """Sample instants at ``rate_hz`` with Gaussian jitter and a share ``drop`` of samples lost."""
    n = math.floor((t1 - t0) * rate_hz) + 1
    t = t0 + np.arange(n) / rate_hz
    if jitter_s > 0:
        t = t + np.clip(rng.normal(0.0, jitter_s, n), -0.4 / rate_hz, 0.4 / rate_hz)
    if drop > 0:
        t = t[rng.random(n) >= drop]
    t = np.clip(t, t0, t1)
    return np.maximum.accumulate(t)


def _at(t_out: FloatArray, t_in: FloatArray, x: FloatArray) -> FloatArray:
    """``x`` (n,) or (n, k) read at ``t_out`` by linear interpolation: a plain sampler, no anti-alias."""
    if x.ndim == 1:
        out: FloatArray = np.interp(t_out, t_in, x)
        return out
    return np.column_stack([np.interp(t_out, t_in, x[:, i]) for i in range(x.shape[1])])


def _one_pole(x: FloatArray, alpha: float) -> FloatArray:
    """First-order IIR low-pass y[i] = y[i-1] + alpha (x[i] - y[i-1]) along axis 0, starting settled on
    x[0] (no start-up transient).

    Computed as a convolution with the filter's impulse response alpha (1 - alpha)^k, cut where it falls
    under 1e-12, by FFT: exact to that tolerance and fast in numpy (scipy.signal would do it directly but
    takes seconds to import).
    """
    n = x.shape[0]
    length = min(n, math.ceil(math.log(1e-12) / math.log1p(-alpha)) + 1) if alpha < 1 else 1
    kernel = alpha * (1.0 - alpha) ** np.arange(length)
    size = 1 << (n + length - 2).bit_length()
    start = x[0]
    response = np.fft.rfft(kernel, size)
    if x.ndim > 1:
        response = response[:, None]
    y = np.fft.irfft(np.fft.rfft(x - start, size, axis=0) * response, size, axis=0)[:n]
    out: FloatArray = y + start
    return out


def _gps_speed(rng: np.random.Generator, truth: Truth, t_out: FloatArray, meta: dict[str, Any]) -> FloatArray:
    """GPS (Doppler) speed in km/h: a fix a second, each describing the car ~1 s earlier (the receiver's
    latency), noisy (never negative: a parked phone reads a little speed), missing before the first fix
    and in dropouts of several seconds (tunnels, urban canyons). Placed on the first row at or after the
    fix; NaN on every other row."""
    latency = float(rng.uniform(0.8, 1.2))
    t0, t1 = float(truth.t[0]), float(truth.t[-1])
    fixes = t0 + rng.uniform(0.0, 1.0) + np.arange(int(t1 - t0))
    fixes = fixes + rng.normal(0.0, 0.02, fixes.size)
    keep = fixes > t0 + rng.uniform(5.0, 15.0)  # time to first fix
    # dropouts: about one per four minutes, at least one, 3-20 s each
    gaps = []
    for _ in range(max(1, int(rng.poisson((t1 - t0) / 240.0)))):
        a = rng.uniform(t0 + 20.0, max(t0 + 21.0, t1 - 20.0))
        b = a + rng.uniform(3.0, 20.0)
        gaps.append((round(a, 2), round(b, 2)))
        keep &= ~((fixes >= a) & (fixes < b))
    fixes = fixes[keep & (fixes <= t1)]
    v = np.interp(fixes - latency, truth.t, truth.speed)
    values = np.abs(v + rng.normal(0.0, 0.15, fixes.size)) * 3.6
    out = np.full(t_out.size, np.nan)
    rows = np.searchsorted(t_out, fixes, side="left")
    ok = rows < t_out.size
    out[rows[ok]] = np.round(values[ok], 2)
    meta["gps"] = {"latency_s": round(latency, 3), "dropouts": gaps, "fixes": int(ok.sum())}
    return out


def _engine_vibration(
    rng: np.random.Generator, truth: Truth, amplitude: float, meta: dict[str, Any]
) -> FloatArray:
    """Engine vibration reaching a mount, (n, 3) m/s^2 in the car frame: the crank's first and second
    order (rpm/60 and rpm/30: 13-50 Hz and up; 10-40 Hz for most of a drive) in a random direction, with a
    little broadband mount rattle. Present at idle too, which is what makes a standstill noisy."""
    dt = 1.0 / truth.rate_hz
    phase = 2 * np.pi * np.cumsum(truth.engine_rpm / 60.0) * dt
    direction = rng.normal(size=(2, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    load = 0.7 + 0.3 * np.clip(truth.engine_rpm / 3000.0, 0, 1)
    first = np.outer(np.sin(phase) * load, direction[0])
    second = np.outer(np.sin(2 * phase + rng.uniform(0, 6)) * load, direction[1]) * 0.6
    rattle = np.column_stack([_band_noise(rng, truth.t.size, dt, (15.0, 40.0)) for _ in range(3)]) * 0.3
    meta["engine_vibration_ms2"] = round(amplitude, 3)
    out: FloatArray = (first + second + rattle) * amplitude
    return out


def render(
    truth: Truth,
    profile: SensorProfile | str,
    rate_hz: float,
    seed: int,
    *,
    gps: bool | None = None,
    misalign_deg: float = 30.0,
) -> Recording:
    """What ``profile`` records of ``truth`` at ``rate_hz`` (any rate from 1 Hz to the internal rate).

    The sensor (mount, biases, filters, noise) is drawn from ``seed`` and the profile only, not from the
    rate: the same seed at 10 and 100 Hz is the same phone in the same car, sampled differently.
    ``gps``: the aftermarket IMU's optional GPS (default on; the phone always has it, the bus never).
    ``misalign_deg``: the largest random yaw/pitch/roll of a mount around its nominal orientation.
    """
    profile = SensorProfile(profile)
    if not 1.0 <= rate_hz <= truth.rate_hz:
        raise ValueError(f"rate_hz must be between 1 and the truth's {truth.rate_hz:g} Hz, got {rate_hz}")
    index = list(SensorProfile).index(profile)
    rng = np.random.default_rng([seed, 0x5E45, index])  # the sensor itself
    timing = np.random.default_rng([seed, 0x71AE, index, round(rate_hz * 1000)])  # its sampling at this rate
    meta: dict[str, Any] = {"internal_hz": truth.rate_hz, "truth_seed": truth.seed}
    t0, t1 = float(truth.t[0]), float(truth.t[-1])
    if profile is SensorProfile.VEHICLE_BUS:
        t_out = _sample_times(timing, t0, t1, rate_hz, 0.0003, 0.0)
        columns = _vehicle_bus(rng, truth, t_out, meta)
    elif profile is SensorProfile.PHONE:
        # a phone's sensor events come with millisecond jitter and the odd lost sample
        t_out = _sample_times(timing, t0, t1, rate_hz, 0.002, 0.002)
        columns = _phone(rng, truth, t_out, meta, misalign_deg)
    else:
        # an own crystal: the box's 50 Hz is 50 Hz * (1 + ~50 ppm) on the car's clock
        ppm = float(rng.uniform(-80e-6, 80e-6))
        t_out = _sample_times(timing, t0, t1, rate_hz * (1 + ppm), 0.0002, 0.0)
        columns = _aftermarket(rng, truth, t_out, meta, misalign_deg, gps=True if gps is None else gps)
    return Recording(
        t_out, columns, list(truth.labels), list(truth.calm), profile, float(rate_hz), seed, meta
    )


def _vehicle_bus(
    rng: np.random.Generator, truth: Truth, t_out: FloatArray, meta: dict[str, Any]
) -> dict[str, FloatArray]:
    """The ESC's inertial signals as the car sends them on its bus."""
    n, dt = truth.t.size, 1.0 / truth.rate_hz
    f = truth.specific_force()
    cutoff = float(rng.uniform(3.0, 8.0))
    # The ESC sensor cluster is rigid in the body: it feels the body's vibration, which its ECU filters out
    # with a low-pass of a few Hz: two cascaded first-order stages (a critically damped second order; causal,
    # so a little delay, as on a real bus).
    alpha = 1.0 - math.exp(-2 * math.pi * cutoff * dt)
    bias = rng.normal(0.0, [0.03, 0.03, 0.15])  # m/s^2, m/s^2, deg/s after the ECU's own compensation
    long = f[:, 0] + bias[0] + rng.normal(0.0, 0.02, n)
    lat = f[:, 1] + bias[1] + rng.normal(0.0, 0.02, n)
    yaw = truth.yaw_rate + bias[2] + rng.normal(0.0, 0.08, n) + 0.05 * _pink_noise(rng, n, dt)
    filtered = _one_pole(_one_pole(np.column_stack([long, lat, yaw]), alpha), alpha)
    sampled = _at(t_out, truth.t, filtered)
    kmh = _at(t_out, truth.t, truth.speed) * 3.6
    kmh = np.where(kmh < BUS_MIN_SPEED_KMH, 0.0, kmh)
    meta.update({"ecu_lowpass_hz_per_stage": round(cutoff, 2), "bias": [round(float(x), 4) for x in bias]})
    return {
        vss.SPEED: np.round(kmh / BUS_SPEED_LSB) * BUS_SPEED_LSB,
        vss.ACCEL_LONGITUDINAL: np.round(sampled[:, 0] / BUS_ACCEL_LSB) * BUS_ACCEL_LSB,
        vss.ACCEL_LATERAL: np.round(sampled[:, 1] / BUS_ACCEL_LSB) * BUS_ACCEL_LSB,
        vss.YAW_RATE: np.round(sampled[:, 2] / BUS_YAW_LSB) * BUS_YAW_LSB,
        vss.ENGINE_SPEED: np.round(_at(t_out, truth.t, truth.engine_rpm) * 4) / 4,
        SELECTED_GEAR: truth.gear[np.clip(np.searchsorted(truth.t, t_out), 0, truth.t.size - 1)],
    }


def _mount(
    rng: np.random.Generator, nominal: FloatArray, misalign_deg: float, meta: dict[str, Any]
) -> FloatArray:
    """The rotation car frame -> sensor frame: ``nominal`` then a random yaw/pitch/roll of up to
    ``misalign_deg`` each."""
    angles = rng.uniform(-misalign_deg, misalign_deg, 3)
    r = rotation(*angles) @ nominal
    meta["mount_misalignment_deg"] = [round(float(x), 2) for x in angles]
    meta["rotation_car_to_sensor"] = np.round(r, 5).tolist()
    out: FloatArray = r
    return out


def _phone(
    rng: np.random.Generator, truth: Truth, t_out: FloatArray, meta: dict[str, Any], misalign_deg: float
) -> dict[str, FloatArray]:
    """Android's linear acceleration, gravity and gyroscope in the phone's frame, and GPS speed."""
    n, dt = truth.t.size, 1.0 / truth.rate_hz
    mount = str(rng.choice(list(_PHONE_MOUNTS)))
    meta["mount"] = mount
    r = _mount(rng, _PHONE_MOUNTS[mount], misalign_deg, meta)
    # a phone holder is a spring: engine and road vibration reach it amplified
    vib = _engine_vibration(rng, truth, float(rng.uniform(0.08, 0.25)), meta)
    holder = (
        _band_noise(rng, n, dt, (12.0, 25.0))
        * float(rng.uniform(0.1, 0.3))
        * np.minimum(truth.speed / 20, 1.2)
    )
    f_car = truth.specific_force() + vib + holder[:, None] * np.array([0.3, 0.5, 1.0])
    raw = f_car @ r.T
    # MEMS accelerometer: white noise (~200 ug/sqrt(Hz) at 100 Hz bandwidth), bias, 1/f wander
    bias = rng.normal(0.0, 0.08, 3)
    white, wander = float(rng.uniform(0.02, 0.05)), float(rng.uniform(0.01, 0.04))
    raw = raw + bias + rng.normal(0.0, white, (n, 3))
    raw = raw + np.column_stack([_pink_noise(rng, n, dt) for _ in range(3)]) * wander
    # Android's gravity estimate behaves like a low-pass of the accelerometer with a time constant of about
    # a second; linear acceleration is what is left: a ~1 s high-pass. A brake held for 2 s leaks into the
    # "gravity" estimate and comes back as a rebound lobe of the opposite sign when the brake is released.
    tau = float(rng.uniform(0.7, 1.4))
    gravity = _one_pole(raw, 1.0 - math.exp(-dt / tau))
    linear = raw - gravity
    gyro = _gyro(rng, truth, r, bias_dps=0.5, noise_dps=0.1)
    lin_s, grav_s, gyro_s = (
        _at(t_out, truth.t, linear),
        _at(t_out, truth.t, gravity),
        _at(t_out, truth.t, gyro),
    )
    # The replay's mount calibration finds "up" from gravity, which linear acceleration no longer has: the
    # imu.* axes are linear acceleration plus the gravity the phone estimated while parked (a constant), so
    # the calibration rotates the phone's high-passed acceleration, as an app feeding linear acceleration
    # would. (raw accelerometer = phone.linear + phone.gravity, for a calibrator that wants it.)
    rest = truth.speed[: max(1, round(5 * truth.rate_hz))] < 0.1
    g0 = gravity[: rest.size][rest].mean(axis=0) if rest.any() else gravity[0]
    meta.update(
        {"highpass_tau_s": round(tau, 3), "accel_bias": np.round(bias, 4).tolist(),
         "accel_white_ms2": round(white, 4), "accel_wander_ms2": round(wander, 4)}
    )  # fmt: skip
    columns: dict[str, FloatArray] = {vss.SPEED: _gps_speed(rng, truth, t_out, meta)}
    for i, axis in enumerate(IMU_AXES):
        columns[axis] = lin_s[:, i] + g0[i]
    for i in range(3):
        columns[PHONE_LINEAR[i]] = lin_s[:, i]
        columns[PHONE_GRAVITY[i]] = grav_s[:, i]
        columns[GYRO_AXES[i]] = gyro_s[:, i]
    return columns


def _gyro(
    rng: np.random.Generator, truth: Truth, r: FloatArray, *, bias_dps: float, noise_dps: float
) -> FloatArray:
    """A MEMS gyroscope in the sensor frame, deg/s: the body rates rotated, a bias, white and 1/f noise."""
    n, dt = truth.t.size, 1.0 / truth.rate_hz
    w = truth.angular_velocity() @ r.T
    w = w + rng.normal(0.0, bias_dps, 3) + rng.normal(0.0, noise_dps, (n, 3))
    out: FloatArray = w + np.column_stack([_pink_noise(rng, n, dt) for _ in range(3)]) * (bias_dps * 0.2)
    return out


def _aftermarket(
    rng: np.random.Generator,
    truth: Truth,
    t_out: FloatArray,
    meta: dict[str, Any],
    misalign_deg: float,
    *,
    gps: bool,
) -> dict[str, FloatArray]:
    """A telematics box's raw accelerometer (gravity included) and gyroscope, and maybe GPS speed."""
    n, dt = truth.t.size, 1.0 / truth.rate_hz
    boxes = _box_orientations()
    nominal = boxes[int(rng.integers(len(boxes)))]
    r = _mount(rng, nominal, misalign_deg, meta)
    # screwed to the body: the engine's vibration arrives harder than in a phone holder
    vib = _engine_vibration(rng, truth, float(rng.uniform(0.15, 0.4)), meta)
    raw = (truth.specific_force() + vib) @ r.T
    # cheap MEMS: bias of tens of mg, a warm-up drift over the first minutes, 1/f wander, white noise
    bias = rng.normal(0.0, 0.15, 3)
    warm = rng.normal(0.0, 0.08, 3)
    minutes = (truth.t - truth.t[0]) / 60.0
    drift = np.outer(1.0 - np.exp(-minutes / 8.0), warm)
    white, wander = float(rng.uniform(0.03, 0.07)), float(rng.uniform(0.02, 0.05))
    raw = raw + bias + drift + rng.normal(0.0, white, (n, 3))
    raw = raw + np.column_stack([_pink_noise(rng, n, dt) for _ in range(3)]) * wander
    # the box's digital filter is a single pole near its output Nyquist: an imperfect anti-alias
    out_rate = len(t_out) / max(truth.duration_s, 1e-9)
    smoothed = _one_pole(raw, 1.0 - math.exp(-2 * np.pi * (0.5 * out_rate) * dt))
    gyro = _gyro(rng, truth, r, bias_dps=1.0, noise_dps=0.15)
    acc_s, gyro_s = _at(t_out, truth.t, smoothed), _at(t_out, truth.t, gyro)
    meta.update(
        {"accel_bias": np.round(bias, 4).tolist(), "warmup_drift": np.round(warm, 4).tolist(),
         "accel_white_ms2": round(white, 4), "accel_wander_ms2": round(wander, 4)}
    )  # fmt: skip
    columns: dict[str, FloatArray] = {}
    if gps:
        columns[vss.SPEED] = _gps_speed(rng, truth, t_out, meta)
    for i in range(3):
        columns[IMU_AXES[i]] = acc_s[:, i]
        columns[GYRO_AXES[i]] = gyro_s[:, i]
    return columns
