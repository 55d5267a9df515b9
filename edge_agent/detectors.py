"""Streaming detectors for driving events, vectorized over blocks with numpy.

Two kinds of rule:

- **Run rules** (idling, speeding, night driving, the yaw-rate fallback for cornering): a run of samples
  whose signal is past a threshold held for at least ``min_duration_s``; dips shorter than ``max_gap_s`` do
  not split it.
- **Lobe rules** (harsh braking, acceleration, cornering): a *lobe* is a run of samples past the lower
  *exit* threshold (hysteresis; dips back inside it shorter than ``max_gap_s`` do not end it). It is an event
  when its peak reaches the *entry* threshold and its impulse (the area of the signal over the lobe, in m/s)
  reaches ``min_area``: peak and area instead of "held for 0.5 s", which real, spiky and high-passed signals
  (a phone's linear acceleration) never satisfy. The event runs from the first to the last sample past the
  entry threshold. A lobe of the other sign that starts within ``rebound_s`` of an event's end is that event's
  rebound (a high-passed brake swings back; a lane change is a lateral S) and is not counted: one event with
  the direction of the first lobe. Lateral lobes are checked against the yaw rate and speed when the source
  has them: a_lat must be explained by v * yaw rate (same sign, at least 40 % of its impulse), so a pothole's
  lateral spike is not a corner; with the yaw rate but no speed, the yaw rate must turn the same way. With
  speed, a lobe while the car stands (below 2 km/h throughout) is not an event, nor is one beyond
  ``plausible_max`` (a knock, a dropped phone).

Detectors keep their open run or lobe across blocks, so the result does not depend on how a source chunks its
samples. An event's ``peak`` is the most extreme value of its signal, in the signal's unit (a harsh brake of
-5.2 m/s^2 has peak -5.2). The detectors expect the conditioned signal of :mod:`edge_agent.processing`
(:func:`~edge_agent.processing.conditioning_stages`: a 0.5 s box average, then a 10 Hz grid), which makes
peaks and areas the same whatever the sensor's sample rate.

Harsh thresholds come per sensor profile (:mod:`edge_agent.profiles`) and vehicle class
(:func:`thresholds_for`). Entry thresholds for a car, m/s^2 (accel / brake / corner), chosen on the realistic
simulator's seeds 1000-1023 (see :mod:`edge_agent.profiles` and the README for the sweep), never on the seeds
and real trips the tests and benchmark judge them on:

| profile | accel | brake | corner | least impulse (m/s) |
| --- | --- | --- | --- | --- |
| vehicle-bus | 2.2 | 2.4 | 2.5 | 1.2 / 1.4 / 1.6 |
| phone | 1.3 | 1.6 | 1.6 | 0.8 / 1.3 / 1.2 |
| aftermarket-imu | 1.9 | 2.6 | 2.5 | 1.2 / 1.4 / 1.8 |

Exit thresholds are 60 % of entry. Without a named profile (``DEFAULT_THRESHOLDS``, the agent's default and
the simulated fleet's) the telematics defaults apply, where there is no standard number: vendors put
passenger-car harsh events at 0.3-0.45 g (Digital Matter ships 4.4 m/s^2 for acceleration and braking and
5.5 m/s^2 for cornering as conservative defaults and 3.0 / 3.5 m/s^2 as sensitive "testing" values; Positrace
lists 200 / 250 / 300 milli-g for acceleration / braking / turns for heavier vehicles). Cars take the middle
of that range; taller and heavier classes trigger earlier, and every profile scales by the same ratios:

| class | harsh accel | harsh brake | harsh corner |
| --- | --- | --- | --- |
| car | >= 3.0 m/s^2 | <= -3.4 m/s^2 | abs >= 4.0 m/s^2 |
| suv | >= 2.8 | <= -3.2 | abs >= 3.5 |
| van | >= 2.5 | <= -3.0 | abs >= 3.2 |
| truck | >= 2.0 | <= -2.5 | abs >= 2.9 |

Without a lateral accelerometer, cornering falls back to the yaw
rate (abs >= 30 deg/s for 0.5 s, about 5 m/s^2 at 35 km/h). Speeding is speed above a configurable limit
(default 120 km/h) for 10 s; idling is standing (below 1 km/h) with the engine on for 5 minutes, the span
most anti-idling rules allow; night driving is moving between 22:00 and 05:00 local time for a minute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum, StrEnum

import numpy as np

from . import signals as vss
from .profiles import (
    CLASS_SCALE,
    PROFILES,
    TELEMATICS_DEFAULTS,
    LobeLimits,
    SensorProfile,
    parse_profile,
)
from .protocol import EventKind
from .signals import FloatArray, SignalBlock


class Direction(IntEnum):
    """How the signal is compared with the threshold value."""

    ABOVE = 1  #: x >= value
    BELOW = -1  #: x <= value
    MAGNITUDE = 0  #: abs(x) >= value


class VehicleClass(StrEnum):
    """Vehicle classes with their own harsh-event thresholds."""

    CAR = "car"
    SUV = "suv"
    VAN = "van"
    TRUCK = "truck"


@dataclass(frozen=True, slots=True)
class Threshold:
    """A detector's rule: ``signal`` compared with ``value`` in ``direction``, held for ``min_duration_s``.

    ``local_hours`` limits the rule to a window of local time (start, end), which may wrap past midnight.
    ``only_without`` makes the rule a fallback, used only when the source does not offer that signal.

    With ``exit_value`` set, the rule is a lobe rule (harsh events, see the module docstring): ``value`` is
    the entry threshold the peak must reach, ``exit_value`` the hysteresis threshold that delimits the lobe,
    ``min_area`` the least impulse (m/s) over the lobe, and ``min_duration_s`` is not used. ``confirm_yaw``
    asks a lateral lobe to be explained by the yaw rate (and speed).
    """

    kind: EventKind
    signal: str
    value: float
    direction: Direction
    min_duration_s: float = 0.5
    max_gap_s: float = 0.3
    unit: str = "m/s^2"
    local_hours: tuple[float, float] | None = None
    only_without: str | None = None
    exit_value: float | None = None
    min_area: float = 0.0
    rebound_s: float = 1.5
    plausible_max: float = 14.0
    confirm_yaw: bool = False

    @property
    def is_lobe(self) -> bool:
        """Whether this is a lobe rule (peak, area and hysteresis) rather than a held run."""
        return self.exit_value is not None


def harsh_rules(
    vehicle_class: VehicleClass = VehicleClass.CAR,
    profile: SensorProfile | str | None = None,
    *,
    scale: dict[EventKind, float] | None = None,
) -> tuple[Threshold, ...]:
    """The lobe rules of the harsh kinds for a vehicle class and sensor profile (None: the telematics
    defaults, :data:`~edge_agent.profiles.TELEMATICS_DEFAULTS`).

    ``scale`` multiplies a kind's entry and exit thresholds (per-vehicle self-calibration, bounded by its
    caller, see :mod:`edge_agent.calibration`).
    """
    spec = TELEMATICS_DEFAULTS if profile is None else PROFILES[parse_profile(profile)]
    k_accel, k_brake, k_corner = CLASS_SCALE[VehicleClass(vehicle_class).value]
    scale = scale or {}

    def rule(kind: EventKind, limits: LobeLimits, k: float, direction: Direction, signal: str) -> Threshold:
        k *= scale.get(kind, 1.0)
        sign = -1.0 if direction is Direction.BELOW else 1.0
        return Threshold(
            kind, signal, round(sign * limits.enter * k, 3), direction,
            exit_value=round(sign * limits.exit * k, 3), min_area=limits.min_area, rebound_s=spec.rebound_s,
            plausible_max=spec.plausible_max, confirm_yaw=signal == vss.ACCEL_LATERAL,
        )  # fmt: skip

    return (
        rule(EventKind.HARSH_BRAKE, spec.brake, k_brake, Direction.BELOW, vss.ACCEL_LONGITUDINAL),
        rule(EventKind.HARSH_ACCEL, spec.accel, k_accel, Direction.ABOVE, vss.ACCEL_LONGITUDINAL),
        rule(EventKind.HARSH_CORNER, spec.corner, k_corner, Direction.MAGNITUDE, vss.ACCEL_LATERAL),
    )


def thresholds_for(
    vehicle_class: VehicleClass = VehicleClass.CAR,
    *,
    speed_limit_kmh: float | None = 120.0,
    idle_min_s: float = 300.0,
    idle_speed_kmh: float = 1.0,
    night_hours: tuple[float, float] = (22.0, 5.0),
    profile: SensorProfile | str | None = None,
    scale: dict[EventKind, float] | None = None,
) -> tuple[Threshold, ...]:
    """The default rule set for a vehicle class and sensor profile; ``speed_limit_kmh=None`` turns speeding
    detection off; ``scale`` adjusts the harsh thresholds per kind (self-calibration)."""
    rules = [
        *harsh_rules(vehicle_class, profile, scale=scale),
        Threshold(
            EventKind.HARSH_CORNER, vss.YAW_RATE, 30.0, Direction.MAGNITUDE, unit="deg/s",
            only_without=vss.ACCEL_LATERAL,
        ),
        Threshold(
            EventKind.IDLING, vss.SPEED, idle_speed_kmh, Direction.BELOW, min_duration_s=idle_min_s,
            max_gap_s=2.0, unit="km/h",
        ),
        Threshold(
            EventKind.NIGHT_DRIVING, vss.SPEED, idle_speed_kmh, Direction.ABOVE, min_duration_s=60.0,
            max_gap_s=120.0, unit="km/h", local_hours=night_hours,
        ),
    ]  # fmt: skip
    if speed_limit_kmh is not None:
        rules.append(
            Threshold(
                EventKind.SPEEDING,
                vss.SPEED,
                speed_limit_kmh,
                Direction.ABOVE,
                min_duration_s=10.0,
                max_gap_s=2.0,
                unit="km/h",
            )
        )
    return tuple(rules)


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = thresholds_for(VehicleClass.CAR)


def with_speed_limit(thresholds: tuple[Threshold, ...], limit_kmh: float) -> tuple[Threshold, ...]:
    """The same rules with the speeding limit changed."""
    return tuple(replace(t, value=limit_kmh) if t.kind is EventKind.SPEEDING else t for t in thresholds)


@dataclass(frozen=True, slots=True)
class DetectedEvent:
    """A closed event: times in the source's epoch seconds, ``peak`` the most extreme value in ``unit``."""

    kind: EventKind
    start: float
    end: float
    peak: float
    unit: str

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last sample past the threshold."""
        return self.end - self.start


@dataclass(slots=True)
class _OpenRun:
    start: float
    last: float
    peak: float


def _more_extreme(direction: Direction, a: float, b: float) -> float:
    if direction is Direction.ABOVE:
        return max(a, b)
    if direction is Direction.BELOW:
        return min(a, b)
    return a if abs(a) >= abs(b) else b


def in_local_hours(t: FloatArray, utc_offset_s: float, hours: tuple[float, float]) -> np.ndarray:
    """Which epoch times fall in the local-time window ``hours`` (start, end), wrapping past midnight."""
    local = t + utc_offset_s
    # seconds since the local midnight before the first sample; blocks rarely span more than a day, so one
    # scalar floor and a subtraction replace a float modulo over the whole array
    midnight = np.floor(local[0] / 86_400.0) * 86_400.0 if local.size else 0.0
    seconds = local - midnight
    if local.size and seconds[-1] >= 86_400.0:
        seconds = seconds % 86_400.0
    start, end = hours[0] * 3600.0, hours[1] * 3600.0
    return (seconds >= start) & (seconds < end) if start <= end else (seconds >= start) | (seconds < end)


class RunDetector:
    """Detects one kind of event across consecutive blocks of one trip."""

    def __init__(self, threshold: Threshold, *, utc_offset_s: float = 0.0) -> None:
        self.threshold = threshold
        self.utc_offset_s = utc_offset_s
        self._open: _OpenRun | None = None

    def _mask(self, x: FloatArray, t: FloatArray) -> np.ndarray:
        thr = self.threshold
        # NaN compares False (without a warning): no sample is not an event
        if thr.direction is Direction.ABOVE:
            mask = x >= thr.value
        elif thr.direction is Direction.BELOW:
            mask = x <= thr.value
        else:
            mask = np.abs(x) >= thr.value
        if thr.local_hours is not None:
            mask &= in_local_hours(t, self.utc_offset_s, thr.local_hours)
        return mask

    def _peaks(self, values: FloatArray, starts: np.ndarray) -> FloatArray:
        direction = self.threshold.direction
        if direction is Direction.ABOVE:
            return np.maximum.reduceat(values, starts)
        if direction is Direction.BELOW:
            return np.minimum.reduceat(values, starts)
        hi, lo = np.maximum.reduceat(values, starts), np.minimum.reduceat(values, starts)
        return np.where(np.abs(lo) > np.abs(hi), lo, hi)

    def update(self, block: SignalBlock) -> list[DetectedEvent]:
        """Consume one block; return the events that closed within it."""
        thr = self.threshold
        column = block.get(thr.signal)
        if column is None or len(block) == 0:
            return []
        if thr.only_without is not None and block.get(thr.only_without) is not None:
            return []
        idx = np.flatnonzero(self._mask(column, block.t))
        closed: list[DetectedEvent] = []
        if idx.size == 0:
            if self._open is not None and block.t[-1] - self._open.last > thr.max_gap_s:
                closed += self._close()
            return closed
        times = block.t[idx]
        breaks = np.flatnonzero(np.diff(times) > thr.max_gap_s + 1e-9) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks - 1, [idx.size - 1]))
        peaks = self._peaks(column[idx], starts)
        runs = [
            _OpenRun(float(times[s]), float(times[e]), float(p))
            for s, e, p in zip(starts, ends, peaks, strict=True)
        ]
        if self._open is not None:
            if runs[0].start - self._open.last <= thr.max_gap_s + 1e-9:
                first = runs[0]
                peak = _more_extreme(thr.direction, self._open.peak, first.peak)
                runs[0] = _OpenRun(self._open.start, first.last, peak)
                self._open = None
            else:
                closed += self._close()
        # the last run may continue in the next block unless the block already ran past the gap tolerance
        last = runs[-1]
        if block.t[-1] - last.last <= thr.max_gap_s + 1e-9:
            self._open = runs.pop()
        closed += [e for e in (self._event(r) for r in runs) if e is not None]
        return closed

    def _event(self, run: _OpenRun) -> DetectedEvent | None:
        if run.last - run.start + 1e-9 < self.threshold.min_duration_s:
            return None
        return DetectedEvent(self.threshold.kind, run.start, run.last, run.peak, self.threshold.unit)

    def _close(self) -> list[DetectedEvent]:
        run, self._open = self._open, None
        if run is None:
            return []
        event = self._event(run)
        return [event] if event is not None else []

    def flush(self) -> list[DetectedEvent]:
        """End of trip: close an open run."""
        return self._close()


#: a lobe while the car stands (speed below this throughout, km/h) is not an event
STANDSTILL_KMH = 2.0
#: a lateral lobe must be explained by v * yaw rate to at least this share of its impulse
YAW_CONFIRM_SHARE = 0.4
#: without speed, the yaw rate must turn the lateral lobe's way at this mean rate (deg/s) at least
YAW_CONFIRM_DEG_S = 2.0
#: samples further apart than this (s) are not integrated across (a dropout is not an impulse)
_MAX_DT_S = 0.25


@dataclass(slots=True)
class Lobe:
    """One lobe's statistics, accumulated across blocks (times in epoch seconds, areas in m/s)."""

    sign: int
    start: float
    last: float
    peak: float
    area: float
    enter_first: float
    enter_last: float
    samples: int
    kin: float  # integral of v * yaw rate (m/s) where both are valid
    kin_samples: int
    yaw: float  # integral of the yaw rate (deg) where valid
    yaw_samples: int
    max_speed: float  # km/h, -inf without a valid speed sample

    def merge(self, later: Lobe) -> Lobe:
        """This lobe continued by ``later`` (same sign, within the gap tolerance)."""
        peak = later.peak if abs(later.peak) > abs(self.peak) else self.peak
        return Lobe(
            self.sign, self.start, later.last, peak, self.area + later.area,
            min(self.enter_first, later.enter_first), max(self.enter_last, later.enter_last),
            self.samples + later.samples, self.kin + later.kin, self.kin_samples + later.kin_samples,
            self.yaw + later.yaw, self.yaw_samples + later.yaw_samples, max(self.max_speed, later.max_speed),
        )  # fmt: skip


