"""Least data per role: how precise a position a key sees, and which R&D groups are too small to show.

Positions (trip start and end, event positions, the latest latitude and longitude): an ``admin`` key sees them
as stored; every other key sees them rounded to ``COARSE_DECIMALS`` decimal degrees (0.01 deg: 1.1 km north-
south, 1.1 km x cos(latitude) east-west), enough for a fleet map and a region, not for a home address. Other
``Vehicle.CurrentLocation.*`` signals (altitude, heading, accuracy) are left out for them.
"""

from __future__ import annotations

import math
from typing import Any

from cloud.access.keys import Scope

from .auth import Principal

COARSE_DECIMALS = 2
LOCATION_PREFIX = "Vehicle.CurrentLocation."


def fine_location(principal: Principal) -> bool:
    """True when ``principal`` may see positions as stored."""
    return Scope.ADMIN in principal.scopes


def coarse(value: float | None) -> float | None:
    """A coordinate rounded to ``COARSE_DECIMALS`` decimals (None, NaN and infinities as they are)."""
    if value is None or not math.isfinite(value):
        return value
    return round(value, COARSE_DECIMALS)


def coarse_row(row: dict[str, Any], fields: tuple[str, ...], principal: Principal) -> dict[str, Any]:
    """``row`` with its coordinate ``fields`` coarsened unless ``principal`` sees positions as stored."""
    if fine_location(principal):
        return row
    return {k: coarse(v) if k in fields else v for k, v in row.items()}


def suppress_small_groups(groups: list[dict[str, Any]], min_size: int) -> tuple[list[dict[str, Any]], int]:
    """Groups of at least ``min_size`` vehicles, with fault codes seen on fewer vehicles left out too; and how
    many groups were left out."""
    kept = []
    for group in groups:
        if int(group["vehicles"]) < min_size:
            continue
        codes = [c for c in group.get("top_codes", []) if int(c["vehicles"]) >= min_size]
        kept.append({**group, "top_codes": codes})
    return kept, len(groups) - len(kept)
