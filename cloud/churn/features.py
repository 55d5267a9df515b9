"""Churn features per customer as of a day, aggregated in SQL (one query per source), one row per customer.

Every feature reads only what was known by the end of the day ``day`` (UTC), so that a backtest's features of
an earlier day do not see what followed. A complaint resolved after the day counts as unresolved on it
(``resolved_at``); one the CRM marked resolved without a date counts as resolved on every day (its state now:
the one leak left, and only for imports that do not say when).

:data:`FEATURES` names the columns and says what each means; :func:`compute_features` returns the matrix,
:func:`labels` what followed a day (the derived churn label, ``churn.toml``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import tuple_row

from .config import ChurnConfig

#: column -> what it is (the reasons name these)
FEATURES: dict[str, str] = {
    "trips_per_week_4w": "trips per week over the last 4 weeks",
    "activity_trend": "trips per week, last 4 weeks against the 8 before: (recent - earlier) / (earlier + 1)",
    "days_since_last_trip": "days since the last trip (365 when none in a year)",
    "service_visits_12m": "service visits in the last 12 months",
    "days_since_service": "days since the last service visit (since the purchase when none; at most 1095)",
    "complaints_12m": "complaints opened in the last 12 months",
    "unresolved_complaints": "complaints not resolved by the day",
    "warranty_days_left": "days until the warranty ends (negative: ended that long ago)",
    "open_fault_codes": "distinct fault codes in the last 180 days not followed by a service visit",
    "pushes_received_90d": "in-car pushes delivered in the last 90 days",
    "push_open_rate_90d": "share of those pushes opened or clicked (0 when none was delivered)",
    "vehicle_age_years": "years since the purchase of the newest car",
}
NAMES: tuple[str, ...] = tuple(FEATURES)

#: caps: a value past them says no more (and keeps a customer without any record finite)
MAX_DAYS_SINCE_TRIP = 365
MAX_DAYS_SINCE_SERVICE = 1095

# Each query: customer_id first, then its columns; %(d)s the day, %(end)s the first instant after it (UTC),
# %(ids)s the customers (NULL: every customer owning a car).
_OWNERS = "v.customer_id IS NOT NULL AND (%(ids)s::text[] IS NULL OR v.customer_id = ANY(%(ids)s))"

# Every customer: per car first, then per customer. A year of trips is aggregated without joining each trip to
# its car, the window bounds are computed once (InitPlans) rather than per trip, and the day of the last trip
# is the day of the car's latest start (the same numbers as _TRIPS_OF; about half the time at 100,000
# customers). A few customers: _TRIPS_OF, which reads only their cars' trips (through the index).
_TRIPS = f"""
SELECT v.customer_id, sum(t.recent)::bigint, sum(t.earlier)::bigint,
       %(d)s::date - max((t.last AT TIME ZONE 'UTC')::date)
FROM (
    SELECT t.vehicle_id,
           count(*) FILTER (WHERE t.started_at >= (SELECT %(end)s - interval '28 days')) AS recent,
           count(*) FILTER (WHERE t.started_at < (SELECT %(end)s - interval '28 days')
                              AND t.started_at >= (SELECT %(end)s - interval '84 days')) AS earlier,
           max(t.started_at) AS last
    FROM trips t
    WHERE t.started_at < %(end)s AND t.started_at >= %(end)s - interval '365 days'
    GROUP BY t.vehicle_id
) t JOIN vehicles v ON v.vehicle_id = t.vehicle_id
WHERE {_OWNERS}
GROUP BY v.customer_id
"""

_TRIPS_OF = f"""
SELECT v.customer_id,
       count(*) FILTER (WHERE t.started_at >= %(end)s - interval '28 days'),
       count(*) FILTER (WHERE t.started_at < %(end)s - interval '28 days'
                          AND t.started_at >= %(end)s - interval '84 days'),
       %(d)s::date - max((t.started_at AT TIME ZONE 'UTC')::date)
FROM trips t JOIN vehicles v ON v.vehicle_id = t.vehicle_id
WHERE t.started_at < %(end)s AND t.started_at >= %(end)s - interval '365 days' AND {_OWNERS}
GROUP BY v.customer_id
"""

_SERVICE = f"""
SELECT v.customer_id,
       count(*) FILTER (WHERE s.visited_at > %(d)s::date - 365),
       %(d)s::date - max(s.visited_at)