class LobeDetector:
    """Harsh events of one signal from its lobes (both signs), with hysteresis, rebound suppression and the
    speed and yaw-rate checks; see the module docstring.

    ``rules`` are the lobe rules of one signal: for the longitudinal acceleration a BELOW rule (braking) and
    an ABOVE rule (acceleration), for the lateral one a MAGNITUDE rule. ``observe`` sees every closed lobe
    that reached half its entry threshold, event or not, with the kind it would be (self-calibration learns
    from these).
    """

    def __init__(self, rules: list[Threshold], observe: LobeObserver | None = None) -> None:
        self.rules = rules
        self.signal = rules[0].signal
        self.observe = observe
        self._by_sign: dict[int, Threshold] = {}
        for rule in rules:
            if rule.direction in (Direction.ABOVE, Direction.MAGNITUDE):
                self._by_sign[1] = rule
            if rule.direction in (Direction.BELOW, Direction.MAGNITUDE):
                self._by_sign[-1] = rule
        self.max_gap_s = max(r.max_gap_s for r in rules)
        self._exit_pos, self._exit_neg = self._exit(1), self._exit(-1)
        self._enter_pos, self._enter_neg = self._enter(1), self._enter(-1)
        self._confirm_yaw = any(r.confirm_yaw for r in rules)
        self._open: Lobe | None = None
        self._prev_t: float | None = None
        self._last_lobe: tuple[int, float] | None = None  # sign and end of the last lobe past half entry
        self._last_event: tuple[int, float] | None = None  # sign and end of the last event's lobe
        self.suppressed = 0  # rebounds and lane-change second lobes not counted
        self.rejected = 0  # lobes past the entry threshold refused by the speed or yaw checks

    def _exit(self, sign: int) -> float:
        rule = self._by_sign.get(sign)
        return np.inf if rule is None or rule.exit_value is None else abs(rule.exit_value)

    def _enter(self, sign: int) -> float:
        rule = self._by_sign.get(sign)
        return np.inf if rule is None else abs(rule.value)

    def update(self, block: SignalBlock) -> list[DetectedEvent]:
        """Consume one block; return the events whose lobes closed within it."""
        x = block.get(self.signal)
        if x is None or len(block) == 0:
            return []
        rule0 = self.rules[0]
        if rule0.only_without is not None and block.get(rule0.only_without) is not None:
            return []
        t = block.t
        prev = self._prev_t if self._prev_t is not None else (t[0] - (t[1] - t[0] if t.size > 1 else 0.0))
        self._prev_t = float(t[-1])
        closed: list[Lobe] = []
        hi, lo = x.max(), x.min()  # NaN if the block has a gap: then the full test below
        if hi < self._exit_pos and lo > -self._exit_neg:
            idx = np.empty(0, dtype=np.intp)  # most blocks: nothing past either exit threshold
        else:
            pos = x >= self._exit_pos  # NaN compares False: no sample is in no lobe
            idx = np.flatnonzero(pos | (x <= -self._exit_neg))
            if (
                self.observe is None
                and self._open is None
                and hi < self._enter_pos
                and lo > -self._enter_neg
                and t[-1] - t[idx[-1]] > self.max_gap_s + 1e-9
            ):
                # lobes that begin and end in this block without reaching an entry threshold are no events,
                # and nobody watches them: the common case of ordinary driving, skipped cheaply
                idx = idx[:0]
        if idx.size:
            s_idx, t_idx = np.where(pos[idx], 1, -1), t[idx]
            breaks = np.flatnonzero((np.diff(s_idx) != 0) | (np.diff(t_idx) > self.max_gap_s + 1e-9)) + 1
            starts = np.concatenate(([0], breaks))
            lobes = self._lobes(block, x, prev, idx, starts)
            if self._open is not None:
                first = lobes[0]
                if first.sign == self._open.sign and first.start - self._open.last <= self.max_gap_s + 1e-9:
                    lobes[0] = self._open.merge(first)
                else:
                    closed.append(self._open)
                self._open = None
            if t[-1] - lobes[-1].last <= self.max_gap_s + 1e-9:
                self._open = lobes.pop()
            closed += lobes
        elif self._open is not None and t[-1] - self._open.last > self.max_gap_s:
            closed.append(self._open)
            self._open = None
        return [e for e in (self._judge(lobe) for lobe in closed) if e is not None]

    def _lobes(
        self, block: SignalBlock, x: FloatArray, prev_t: float, idx: np.ndarray, starts: np.ndarray
    ) -> list[Lobe]:
        # one maximum.reduceat and one add.reduceat over stacked columns: per block, a handful of numpy
        # calls whatever the number of lobes (the agent's throughput depends on it)
        t = block.t
        xs, ts = x[idx], t[idx]
        # each sample stands for the time since the one before it (a dropout is not an impulse)
        dts = np.clip(ts - np.where(idx > 0, t[np.maximum(idx - 1, 0)], prev_t), 0.0, _MAX_DT_S)
        n = idx.size
        ends = np.concatenate((starts[1:], [n])) - 1
        entered = np.abs(xs) >= np.where(xs > 0, self._enter_pos, self._enter_neg)
        speed = block.get(vss.SPEED)
        v = np.where(np.isnan(speed[idx]), -np.inf, speed[idx]) if speed is not None else np.full(n, -np.inf)
        maxima = np.maximum.reduceat(
            np.column_stack([xs, -xs, np.where(entered, ts, -np.inf), np.where(entered, -ts, -np.inf), v]),
            starts, axis=0,
        )  # fmt: skip
        yaw = block.get(vss.YAW_RATE) if self._confirm_yaw else None
        if yaw is None:  # only lateral lobes are checked against the yaw rate
            sums = np.zeros((starts.size, 5))
            sums[:, 0] = np.add.reduceat(np.abs(xs) * dts, starts)
        else:
            w = yaw[idx]
            kv = np.radians(w) * (speed[idx] if speed is not None else np.nan) / 3.6
            w_ok, kv_ok = ~np.isnan(w), ~np.isnan(kv)
            sums = np.add.reduceat(
                np.column_stack([
                    np.abs(xs) * dts, np.where(w_ok, w * dts, 0.0), w_ok, np.where(kv_ok, kv * dts, 0.0),
                    kv_ok,
                ]),
                starts, axis=0,
            )  # fmt: skip
        signs = np.where(xs[starts] > 0, 1, -1)
        peaks = np.where(signs > 0, maxima[:, 0], -maxima[:, 1])
        rows = zip(
            signs.tolist(), ts[starts].tolist(), ts[ends].tolist(), peaks.tolist(), sums[:, 0].tolist(),
            (-maxima[:, 3]).tolist(), maxima[:, 2].tolist(), (ends - starts + 1).tolist(),
            sums[:, 3].tolist(),
            sums[:, 4].astype(int).tolist(), sums[:, 1].tolist(), sums[:, 2].astype(int).tolist(),
            maxima[:, 4].tolist(), strict=True,
        )  # fmt: skip
        return [Lobe(*row) for row in rows]

    def _judge(self, lobe: Lobe) -> DetectedEvent | None:
        rule = self._by_sign[lobe.sign]
        if abs(lobe.peak) >= 0.5 * abs(rule.value):
            previous, self._last_lobe = self._last_lobe, (lobe.sign, lobe.last)
            swing = (
                previous is not None
                and previous[0] != lobe.sign
                and lobe.start - previous[1] <= rule.rebound_s
            )
            if self.observe is not None and not swing:
                # the swing back of a manoeuvre (a high-pass's rebound, a lane change's second half) is
                # driving, not the installation: self-calibration does not see it
                self.observe(rule.kind, abs(lobe.peak), lobe.area, lobe.last - lobe.start)
        if not np.isfinite(lobe.enter_first) or lobe.area < rule.min_area:
            return None
        if self._last_event is not None:
            sign, end = self._last_event
            if sign != lobe.sign and 0.0 <= lobe.start - end <= rule.rebound_s:
                self.suppressed += 1  # the swing back of the event before: counted once, as the first lobe
                return None
        if not self._plausible(rule, lobe):
            self.rejected += 1
            return None
        # the rebound window starts where the lobe ends (back inside the exit threshold): a long hold that a
        # high-pass has decayed swings back at its release, which may come seconds after the peak; but no
        # later than rebound_s after the event, so that ordinary driving past the exit threshold that
        # follows an event does not stretch its window over the next real manoeuvre
        self._last_event = (lobe.sign, min(lobe.last, lobe.enter_last + rule.rebound_s))
        return DetectedEvent(rule.kind, lobe.enter_first, lobe.enter_last, lobe.peak, rule.unit)

    @staticmethod
    def _plausible(rule: Threshold, lobe: Lobe) -> bool:
        if abs(lobe.peak) > rule.plausible_max:
            return False
        if lobe.max_speed > -np.inf and lobe.max_speed < STANDSTILL_KMH:
            return False  # the car stood all along: a knock on the sensor, not a manoeuvre
        if rule.confirm_yaw:
            if lobe.kin_samples >= 0.5 * lobe.samples:
                # a_lat = v * yaw rate for a car that does not skid: a lateral spike the yaw rate and speed
                # do not explain (a pothole, a door) is not a corner
                return lobe.sign * lobe.kin >= YAW_CONFIRM_SHARE * lobe.area
            if lobe.yaw_samples >= 0.5 * lobe.samples:
                duration = max(lobe.last - lobe.start, 0.1)
                return lobe.sign * lobe.yaw >= YAW_CONFIRM_DEG_S * duration
        return True

    def flush(self) -> list[DetectedEvent]:
        """End of trip: close an open lobe."""
        lobe, self._open = self._open, None
        event = self._judge(lobe) if lobe is not None else None
        return [event] if event is not None else []


