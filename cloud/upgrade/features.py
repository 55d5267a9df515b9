"""Upgrade-intent features per customer as of a day, aggregated in SQL (one query per source), one row per
customer who owned a car that day.

Every feature reads only what was known by the end of ``day`` (UTC): cars bought by then, visits, trips,
interactions, pushes and life events up to then, so that the training snapshots' features do not see the
purchase that followed. "The car" is the customer's newest car at the day (the one a next purchase would
follow).

:data:`FEATURES` names the columns and says what each means; :func:`compute_features` returns the matrix,
:func:`labels` what followed a day (a purchase of another car within the horizon).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import tuple_row

from cloud.churn.features import day_end

from .config import UpgradeConfig

#: column -> what it is (the reasons name these)
FEATURES: dict[str, str] = {
    "vehicle_age_years": "years since the purchase of the newest car",
    "odometer_km": "the newest car's odometer (km): the highest a trip or a workshop visit read by the day",
    "cars_owned": "cars the customer owned at the day",
    "warranty_days_left": "days until the newest car's warranty ends (negative: ended that long ago)",
    "service_cost_12m": "what the customer's service visits cost in the last 12 months",
    "service_cost_trend": "service cost of the last 12 months minus that of the 12 before",
    "new_model_interactions_90d": "views, comments, collects and ratings of new-model content in 90 days",
    "new_model_push_clicks_90d": "in-car pushes about new models opened or clicked in 90 days",
    "life_events_12m": "life events in the CRM in the last 12 months (a child, a move, a new job ...)",
    "days_since_life_event": "days since the newest life event (730 when none in two years)",
}
NAMES: tuple[str, ...] = tuple(FEATURES)

MAX_DAYS_SINCE_LIFE_EVENT = 730

# %(d)s the day, %(end)s the first instant after it (UTC), %(ids)s the customers (NULL: every owner)
_CARS = """
SELECT v.vehicle_id, v.customer_id, coalesce(p.purchased_at, (v.first_seen AT TIME ZONE 'UTC')::date) AS since
FROM vehicles v LEFT JOIN purchases p ON p.vehicle_id = v.vehicle_id
WHERE v.customer_id IS NOT NULL AND (%(ids)s::text[] IS NULL OR v.customer_id = ANY(%(ids)s))
  AND coalesce(p.purchased_at, (v.first_seen AT TIME ZONE 'UTC')::date) <= %(d)s
"""

_OWNED = f"""
WITH cars AS ({_CARS}),
newest AS (SELECT DISTINCT ON (customer_id) customer_id, vehicle_id, since,
                  count(*) OVER (PARTITION BY customer_id) AS cars
           FROM cars ORDER BY customer_id, since DESC, vehicle_id)
SELECT n.customer_id,
       %(d)s::date - n.since,
       greatest((SELECT max(t.odometer_km) FROM trips t WHERE t.vehicle_id = n.vehicle_id
                 AND t.ended_at < %(end)s),
                (SELECT max(s.odometer_km) FROM service_visits s WHERE s.vehicle_id = n.vehicle_id
                 AND s.visited_at <= %(d)s)),
       n.cars,
       (n.since + make_interval(months => %(warranty)s))::date - %(d)s::date
FROM newest n ORDER BY n.customer_id
"""

_SERVICE = f"""
WITH cars AS ({_CARS})
SELECT c.customer_id,
       coalesce(sum(s.cost) FILTER (WHERE s.visited_at > %(d)s::date - 365), 0),
       coalesce(sum(s.cost) FILTER (WHERE s.visited_at <= %(d)s::date - 365), 0)
FROM service_visits s JOIN cars c ON c.vehicle_id = s.vehicle_id
WHERE s.visited_at <= %(d)s AND s.visited_at > %(d)s::date - 730
GROUP BY c.customer_id
"""

_NEW_MODEL = "(i.kind = ANY(%(kinds)s) OR i.tags && %(tags)s::text[] OR i.category = ANY(%(tags)s))"

# online behaviour reaches a customer through the current identity links (cloud/analytics/identify.py)
_INTERACTIONS = f"""
SELECT l.customer_id, count(*)
FROM interactions x JOIN identity_links l ON l.account_id = x.account_id AND l.undone_at IS NULL
JOIN content_items i ON i.item_id = x.item_id
WHERE x.at < %(end)s AND x.at >= %(end)s - interval '90 days' AND {_NEW_MODEL}
  AND (%(ids)s::text[] IS NULL OR l.customer_id = ANY(%(ids)s))
GROUP BY l.customer_id
"""

# a push's item is the campaign decision's that sent it
_PUSHES = f"""
SELECT v.customer_id, count(DISTINCT f.push_id)
FROM push_feedback f JOIN vehicles v ON v.vehicle_id = f.vehicle_id
JOIN campaign_decisions cd ON cd.push_id = f.push_id
JOIN content_items i ON i.item_id = cd.item_id
WHERE f.action IN ('opened', 'clicked') AND f.at < %(end)s AND f.at >= %(end)s - interval '90 days'
  AND {_NEW_MODEL} AND v.customer_id IS NOT NULL
  AND (%(ids)s::text[] IS NULL OR v.customer_id = ANY(%(ids)s))
