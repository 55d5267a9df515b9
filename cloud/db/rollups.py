"""Rollups of telemetry: per vehicle and hour (``telemetry_hourly``, the downsampled tier that outlives raw
rows), per vehicle and day (``telemetry_daily``) and per model and day (the ``model_daily`` view).

Plain PostgreSQL keeps the rollups as tables refreshed incrementally: the ingest marks each day it writes
telemetry for in ``telemetry_daily_dirty`` (in the same transaction as the rows), and a refresh recomputes
exactly those days, their hours included. Buckets are ``date_bin(width, time, 2000-01-01)``, TimescaleDB's
``time_bucket(width, time)``: the same UTC buckets, so both dialects answer the same queries alike.
TimescaleDB refreshes its continuous aggregates by policy over the last three days; :func:`refresh` runs
them at once from the raw-retention cutoff on.

Rollups outlive raw data, on both dialects: no window before the raw-telemetry retention cutoff
(``retention_cutoffs``) is ever recomputed — its raw rows are gone or going, and recomputing would replace a
complete rollup with nothing (TimescaleDB refreshing a dropped chunk's window) or with whatever arrived late.
A day before the cutoff that late rows arrived for keeps its rollup as it was and is flagged in
``telemetry_late_days`` (with how often), so that an analyst knows the day had more data than its rollup.
"""

from __future__ import annotations

import logging
from datetime import datetime

import psycopg

from .dialect import database_dialect

log = logging.getLogger(__name__)

_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
_WHERE = (
    "WHERE time >= %(first)s AND time < %(last)s + INTERVAL '1 day'"
    f" AND date_bin('1 day', time, {_ORIGIN}) = ANY(%(days)s)"
)

_RECOMPUTE_DAILY = f"""
INSERT INTO telemetry_daily (vehicle_id, day, rows, avg_speed_kmh, max_speed_kmh, distance_km, min_battery_v,
                             max_coolant_c)
SELECT vehicle_id, date_bin('1 day', time, {_ORIGIN}) AS day,
       count(*), avg(speed_kmh), max(speed_kmh), max(odometer_km) - min(odometer_km), min(battery_v),
       max(coolant_c)
FROM telemetry {_WHERE}
GROUP BY 1, 2
"""

_RECOMPUTE_HOURLY = f"""
INSERT INTO telemetry_hourly (vehicle_id, hour, rows, avg_speed_kmh, max_speed_kmh, distance_km,
                              min_battery_v, max_coolant_c, avg_soc_pct, avg_fuel_pct, lat, lon)
SELECT vehicle_id, date_bin('1 hour', time, {_ORIGIN}) AS hour,
       count(*), avg(speed_kmh), max(speed_kmh), max(odometer_km) - min(odometer_km), min(battery_v),
       max(coolant_c), avg(soc_pct), avg(fuel_level_pct),
       (array_agg(lat ORDER BY time DESC))[1], (array_agg(lon ORDER BY time DESC))[1]
FROM telemetry {_WHERE}
GROUP BY 1, 2
"""

#: the continuous aggregates (TimescaleDB) or tables (plain PostgreSQL) a refresh brings up to date
ROLLUPS = ("telemetry_hourly", "telemetry_daily")


def _dirty_days(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[list[datetime], datetime | None]:
    """Take the days the ingest marked dirty; flag those before the raw cutoff; return the rest and it."""
    days = [r[0] for r in conn.execute("DELETE FROM telemetry_daily_dirty RETURNING day").fetchall()]
    row = conn.execute("SELECT before FROM retention_cutoffs WHERE stream = 'telemetry'").fetchone()
    cutoff = row[0] if row is not None and isinstance(row[0], datetime) else None
    if cutoff is None:
        return [d for d in days if isinstance(d, datetime)], None
    expired = [d for d in days if isinstance(d, datetime) and d < cutoff]
    if expired:
        log.warning(
            "late telemetry for %d days before the retention cutoff %s: rollups kept as they were,"
            " days flagged in telemetry_late_days",
            len(expired),
            cutoff,
        )
        conn.execute(
            "INSERT INTO telemetry_late_days (day) SELECT unnest(%s::timestamptz[])"
            " ON CONFLICT (day) DO UPDATE SET times = telemetry_late_days.times + 1, flagged_at = now()",
            (expired,),
        )
    return [d for d in days if isinstance(d, datetime) and d >= cutoff], cutoff


def refresh(database_url: str) -> int:
    """Bring the rollups up to date without touching windows before the raw-retention cutoff; return how
    many days were recomputed (plain PostgreSQL; TimescaleDB refreshes by window and returns 0)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if database_dialect(conn) == "timescaledb":
            # the ingest marks dirty days in both dialects; here they only tell which late days to flag
            with conn.transaction():
                _days, cutoff = _dirty_days(conn)
            for view in ROLLUPS:
                # from the cutoff on: a NULL start would re-materialise dropped chunks' windows as empty
                conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, NULL)", (view, cutoff)
                )
            return 0
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('telemetry_daily'))")
            days, _cutoff = _dirty_days(conn)
            if not days:
                return 0
            params = {"first": min(days), "last": max(days), "days": days}
            conn.execute("DELETE FROM telemetry_daily WHERE day = ANY(%s)", (days,))
            conn.execute(
                "DELETE FROM telemetry_hourly WHERE hour >= %(first)s AND hour < %(last)s + INTERVAL '1 day'"
                f" AND date_bin('1 day', hour, {_ORIGIN}) = ANY(%(days)s)",
                params,
            )
            conn.execute(_RECOMPUTE_DAILY, params)
            conn.execute(_RECOMPUTE_HOURLY, params)
    log.info("recomputed the hourly and daily rollups for %d days", len(days))
    return len(days)
