"""Queries on a large telemetry table: last value per vehicle, daily rollup per model, one vehicle's day.

The last value per vehicle is read from ``telemetry_latest`` (kept by the ingest; here the generator keeps it
through the same upsert) and, for comparison, by scanning the newest row of each vehicle in ``telemetry``.

Generates ``--rows`` telemetry rows (default 50 million: ``--vehicles`` cars at 1 Hz over ``--days`` days)
with binary COPY into a fresh database of the current dialect, refreshes the daily rollup, then times each
query (best of three) and reports the plan it used. Prints one JSON line.

    python tests/benchmarks/queries.py                        # 50,000,000 rows (several minutes, ~6 GB)
    python tests/benchmarks/queries.py --rows 200000          # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.db.migrate import database_dialect, migrate
from cloud.db.partitions import ensure_day
from cloud.db.rollups import refresh
from cloud.db.telemetry import COLUMNS, COPY_COLUMNS
from cloud.ingest.copy_binary import PG_EPOCH, SIGNATURE, TRAILER, records
from cloud.ingest.latest import Latest, upsert_latest
from edge_agent import signals as vss

FIRST_DAY = datetime(2026, 9, 1, tzinfo=UTC)
MODELS = ("DS-Compact", "DS-Sedan", "DS-SUV", "DS-EV5")

QUERIES = {
    "last_value_per_vehicle": "SELECT vehicle_id, time, speed_kmh, lat, lon FROM telemetry_latest",
    "last_value_per_vehicle_scan": (
        "SELECT v.vehicle_id, t.time, t.speed_kmh, t.lat, t.lon FROM vehicles v"
        " CROSS JOIN LATERAL (SELECT time, speed_kmh, lat, lon FROM telemetry"
        "  WHERE telemetry.vehicle_id = v.vehicle_id ORDER BY time DESC LIMIT 1) t"
    ),
    "daily_rollup_per_model": (
        "SELECT day, model, vehicles, rows, avg_speed_kmh, distance_km FROM model_daily"
        " WHERE day >= %(first)s AND day < %(last)s ORDER BY day, model"
    ),
    "one_vehicle_day": (
        "SELECT time, speed_kmh, lat, lon, odometer_km FROM telemetry"
        " WHERE vehicle_id = %(vehicle)s AND time >= %(day)s AND time < %(day)s + INTERVAL '1 day'"
        " ORDER BY time"
    ),
}


def vss_column(signal: str) -> str:
    """The telemetry column of a VSS signal."""
    return COLUMNS[signal][0]


def generate(url: str, vehicles: int, days: int, rows_per_vehicle_day: int, seed: int) -> float:
    """Write the rows with binary COPY, a vehicle-day at a time; return the seconds it took."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, model)"
            " SELECT 'q' || lpad(i::text, 5, '0'), now(), now(), (%s::text[])[1 + i %% 4]"
            " FROM generate_series(0, %s - 1) i",
            (list(MODELS), vehicles),
        )
        for d in range(days):
            ensure_day(conn, (FIRST_DAY + timedelta(days=d)).date())
        statement = f"COPY telemetry ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        offsets = np.arange(rows_per_vehicle_day, dtype=np.int64) * 1000  # 1 Hz
        for d in range(days):
            day_us = (FIRST_DAY + timedelta(days=d) - PG_EPOCH) // timedelta(microseconds=1)
            latest: dict[str, Latest] = {}
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(statement) as copy:
                    copy.write(SIGNATURE)
                    for v in range(vehicles):
                        speed = np.clip(60 + 20 * rng.standard_normal(rows_per_vehicle_day), 0, 180)
                        columns = {
                            vss.SPEED: speed,
                            vss.ODOMETER: 10_000 + v + np.cumsum(speed) / 3600,
                            vss.LATITUDE: 31.2 + 0.01 * rng.standard_normal(rows_per_vehicle_day),
                            vss.LONGITUDE: 121.4 + 0.01 * rng.standard_normal(rows_per_vehicle_day),
                            vss.BATTERY_VOLTAGE: np.full(rows_per_vehicle_day, 14.2),
                        }
                        first = day_us + int(rng.integers(6, 18)) * 3_600_000_000  # drives start 6-18 h
                        copy.write(records(f"q{v:05d}".encode(), first, offsets, columns))
                        latest[f"q{v:05d}"] = Latest(
                            PG_EPOCH + timedelta(microseconds=first + int(offsets[-1]) * 1000),
                            {vss_column(s): float(a[-1]) for s, a in columns.items()},
                        )
                    copy.write(TRAILER)
                upsert_latest(cur, latest)  # as the ingest does at the end of a batch
                # as the ingest does with the rows: the day needs recomputing in the daily rollup
                cur.execute(
                    "INSERT INTO telemetry_daily_dirty (day) VALUES (%s) ON CONFLICT DO NOTHING",
                    (FIRST_DAY + timedelta(days=d),),
                )
            print(f"day {d + 1}/{days} written", file=sys.stderr, flush=True)
        conn.execute("ANALYZE telemetry")
    return time.perf_counter() - start


def _plan_summary(plan: dict[str, Any]) -> dict[str, Any]:
    nodes: list[str] = []
    relations: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        nodes.append(node["Node Type"] + (f" using {node['Index Name']}" if "Index Name" in node else ""))
        if "Relation Name" in node:
            relations.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return {"nodes": list(dict.fromkeys(nodes))[:6], "relations": len(relations)}


def run_queries(url: str, days: int) -> dict[str, Any]:
    params = {
        "first": FIRST_DAY,
        "last": FIRST_DAY + timedelta(days=days),
        "vehicle": "q00007",
        "day": FIRST_DAY + timedelta(days=days // 2),
    }
    out: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, query in QUERIES.items():
            best = float("inf")
            rows = 0
            for _ in range(3):
                start = time.perf_counter()
                rows = len(conn.execute(query, params).fetchall())
                best = min(best, time.perf_counter() - start)
            row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params).fetchone()  # type: ignore[arg-type]
            assert row is not None
            out[name] = {"ms": round(best * 1000, 2), "rows": rows, "plan": _plan_summary(row[0][0])}
        # the kept table must say what the scan finds
        kept, scanned = (
            sorted(conn.execute(QUERIES[q]).fetchall())
            for q in ("last_value_per_vehicle", "last_value_per_vehicle_scan")
        )
        out["latest_matches_scan"] = kept == scanned
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--vehicles", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()
    vehicles = min(args.vehicles, max(1, args.rows // (args.days * 60)))
    per_vehicle_day = max(1, args.rows // (vehicles * args.days))
    name = f"drivesight_q_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(args.admin_url, dbname=name)
    try:
        migrate(url)
        generate_s = generate(url, vehicles, args.days, per_vehicle_day, args.seed)
        start = time.perf_counter()
        refresh(url)
        refresh_s = time.perf_counter() - start
        with psycopg.connect(url) as conn:
            dialect = database_dialect(conn)
            row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
            total_rows = int(row[0]) if row else 0
            size = conn.execute(
                "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
                " WHERE inhparent = 'telemetry'::regclass"
            ).fetchone()
        result = {
            "dialect": dialect,
            "rows": total_rows,
            "vehicles": vehicles,
            "days": args.days,
            "generate_rows_per_s": round(total_rows / generate_s),
            "rollup_refresh_s": round(refresh_s, 2),
            "telemetry_mb": round(int(size[0] or 0) / 2**20) if size else None,
            **run_queries(url, args.days),
        }
        print(json.dumps(result))
    finally:
        if args.keep:
            print(f"kept database {name}", file=sys.stderr)
        else:
            with psycopg.connect(args.admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