GROUP BY v.customer_id
"""

_LIFE = """
SELECT e.customer_id, count(*) FILTER (WHERE e.happened_on > %(d)s::date - 365),
       %(d)s::date - max(e.happened_on)
FROM life_events e
WHERE e.happened_on <= %(d)s AND (%(ids)s::text[] IS NULL OR e.customer_id = ANY(%(ids)s))
GROUP BY e.customer_id
"""


@dataclass(frozen=True, slots=True)
class UpgradeFeatures:
    """Customers (row order) and their features (:data:`NAMES` column order) as of ``day``."""

    day: date
    customers: list[str]
    values: np.ndarray

    def column(self, name: str) -> np.ndarray:
        """One feature's values for every customer."""
        return self.values[:, NAMES.index(name)]

    def rows(self, keep: np.ndarray) -> UpgradeFeatures:
        """The customers where the boolean mask ``keep`` holds."""
        index = np.flatnonzero(keep)
        return UpgradeFeatures(self.day, [self.customers[i] for i in index], self.values[index])


def _params(day: date, customers: Sequence[str] | None, config: UpgradeConfig) -> dict[str, Any]:
    return {
        "d": day,
        "end": day_end(day),
        "ids": None if customers is None else list(customers),
        "warranty": config.warranty_months,
        "kinds": list(config.new_model_kinds),
        "tags": list(config.new_model_tags),
    }


def compute_features(
    conn: psycopg.Connection[Any], day: date, config: UpgradeConfig, customers: Sequence[str] | None = None
) -> UpgradeFeatures:
    """Every feature of :data:`NAMES` as of the end of ``day`` for ``customers`` (None: everyone who owned a
    car that day); customers without a car at the day are left out."""
    params = _params(day, customers, config)
    cur = conn.cursor(row_factory=tuple_row)
    owned = cur.execute(_OWNED, params).fetchall()
    ids = [str(r[0]) for r in owned]
    n = len(ids)
    row_of = {c: i for i, c in enumerate(ids)}
    x = {name: np.zeros(n) for name in NAMES}
    for i, (_c, age_days, odometer, cars, warranty) in enumerate(owned):
        x["vehicle_age_years"][i] = float(age_days) / 365.25
        x["odometer_km"][i] = float(odometer) if odometer is not None else np.nan
        x["cars_owned"][i] = float(cars)
        x["warranty_days_left"][i] = float(warranty)

    def fetch(query: str) -> list[tuple[int, list[float]]]:
        """(row index, numeric columns) of a per-customer query's rows about ``ids``."""
        rows = cur.execute(query, params).fetchall()
        return [(row_of[str(r[0])], [float(v) for v in r[1:]]) for r in rows if str(r[0]) in row_of]

    for i, (recent, before) in fetch(_SERVICE):
        x["service_cost_12m"][i] = recent
        x["service_cost_trend"][i] = recent - before
    for i, (count,) in fetch(_INTERACTIONS):
        x["new_model_interactions_90d"][i] = count
    for i, (count,) in fetch(_PUSHES):
        x["new_model_push_clicks_90d"][i] = count
    x["days_since_life_event"] = np.full(n, float(MAX_DAYS_SINCE_LIFE_EVENT))
    for i, (count, since) in fetch(_LIFE):
        x["life_events_12m"][i] = count
        x["days_since_life_event"][i] = min(since, MAX_DAYS_SINCE_LIFE_EVENT)
    # an odometer never read: the fleet's median at the day, so that "no reading" neither raises nor lowers
    # the odds by itself (the trees would otherwise learn the sources' coverage)
    odometer = x["odometer_km"]
    known = ~np.isnan(odometer)
    odometer[~known] = float(np.median(odometer[known])) if known.any() else 0.0
    values = np.column_stack([x[name] for name in NAMES]) if n else np.zeros((0, len(NAMES)))
    return UpgradeFeatures(day, ids, values)


_BOUGHT = """
SELECT DISTINCT p.customer_id FROM purchases p
WHERE p.customer_id = ANY(%(ids)s) AND p.purchased_at > %(d)s AND p.purchased_at <= %(d)s + %(h)s
"""


def labels(conn: psycopg.Connection[Any], features: UpgradeFeatures, config: UpgradeConfig) -> np.ndarray:
    """1 for each customer of ``features`` who bought another car (a purchase dated within ``horizon_days``
    after the day), else 0: the derived upgrade label."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(_BOUGHT, {"d": features.day, "h": config.horizon_days, "ids": features.customers})
        .fetchall()
    )
    bought = {str(r[0]) for r in rows}
    return np.array([1 if c in bought else 0 for c in features.customers], dtype=np.int64)