FROM service_visits s JOIN vehicles v ON v.vehicle_id = s.vehicle_id
WHERE s.visited_at <= %(d)s AND {_OWNERS}
GROUP BY v.customer_id
"""

_COMPLAINTS = """
SELECT v.customer_id,
       count(*) FILTER (WHERE v.opened_at > %(d)s::date - 365),
       count(*) FILTER (WHERE NOT v.resolved OR v.resolved_at > %(d)s)
FROM complaints v
WHERE v.opened_at <= %(d)s AND (%(ids)s::text[] IS NULL OR v.customer_id = ANY(%(ids)s))
GROUP BY v.customer_id
"""

_OWNED = f"""
SELECT v.customer_id,
       %(d)s::date - max(coalesce(p.purchased_at, (v.first_seen AT TIME ZONE 'UTC')::date)),
       (max(coalesce(p.purchased_at, (v.first_seen AT TIME ZONE 'UTC')::date))
        + make_interval(months => %(warranty)s))::date - %(d)s::date
FROM vehicles v LEFT JOIN purchases p ON p.vehicle_id = v.vehicle_id
WHERE {_OWNERS}
GROUP BY v.customer_id
"""

# a fault code counts as open while no service visit of that car followed the day it was first seen
_FAULTS = f"""
WITH last_visit AS (
    SELECT vehicle_id, max(visited_at) AS visited FROM service_visits WHERE visited_at <= %(d)s
    GROUP BY vehicle_id
)
SELECT v.customer_id, count(DISTINCT d.code)
FROM dtc_reports d JOIN vehicles v ON v.vehicle_id = d.vehicle_id
LEFT JOIN last_visit l ON l.vehicle_id = d.vehicle_id
WHERE d.first_seen < %(end)s AND d.first_seen >= %(end)s - interval '180 days'
  AND (l.visited IS NULL OR (d.first_seen AT TIME ZONE 'UTC')::date >= l.visited) AND {_OWNERS}
GROUP BY v.customer_id
"""

_PUSHES = f"""
SELECT v.customer_id,
       count(DISTINCT f.push_id),
       count(DISTINCT f.push_id) FILTER (WHERE f.action IN ('opened', 'clicked'))
FROM push_feedback f JOIN vehicles v ON v.vehicle_id = f.vehicle_id
WHERE f.at < %(end)s AND f.at >= %(end)s - interval '90 days' AND {_OWNERS}
GROUP BY v.customer_id
"""


@dataclass(frozen=True, slots=True)
class ChurnFeatures:
    """Customers (row order) and their features (:data:`NAMES` column order) as of ``day``."""

    day: date
    customers: list[str]
    values: np.ndarray

    def column(self, name: str) -> np.ndarray:
        """One feature's values for every customer."""
        return self.values[:, NAMES.index(name)]

    def rows(self, keep: np.ndarray) -> ChurnFeatures:
        """The customers where ``keep`` (a boolean mask or indexes) holds."""
        index = np.flatnonzero(keep) if keep.dtype == bool else keep
        return ChurnFeatures(self.day, [self.customers[i] for i in index], self.values[index])


def day_end(day: date) -> datetime:
    """The first instant after ``day`` (UTC)."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def _params(day: date, customers: Sequence[str] | None, config: ChurnConfig) -> dict[str, Any]:
    return {
        "d": day,
        "end": day_end(day),
        "ids": None if customers is None else list(customers),
        "warranty": config.warranty_months,
    }


def owners(conn: psycopg.Connection[Any], customers: Sequence[str] | None = None) -> list[str]:
    """Customers who own a car (the ones churn is about), sorted."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT DISTINCT v.customer_id FROM vehicles v WHERE " + _OWNERS + " ORDER BY 1",
            {"ids": None if customers is None else list(customers)},
        )
        .fetchall()
    )
    return [str(r[0]) for r in rows]


