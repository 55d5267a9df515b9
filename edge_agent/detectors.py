"""Streaming threshold detectors for driving events, vectorized over blocks with numpy.

An event is a run of samples whose signal is past a threshold held for at least ``min_duration_s``. Dips
shorter than ``max_gap_s`` inside one manoeuvre do not split it, and a run that reaches the end of a block
stays open until a later block (or the trip's end) closes it, so the result does not depend on how a source
chunks its samples. An event's ``peak`` is the most extreme value of its signal during the event, in the
signal's unit (a harsh brake of -5.2 m/s^2 has peak -5.2).

Default thresholds per vehicle class (:func:`thresholds_for`), from telematics practice, where there is no
standard number: vendors put passenger-car harsh events at 0.3-0.45 g (Digital Matter ships 4.4 m/s^2 for
acceleration and braking and 5.5 m/s^2 for cornering as conservative defaults and 3.0 / 3.5 m/s^2 as
sensitive "testing" values; Positrace lists 200 / 250 / 300 milli-g for acceleration / braking / turns for
heavier vehicles). Cars take the middle of that range; taller and heavier classes trigger earlier.

| class | harsh accel | harsh brake | harsh corner |
| --- | --- | --- | --- |
| car | >= 3.0 m/s^2 | <= -3.4 m/s^2 | abs >= 4.0 m/s^2 |
| suv | >= 2.8 | <= -3.2 | abs >= 3.5 |
| van | >= 2.5 | <= -3.0 | abs >= 3.2 |
| truck | >= 2.0 | <= -2.5 | abs >= 2.9 |

Each harsh event must hold for 0.5 s. Without a lateral accelerometer, cornering falls back to the yaw rate
(abs >= 30 deg/s, about 5 m/s^2 at 35 km/h). Speeding is speed above a configurable limit (default
120 km/h) for 10 s; idling is standing (below 1 km/h) with the engine on for 5 minutes, the span most
anti-idling rules allow; night driving is moving between 22:00 and 05:00 local time for at least a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum, StrEnum

import numpy as np

from . import signals as vss
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


_HARSH: dict[VehicleClass, tuple[float, float, float]] = {
    VehicleClass.CAR: (3.0, 3.4, 4.0),
    VehicleClass.SUV: (2.8, 3.2, 3.5),
    VehicleClass.VAN: (2.5, 3.0, 3.2),
    VehicleClass.TRUCK: (2.0, 2.5, 2.9),
}


def thresholds_for(
    vehicle_class: VehicleClass = VehicleClass.CAR,
    *,
    speed_limit_kmh: float | None = 120.0,
    idle_min_s: float = 300.0,
    idle_speed_kmh: float = 1.0,
    night_hours: tuple[float, float] = (22.0, 5.0),
) -> tuple[Threshold, ...]:
    """The default rule set for a vehicle class; ``speed_limit_kmh=None`` turns speeding detection off."""
    accel, brake, corner = _HARSH[VehicleClass(vehicle_class)]
    rules = [
        Threshold(EventKind.HARSH_BRAKE, vss.ACCEL_LONGITUDINAL, -brake, Direction.BELOW),
        Threshold(EventKind.HARSH_ACCEL, vss.ACCEL_LONGITUDINAL, accel, Direction.ABOVE),
        Threshold(EventKind.HARSH_CORNER, vss.ACCEL_LATERAL, corner, Direction.MAGNITUDE),
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


class EventDetectors:
    """All configured detectors of one trip, fed block by block."""

    def __init__(
        self, thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS, *, utc_offset_s: float = 0.0
    ) -> None:
        self.thresholds = thresholds
        self._detectors = [RunDetector(t, utc_offset_s=utc_offset_s) for t in thresholds]

    def update(self, block: SignalBlock) -> list[DetectedEvent]:
        """Events that closed in this block, in start order."""
        events = [e for d in self._detectors for e in d.update(block)]
        return sorted(events, key=lambda e: e.start)

    def flush(self) -> list[DetectedEvent]:
        """Close every open run at the end of a trip."""
        events = [e for d in self._detectors for e in d.flush()]
        return sorted(events, key=lambda e: e.start)
