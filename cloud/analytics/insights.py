"""R&D insights: how the cars are used and how they fare, per vehicle group and time window, in SQL.

Groups are any combination of ``model``, ``trim_level``, ``model_year``, ``region``, ``powertrain``; the
window is on trip start (and a fault code's first sighting). Per group:

- ``vehicles`` (that drove in the window), ``trips``, ``distance_km``;
- ``feature_usage``: per feature signal, the share of trips that used it, with a 95% Wilson interval;
- ``dtc_vehicles_per_1000``: vehicles that reported any fault code, per 1,000 vehicles, with a 95% Wilson
  interval, and the most frequent codes;
- ``efficiency``: the 10th, 50th and 90th percentiles of trip consumption, kWh/100 km for electric cars and
  L/100 km for combustion cars, over trips of at least 1 km that report it;
- ``harsh_per_100km``: harsh events (brake, accelerate, corner) per 100 km, with a 95% exact Poisson interval.

A group with fewer than ``min_vehicles`` vehicles is marked ``small_sample``: its intervals are wide, and they
are printed so that nobody reads a rate from three cars as a fact.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

DIMENSIONS = ("model", "trim_level", "model_year", "region", "powertrain")
Z95 = 1.959964


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (0, 1 for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def poisson_interval(count: int) -> tuple[float, float]:
    """95% exact (Garwood) interval of a Poisson count."""
    from scipy.stats import chi2

    low = 0.0 if count == 0 else float(chi2.ppf(0.025, 2 * count) / 2)
    return low, float(chi2.ppf(0.975, 2 * count + 2) / 2)


def _r(value: float, digits: int = 4) -> float:
    return round(value, digits)


def insights(
    conn: psycopg.Connection[Any],
    by: tuple[str, ...],
    since: datetime,
    until: datetime,
    *,
    min_vehicles: int = 30,
    top_codes: int = 5,
) -> list[dict[str, Any]]:
    """Insights per group of ``by`` over trips started in [since, until)."""
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown or not by:
        raise ValueError(f"group by one or more of {', '.join(DIMENSIONS)}; got {', '.join(by) or 'nothing'}")
    dims = ", ".join(f"v.{d}" for d in by)
    cur = conn.cursor(row_factory=tuple_row)  # whatever rows the caller's connection makes
    window = {"since": since, "until": until}
    # an owner who withdrew R&D use (consent scope "rd", cloud/privacy/consent.py) is in no insight: their
    # cars' trips and fault codes are left out; a car with no owner is judged by its own consent switch,
    # which decided what it sent
    scope = (
        "FROM trips t JOIN vehicles v USING (vehicle_id)"
        " WHERE t.started_at >= %(since)s AND t.started_at < %(until)s"
        " AND NOT EXISTS (SELECT 1 FROM consent_current rc WHERE rc.customer_id = v.customer_id"
        " AND rc.scope = 'rd' AND NOT rc.granted)"
    )
    groups: dict[tuple[object, ...], dict[str, Any]] = {}
    harsh = (
        "coalesce((t.event_counts->>'harsh_brake')::int, 0)"
        " + coalesce((t.event_counts->>'harsh_accel')::int, 0)"
        " + coalesce((t.event_counts->>'harsh_corner')::int, 0)"
    )
    consumption = (
        "CASE WHEN t.distance_km < 1 THEN NULL"
        " WHEN v.powertrain = 'ev' THEN 100 * t.energy_used_kwh / t.distance_km"
        " ELSE 100 * t.fuel_used_l / t.distance_km END"
    )
    rows = cur.execute(
        f"SELECT {dims}, count(DISTINCT t.vehicle_id), count(*), sum(t.distance_km), sum({harsh}),"
        f" percentile_cont(ARRAY[0.1, 0.5, 0.9]) WITHIN GROUP (ORDER BY {consumption}),"
        f" count({consumption}), bool_and(v.powertrain = 'ev'), bool_and(v.powertrain <> 'ev')"
        f" {scope} GROUP BY {dims} ORDER BY {dims}",
        window,
    ).fetchall()
    for row in rows:
        key = tuple(row[: len(by)])
        vehicles, trips, km, events, pct, measured, all_ev, all_ice = row[len(by) :]
        km_f = float(str(km or 0))
        events_i = int(str(events or 0))
        lo, hi = poisson_interval(events_i)
        unit = "kWh/100km" if all_ev else "L/100km" if all_ice else "mixed (kWh or L)/100km"
        percentiles = list(pct) if isinstance(pct, list) else [None, None, None]
        groups[key] = {
            **dict(zip(by, key, strict=True)),
            "vehicles": int(str(vehicles)),
            "trips": int(str(trips)),
            "distance_km": _r(km_f, 1),
            "small_sample": int(str(vehicles)) < min_vehicles,
            "harsh_per_100km": {
                "rate": _r(100 * events_i / km_f) if km_f else None,
                "ci95": [_r(100 * lo / km_f), _r(100 * hi / km_f)] if km_f else None,
                "events": events_i,
            },
            "efficiency": {
                "unit": unit,
                "trips": int(str(measured)),
                "p10": percentiles[0] and _r(float(percentiles[0]), 2),
                "p50": percentiles[1] and _r(float(percentiles[1]), 2),
                "p90": percentiles[2] and _r(float(percentiles[2]), 2),
            },
            "feature_usage": {},
            "dtc_vehicles_per_1000": None,
            "top_codes": [],
        }
    per_feature = scope.replace("WHERE", ", jsonb_object_keys(t.feature_usage) f(key) WHERE")
    for row in cur.execute(
        f"SELECT {dims}, f.key, count(*) {per_feature} GROUP BY {dims}, f.key ORDER BY {dims}, f.key",
        window,
    ):
        group = groups[tuple(row[: len(by)])]
        used, total = int(str(row[-1])), group["trips"]
        lo, hi = wilson(used, total)
        group["feature_usage"][str(row[-2])] = {
            "share": _r(used / total),
            "ci95": [_r(lo), _r(hi)],
            "trips": used,
        }
    codes = cur.execute(
        f"SELECT {dims}, d.code, count(DISTINCT d.vehicle_id)"
        " FROM dtc_reports d JOIN vehicles v USING (vehicle_id)"
        " WHERE d.first_seen >= %(since)s AND d.first_seen < %(until)s AND d.vehicle_id IN"
        f" (SELECT t.vehicle_id {scope}) GROUP BY {dims}, d.code ORDER BY {dims}, 3 DESC, d.code",
        window,
    ).fetchall()
    with_codes = cur.execute(
        f"SELECT {dims}, count(DISTINCT d.vehicle_id) FROM dtc_reports d JOIN vehicles v USING (vehicle_id)"
        " WHERE d.first_seen >= %(since)s AND d.first_seen < %(until)s AND d.vehicle_id IN"
        f" (SELECT t.vehicle_id {scope}) GROUP BY {dims}",
        window,
    ).fetchall()
    faulty = {tuple(r[: len(by)]): int(str(r[-1])) for r in with_codes}
    for key, group in groups.items():
        n = group["vehicles"]
        k = faulty.get(key, 0)
        lo, hi = wilson(k, n)
        group["dtc_vehicles_per_1000"] = {
            "rate": _r(1000 * k / n, 2),
            "ci95": [_r(1000 * lo, 2), _r(1000 * hi, 2)],
        }
    for row in codes:
        group = groups[tuple(row[: len(by)])]
        if len(group["top_codes"]) < top_codes:
            group["top_codes"].append({"code": str(row[-2]), "vehicles": int(str(row[-1]))})
    return list(groups.values())