#: sees each closed lobe that reached half its entry threshold and is not the swing back of the lobe before:
#: (kind, |peak| in m/s^2, area in m/s, duration in s)
LobeObserver = Callable[[EventKind, float, float, float], None]


class EventDetectors:
    """All configured detectors of one trip, fed block by block."""

    def __init__(
        self,
        thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS,
        *,
        utc_offset_s: float = 0.0,
        observe: LobeObserver | None = None,
    ) -> None:
        self.thresholds = thresholds
        self._detectors: list[RunDetector | LobeDetector] = [
            RunDetector(t, utc_offset_s=utc_offset_s) for t in thresholds if not t.is_lobe
        ]
        by_signal: dict[str, list[Threshold]] = {}
        for t in thresholds:
            if t.is_lobe:
                by_signal.setdefault(t.signal, []).append(t)
        self.lobes = [LobeDetector(rules, observe) for rules in by_signal.values()]
        self._detectors += self.lobes

    def update(self, block: SignalBlock) -> list[DetectedEvent]:
        """Events that closed in this block, in start order."""
        events = [e for d in self._detectors for e in d.update(block)]
        return sorted(events, key=lambda e: e.start)

    def flush(self) -> list[DetectedEvent]:
        """Close every open run at the end of a trip."""
        events = [e for d in self._detectors for e in d.flush()]
        return sorted(events, key=lambda e: e.start)
