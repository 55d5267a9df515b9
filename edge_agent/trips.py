"""Trip segmentation and running trip summaries.

A trip is a run of samples with no time gap longer than ``trip_gap_s`` (the car was parked, the source
stopped) and no step back in time (a clock set back). The summary is accumulated block by block with numpy,
so memory does not grow with trip length:

- distance integrates speed with the trapezoid rule over consecutive samples; missing speed samples hold
  the last value, since the car kept moving while a source dropped samples;
- idle time is the time spent below ``idle_speed_kmh``; moving time the rest;
- night share is the share of time whose local hour lies in [``night_start_h``, ``night_end_h``) across
  midnight (22:00-05:00 by default), using the vehicle's time zone offset at the trip's start.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from . import signals as vss
from .detectors import in_local_hours
from .protocol import EventKind, FeatureUsage, GeoPoint, TripSummaryV1
from .scoring import eco_score, safety_score
from .signals import SignalBlock


@dataclass(frozen=True, slots=True)
class TripSettings:
    """How trips are cut and summarized."""

    trip_gap_s: float = 300.0
    min_trip_s: float = 30.0
    idle_speed_kmh: float = 1.0
    night_start_h: float = 22.0
    night_end_h: float = 5.0
    timezone: str = "UTC"
    #: litres; turns the fuel level's percent into litres when the source does not report the capacity
    tank_capacity_l: float | None = None


def _breaks(step: np.ndarray | float, gap_s: float) -> np.ndarray | bool:
    # a pause longer than gap_s ends a trip; so does time going backwards (a clock set back, e.g. by a GPS
    # time fix after a cold start), since nothing measured across such a jump can be trusted
    return (step > gap_s) | (step < 0)


def split_at_gaps(
    block: SignalBlock, last_t: float | None, gap_s: float
) -> Iterator[tuple[bool, SignalBlock]]:
    """Split a block where samples are ``gap_s`` apart or time goes back; yield (new_trip, piece)."""
    if len(block) == 0:
        return
    cuts = np.flatnonzero(_breaks(block.t[1:] - block.t[:-1], gap_s)) + 1
    if cuts.size == 0:  # the common case: one piece, no copy
        yield last_t is None or bool(_breaks(float(block.t[0]) - last_t, gap_s)), block
        return
    bounds = [0, *cuts.tolist(), len(block)]
    for i in range(len(bounds) - 1):
        new_trip = i > 0 or last_t is None or bool(_breaks(float(block.t[0]) - last_t, gap_s))
        yield new_trip, block.slice(bounds[i], bounds[i + 1])


@functools.lru_cache(maxsize=64)
def _feature_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The feature signals among a block's signals (a source's layout rarely changes: cached)."""
    return tuple(n for n in names if vss.is_feature(n))


def _hold_last(column: np.ndarray, carried: float) -> np.ndarray:
    """Fill missing samples (NaN) with the last value seen, carried over from earlier blocks.

    A source that drops samples does not stop the car: holding the last speed keeps distance and idle
    time close to the truth over short dropouts. Leading NaNs with nothing carried take the first value.
    """
    valid = ~np.isnan(column)
    if valid.all():
        return column
    idx = np.where(valid, np.arange(column.size), -1)
    np.maximum.accumulate(idx, out=idx)
    first = carried if not math.isnan(carried) else float(column[valid][0])
    return np.where(idx >= 0, column[np.maximum(idx, 0)], first)


def _first_valid(column: np.ndarray) -> float | None:
    if column.size and not math.isnan(column[0]):
        return float(column[0])  # the common case, without a scan
    idx = np.flatnonzero(~np.isnan(column))
    return float(column[idx[0]]) if idx.size else None


def _last_valid(column: np.ndarray) -> float | None:
    if column.size and not math.isnan(column[-1]):
        return float(column[-1])
    idx = np.flatnonzero(~np.isnan(column))
    return float(column[idx[-1]]) if idx.size else None


@dataclass(slots=True)
class _FeatureState:
    """One feature signal in one trip: how often it was switched on, for how long, and its last state."""

    activations: int = 0
    active_s: float = 0.0
    on: bool | None = None  # None: no sample yet