def compute_features(
    conn: psycopg.Connection[Any], day: date, config: ChurnConfig, customers: Sequence[str] | None = None
) -> ChurnFeatures:
    """Every feature of :data:`NAMES` as of the end of ``day`` for ``customers`` (None: every car owner)."""
    ids = owners(conn, customers)
    n = len(ids)
    row_of = {c: i for i, c in enumerate(ids)}
    params = _params(day, customers, config)
    cur = conn.cursor(row_factory=tuple_row)

    def fetch(query: str) -> tuple[np.ndarray, np.ndarray]:
        """Row indexes and the numeric columns of a per-customer query (customers not in ``ids`` dropped)."""
        rows = cur.execute(query, params).fetchall()
        width = len(cur.description or ()) - 1
        index = np.array([row_of.get(str(r[0]), -1) for r in rows], dtype=np.int64)
        # one conversion of the whole result: None -> NaN, every number as float() makes it
        data = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), width)
        keep = index >= 0  # customers not in ``ids`` dropped
        return index[keep], data[keep]

    x = {name: np.zeros(n) for name in NAMES}
    i, t = fetch(_TRIPS if customers is None else _TRIPS_OF)
    recent, earlier = np.zeros(n), np.zeros(n)
    recent[i], earlier[i] = t[:, 0] / 4.0, t[:, 1] / 8.0
    x["trips_per_week_4w"] = recent
    x["activity_trend"] = (recent - earlier) / (earlier + 1.0)
    x["days_since_last_trip"] = np.full(n, float(MAX_DAYS_SINCE_TRIP))
    x["days_since_last_trip"][i] = np.minimum(t[:, 2], MAX_DAYS_SINCE_TRIP)
    i, o = fetch(_OWNED)
    owned = np.zeros(n)
    owned[i] = o[:, 0]
    x["vehicle_age_years"] = owned / 365.25
    x["warranty_days_left"][i] = o[:, 1]
    i, s = fetch(_SERVICE)
    x["service_visits_12m"][i] = s[:, 0]
    since = np.minimum(owned, MAX_DAYS_SINCE_SERVICE)  # never serviced: as long as the car is owned
    since[i] = np.minimum(s[:, 1], MAX_DAYS_SINCE_SERVICE)
    x["days_since_service"] = since
    i, c = fetch(_COMPLAINTS)
    x["complaints_12m"][i], x["unresolved_complaints"][i] = c[:, 0], c[:, 1]
    i, f = fetch(_FAULTS)
    x["open_fault_codes"][i] = f[:, 0]
    i, p = fetch(_PUSHES)
    x["pushes_received_90d"][i] = p[:, 0]
    x["push_open_rate_90d"][i] = p[:, 1] / np.maximum(p[:, 0], 1.0)
    values = np.column_stack([x[name] for name in NAMES]) if n else np.zeros((0, len(NAMES)))
    return ChurnFeatures(day, ids, values)


def active(features: ChurnFeatures, config: ChurnConfig) -> np.ndarray:
    """Which customers were active at the day (a trip or a service visit within ``active_days``): those a
    churn label means something for (a customer gone quiet long ago has not churned *within* the horizon)."""
    return (features.column("days_since_last_trip") <= config.active_days) | (
        features.column("days_since_service") <= config.active_days
    )


_CAME_BACK = """
SELECT DISTINCT v.customer_id FROM trips t JOIN vehicles v ON v.vehicle_id = t.vehicle_id
WHERE t.started_at >= %(end)s AND t.started_at < %(end)s + make_interval(days => %(h)s)
  AND v.customer_id = ANY(%(ids)s)
UNION
SELECT DISTINCT v.customer_id FROM service_visits s JOIN vehicles v ON v.vehicle_id = s.vehicle_id
WHERE s.visited_at > %(d)s AND s.visited_at <= %(d)s + %(h)s AND v.customer_id = ANY(%(ids)s)
"""


def labels(conn: psycopg.Connection[Any], features: ChurnFeatures, config: ChurnConfig) -> np.ndarray:
    """1 for each customer of ``features`` with neither a trip nor a service visit within ``horizon_days``
    after its day (the derived churn label), else 0."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            _CAME_BACK,
            {
                "d": features.day,
                "end": day_end(features.day),
                "h": config.horizon_days,
                "ids": features.customers,
            },
        )
        .fetchall()
    )
    seen = {str(r[0]) for r in rows}
    return np.array([0 if c in seen else 1 for c in features.customers], dtype=np.int64)
