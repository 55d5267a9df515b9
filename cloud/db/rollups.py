"""Daily rollups: per vehicle (``telemetry_daily``) and per model (the ``model_daily`` view).

Plain PostgreSQL keeps ``telemetry_daily`` as a table refreshed incrementally: the ingest marks each day it
writes telemetry for in ``telemetry_daily_dirty`` (in the same transaction as the rows), and a refresh
recomputes exactly those days. Days are ``date_bin('1 day', time, 2000-01-01)``, TimescaleDB's
``time_bucket('1 day', time)``: the same UTC buckets, so both dialects answer the same queries alike.
TimescaleDB refreshes its continuous aggregate by policy; :func:`refresh` then only runs it at once.
"""

from __future__ import annotations

import logging

import psycopg

from .migrate import database_dialect

log = logging.getLogger(__name__)

_RECOMPUTE = """
INSERT INTO telemetry_daily (vehicle_id, day, rows, avg_speed_kmh, max_speed_kmh, distance_km, min_battery_v,
                             max_coolant_c)
SELECT vehicle_id, date_bin('1 day', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day,
       count(*), avg(speed_kmh), max(speed_kmh), max(odometer_km) - min(odometer_km), min(battery_v),
       max(coolant_c)
FROM telemetry
WHERE time >= %(first)s AND time < %(last)s + INTERVAL '1 day'
  AND date_bin('1 day', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') = ANY(%(days)s)
GROUP BY 1, 2
"""


def refresh(database_url: str) -> int:
    """Bring the daily rollup up to date; return how many days were recomputed."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if database_dialect(conn) == "timescaledb":
            conn.execute("CALL refresh_continuous_aggregate('telemetry_daily', NULL, NULL)")
            return 0
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('telemetry_daily'))")
            days = [r[0] for r in conn.execute("DELETE FROM telemetry_daily_dirty RETURNING day").fetchall()]
            if not days:
                return 0
            conn.execute("DELETE FROM telemetry_daily WHERE day = ANY(%s)", (days,))
            conn.execute(_RECOMPUTE, {"first": min(days), "last": max(days), "days": days})
    log.info("recomputed the daily rollup for %d days", len(days))
    return len(days)