@dataclass(slots=True)
class TripAccumulator:
    """The running summary of the trip in progress."""

    settings: TripSettings
    start: float
    utc_offset_s: float
    last_t: float | None = None
    last_speed: float = math.nan
    samples: int = 0
    distance_km: float = 0.0
    idle_s: float = 0.0
    moving_s: float = 0.0
    night_s: float = 0.0
    max_speed: float = 0.0
    #: moments while moving, for the driving-style features (edge_agent.features)
    moving_speed2_s: float = 0.0
    moving_abs_lon_s: float = 0.0
    moving_lat2_s: float = 0.0
    motion_s: float = 0.0  # moving seconds with acceleration samples
    stops: int = 0
    was_idle: bool = True
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    event_counts: dict[EventKind, int] = field(default_factory=dict)
    event_seconds: dict[EventKind, float] = field(default_factory=dict)
    energy_kwh: float | None = None
    features: dict[str, _FeatureState] = field(default_factory=dict)
    dtcs: list[str] = field(default_factory=list)

    @classmethod
    def begin(cls, settings: TripSettings, start: float) -> TripAccumulator:
        """Open a trip whose first sample is at epoch ``start``."""
        tz = ZoneInfo(settings.timezone)
        offset = datetime.fromtimestamp(start, tz).utcoffset()
        return cls(settings, start, offset.total_seconds() if offset else 0.0)

    @property
    def trip_id(self) -> str:
        """Unique per vehicle: the start time in milliseconds."""
        return f"T{round(self.start * 1000)}"

    def add(self, block: SignalBlock) -> None:
        """Fold one block of this trip into the summary."""
        n = len(block)
        if n == 0:
            return
        t = block.t
        dt = np.empty_like(t)  # the interval ending at each sample
        dt[0] = t[0] - self.last_t if self.last_t is not None else 0.0
        np.subtract(t[1:], t[:-1], out=dt[1:])
        raw_speed = block.get(vss.SPEED)
        if raw_speed is not None and not (math.isnan(self.last_speed) and np.isnan(raw_speed).all()):
            speed = _hold_last(raw_speed, self.last_speed)
            prev_v = self.last_speed if not math.isnan(self.last_speed) else speed[0]
            v_prev = np.concatenate(([prev_v], speed[:-1]))
            self.distance_km += float(np.dot((speed + v_prev) / 2, dt)) / 3600.0
            idle = speed < self.settings.idle_speed_kmh
            moving_dt = np.where(idle, 0.0, dt)
            self.idle_s += float(dt[idle].sum())
            self.moving_s += float(moving_dt.sum())
            self.max_speed = max(self.max_speed, float(speed.max()))
            self.last_speed = float(speed[-1])
            self.moving_speed2_s += float(np.dot(speed * speed, moving_dt))
            self.stops += int(np.count_nonzero(idle[1:] & ~idle[:-1])) + int(
                bool(idle[0]) and not self.was_idle
            )
            self.was_idle = bool(idle[-1])
            lon, lat = block.get(vss.ACCEL_LONGITUDINAL), block.get(vss.ACCEL_LATERAL)
            if lon is not None and lat is not None:
                missing = np.isnan(lon) | np.isnan(lat)
                if missing.any():  # rare: only then pay for masking
                    moving_dt = np.where(missing, 0.0, moving_dt)
                    lon, lat = np.where(missing, 0.0, lon), np.where(missing, 0.0, lat)
                self.motion_s += float(moving_dt.sum())
                self.moving_abs_lon_s += float(np.dot(np.abs(lon), moving_dt))
                self.moving_lat2_s += float(np.dot(lat * lat, moving_dt))
        window = (self.settings.night_start_h, self.settings.night_end_h)
        night = in_local_hours(t - dt, self.utc_offset_s, window)
        self.night_s += float(dt[night].sum())
        power = block.get(vss.MOTOR_POWER)
        if power is not None:
            watts = np.where(np.isnan(power), 0.0, power) if np.isnan(power).any() else power
            self.energy_kwh = (self.energy_kwh or 0.0) + float(np.dot(watts, dt)) / 3600.0
        for name in _feature_names(tuple(block.signals)):
            self._add_feature(name, block.signals[name], dt)
        for _t, code in block.dtcs:
            if code not in self.dtcs:
                self.dtcs.append(code)
        for name in (
            vss.LATITUDE,
            vss.LONGITUDE,
            vss.ODOMETER,
            vss.FUEL_LEVEL,
            vss.STATE_OF_CHARGE,
            vss.TANK_CAPACITY,
        ):
            column = block.get(name)
            if column is None:
                continue
            if name not in self.first:
                value = _first_valid(column)
                if value is not None:
                    self.first[name] = value
            value = _last_valid(column)
            if value is not None:
                self.last[name] = value
        self.samples += n
        self.last_t = float(t[-1])

    def _add_feature(self, name: str, column: np.ndarray, dt: np.ndarray) -> None:
        state = self.features.setdefault(name, _FeatureState())
        if state.on is None and np.isnan(column).all():
            return  # no sample of this feature yet
        lo, hi = float(column.min()), float(column.max())  # NaN if any sample is missing
        if not math.isnan(lo) and (lo > 0 or hi <= 0):
            # steady for the whole block, the common case: on (or off) throughout
            if lo > 0:
                state.activations += 0 if state.on else 1
                state.active_s += float(dt.sum())
            state.on = lo > 0
            return
        on = _hold_last(column, math.nan if state.on is None else float(state.on)) > 0
        previous = np.concatenate(([bool(state.on)], on[:-1]))
        state.activations += int(np.count_nonzero(on & ~previous))
        state.active_s += float(dt[on].sum())
        state.on = bool(on[-1])

    def count(self, kind: EventKind, duration_s: float = 0.0) -> None:
        """Count one detected event of ``kind`` lasting ``duration_s`` in this trip."""
        self.event_counts[kind] = self.event_counts.get(kind, 0) + 1
        self.event_seconds[kind] = self.event_seconds.get(kind, 0.0) + duration_s

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last sample."""
        return (self.last_t or self.start) - self.start

    def _point(self, values: dict[str, float]) -> GeoPoint | None:
        if vss.LATITUDE in values and vss.LONGITUDE in values:
            return GeoPoint(lat=values[vss.LATITUDE], lon=values[vss.LONGITUDE])
        return None

    def _used(self, name: str) -> float | None:
        if name in self.first and name in self.last:
            return round(self.first[name] - self.last[name], 4)
        return None

    def _fuel_litres(self) -> float | None:
        used_pct = self._used(vss.FUEL_LEVEL)
        capacity = self.last.get(vss.TANK_CAPACITY, self.settings.tank_capacity_l)
        if used_pct is None or capacity is None:
            return None
        return round(used_pct / 100.0 * capacity, 3)

    def summary(self) -> TripSummaryV1:
        """The wire message for this trip."""
        duration = self.duration_s
        night_share = round(min(1.0, self.night_s / duration), 4) if duration > 0 else 0.0
        speeding_s = self.event_seconds.get(EventKind.SPEEDING, 0.0)
        return TripSummaryV1(
            trip_id=self.trip_id,
            started_at=datetime.fromtimestamp(self.start, UTC),
            ended_at=datetime.fromtimestamp(self.last_t or self.start, UTC),
            distance_km=round(self.distance_km, 4),
            duration_s=round(duration, 3),
            moving_s=round(self.moving_s, 3),
            idle_s=round(self.idle_s, 3),
            max_speed_kmh=round(self.max_speed, 2),
            avg_speed_kmh=round(self.distance_km / duration * 3600, 2) if duration > 0 else 0.0,
            night_share=night_share,
            event_counts=dict(self.event_counts),
            start_location=self._point(self.first),
            end_location=self._point(self.last),
            odometer_km=self.last.get(vss.ODOMETER),
            fuel_used_pct=self._used(vss.FUEL_LEVEL),
            soc_used_pct=self._used(vss.STATE_OF_CHARGE),
            fuel_used_l=self._fuel_litres(),
            energy_used_kwh=round(self.energy_kwh, 4) if self.energy_kwh is not None else None,
            samples=self.samples,
            safety_score=safety_score(
                self.distance_km,
                self.event_counts,
                moving_s=self.moving_s,
                speeding_s=speeding_s,
                night_share=night_share,
            ),
            eco_score=eco_score(
                self.distance_km,
                self.event_counts,
                duration_s=duration,
                idle_s=self.idle_s,
                moving_s=self.moving_s,
                speeding_s=speeding_s,
            ),
            feature_usage={
                name: FeatureUsage(activations=f.activations, active_s=round(f.active_s, 3))
                for name, f in sorted(self.features.items())
                if f.on is not None
            },
            dtcs=list(self.dtcs),
        )
