"""Model inputs computed on the edge, in numpy: the same code serves training (models/) and inference.

Driving style, per trip (from the trip's running sums, so no sample is kept):

| # | feature | meaning |
| --- | --- | --- |
| 0 | avg_speed_kmh | distance over trip time |
| 1 | moving_speed_kmh | distance over moving time |
| 2 | max_speed_kmh | highest speed |
| 3 | speed_std_kmh | spread of speed while moving |
| 4 | mean_abs_accel_lon | mean absolute longitudinal acceleration while moving (m/s^2) |
| 5 | rms_accel_lat | root mean square lateral acceleration while moving (m/s^2) |
| 6-8 | harsh_{brake,accel,corner}_per_100km | harsh events per 100 km (distance floored at 5 km) |
| 9 | idle_share | share of trip time standing |
| 10 | night_share | share of trip time at night |
| 11 | stops_per_10km | stops per 10 km (distance floored at 1 km) |
| 12 | log_distance_km | log(1 + distance) |

Vehicle health, per window (one block, at least 30 s of samples with the engine running): coolant mean and
maximum (°C), 12 V voltage mean and minimum (V), engine-speed jitter (median absolute difference of
consecutive samples, rpm), mean speed (km/h).
"""

from __future__ import annotations

import math

import numpy as np

from . import signals as vss
from .protocol import EventKind
from .signals import SignalBlock
from .trips import TripAccumulator

STYLE_FEATURES: tuple[str, ...] = (
    "avg_speed_kmh",
    "moving_speed_kmh",
    "max_speed_kmh",
    "speed_std_kmh",
    "mean_abs_accel_lon",
    "rms_accel_lat",
    "harsh_brake_per_100km",
    "harsh_accel_per_100km",
    "harsh_corner_per_100km",
    "idle_share",
    "night_share",
    "stops_per_10km",
    "log_distance_km",
)

HEALTH_FEATURES: tuple[str, ...] = (
    "coolant_mean_c",
    "coolant_max_c",
    "voltage_mean_v",
    "voltage_min_v",
    "rpm_jitter",
    "speed_mean_kmh",
)
HEALTH_SIGNALS = (vss.COOLANT_TEMPERATURE, vss.BATTERY_VOLTAGE, vss.ENGINE_SPEED, vss.SPEED)
MIN_HEALTH_WINDOW_S = 30.0


def style_features(trip: TripAccumulator) -> np.ndarray:
    """The driving-style feature vector of a (closed) trip, float32, in :data:`STYLE_FEATURES` order."""
    duration = max(trip.duration_s, 1e-9)
    moving = max(trip.moving_s, 1e-9)
    km = trip.distance_km
    exposure = max(km, 5.0)
    mean_moving_speed = km / moving * 3600.0
    variance = max(trip.moving_speed2_s / moving - mean_moving_speed**2, 0.0)
    motion = max(trip.motion_s, 1e-9)

    def per_100km(kind: EventKind) -> float:
        return 100.0 * trip.event_counts.get(kind, 0) / exposure

    values = (
        km / duration * 3600.0,
        mean_moving_speed,
        trip.max_speed,
        math.sqrt(variance),
        trip.moving_abs_lon_s / motion,
        math.sqrt(trip.moving_lat2_s / motion),
        per_100km(EventKind.HARSH_BRAKE),
        per_100km(EventKind.HARSH_ACCEL),
        per_100km(EventKind.HARSH_CORNER),
        trip.idle_s / duration,
        min(trip.night_s / duration, 1.0),
        10.0 * trip.stops / max(km, 1.0),
        math.log1p(km),
    )
    return np.asarray(values, dtype=np.float32)


def health_features(block: SignalBlock) -> np.ndarray | None:
    """The health feature vector of one window, or None when the signals or the running engine are missing."""
    columns = [block.get(name) for name in HEALTH_SIGNALS]
    if any(c is None for c in columns) or len(block) < 2:
        return None
    coolant, voltage, rpm, speed = columns
    assert coolant is not None and voltage is not None and rpm is not None and speed is not None
    running = (rpm > 300) & ~np.isnan(coolant) & ~np.isnan(voltage)
    if block.t[-1] - block.t[0] < MIN_HEALTH_WINDOW_S or np.count_nonzero(running) < 20:
        return None
    steps = np.diff(rpm[running])
    values = (
        float(np.mean(coolant[running])),
        float(np.max(coolant[running])),
        float(np.mean(voltage[running])),
        float(np.min(voltage[running])),
        # median, not standard deviation: gear shifts are rare large steps, a misfire roughens every step
        float(np.median(np.abs(steps))) if steps.size else 0.0,
        float(np.nanmean(speed)),
    )
    return np.asarray(values, dtype=np.float32)
