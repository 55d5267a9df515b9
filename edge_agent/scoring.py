"""Trip scores, 0-100 (higher is better), from what the trip summary already counts.

Both scores decay exponentially with the rate of harsh events per 100 km, so one event on a long trip
weighs less than one on a short hop, and they never go negative. Distance is floored at 5 km so that a
single event on a 300 m trip does not zero the score.

    exposure_km   = max(distance_km, 5)
    harsh_rate    = 100 * (1.0 * brakes + 0.8 * accelerations + 1.0 * corners) / exposure_km
    speeding      = seconds speeding / seconds moving        (0..1)
    idle          = seconds standing / trip seconds          (0..1)

    safety = 100 * exp(-0.05 * harsh_rate) * (1 - 0.5 * speeding) * (1 - 0.1 * night_share)
    eco    = 100 * exp(-0.04 * 100 * (brakes + accelerations) / exposure_km) * (1 - 0.5 * idle)
                 * (1 - 0.3 * speeding)

Reading the numbers: 1 harsh event per 100 km gives a safety score of 95, 10 give 61, 30 give 22. Braking
and acceleration waste energy, so they drive the eco score; cornering does not. Idling wastes fuel without
distance; speeding costs both (air drag grows with the square of speed, and risk with speed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .protocol import EventKind

MIN_EXPOSURE_KM = 5.0


def _share(part: float, whole: float) -> float:
    return min(max(part / whole, 0.0), 1.0) if whole > 0 else 0.0


def safety_score(
    distance_km: float,
    counts: Mapping[EventKind, int],
    *,
    moving_s: float,
    speeding_s: float,
    night_share: float,
) -> float:
    """Safety score 0-100 of one trip (formula in the module docstring)."""
    exposure = max(distance_km, MIN_EXPOSURE_KM)
    weighted = (
        1.0 * counts.get(EventKind.HARSH_BRAKE, 0)
        + 0.8 * counts.get(EventKind.HARSH_ACCEL, 0)
        + 1.0 * counts.get(EventKind.HARSH_CORNER, 0)
    )
    harsh_rate = 100.0 * weighted / exposure
    speeding = _share(speeding_s, moving_s)
    score = (
        100.0 * math.exp(-0.05 * harsh_rate) * (1 - 0.5 * speeding) * (1 - 0.1 * min(max(night_share, 0), 1))
    )
    return round(min(max(score, 0.0), 100.0), 1)


def eco_score(
    distance_km: float,
    counts: Mapping[EventKind, int],
    *,
    duration_s: float,
    idle_s: float,
    moving_s: float,
    speeding_s: float,
) -> float:
    """Eco score 0-100 of one trip (formula in the module docstring)."""
    exposure = max(distance_km, MIN_EXPOSURE_KM)
    rate = 100.0 * (counts.get(EventKind.HARSH_BRAKE, 0) + counts.get(EventKind.HARSH_ACCEL, 0)) / exposure
    score = 100.0 * math.exp(-0.04 * rate) * (1 - 0.5 * _share(idle_s, duration_s))
    score *= 1 - 0.3 * _share(speeding_s, moving_s)
    return round(min(max(score, 0.0), 100.0), 1)
