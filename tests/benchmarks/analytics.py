"""Analytics at scale: a full run of the portrait job over many customers and trips.

Generates a population (default 100,000 customers with one car each, about 100 trips per customer: 10
million trips), imports its CRM and online files through the real importer, loads its trips with COPY, then
times one full analytics run (identification, features, tags, preferences, clusters, segments) and, after
new trips for 1% of the customers, one incremental run. Prints one JSON line.

    python tests/benchmarks/analytics.py                        # 100,000 customers, ~10 million trips
    python tests/benchmarks/analytics.py --customers 2000       # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.analytics.config import load_config
from cloud.analytics.imports import import_file
from cloud.analytics.run import run_analytics
from cloud.db.migrate import migrate
from simulators.population import simulate_population
from simulators.population_files import IMPORT_ORDER, load_trips, write_population_files
from tests.helpers import count, scratch_database


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=52, help="days of driving (about 2 trips a day each)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    start = time.perf_counter()
    pop = simulate_population(args.customers, args.seed, days=args.days)
    _say(f"population: {len(pop.trips['customer']):,} trips in {time.perf_counter() - start:.1f} s")
    with scratch_database(args.admin_url, "drivesight_ab") as url, tempfile.TemporaryDirectory() as tmp:
        migrate(url)
        start = time.perf_counter()
        files = write_population_files(pop, Path(tmp))
        with psycopg.connect(url, autocommit=True) as conn:
            for kind in IMPORT_ORDER:
                _say(f"import {kind}: {import_file(conn, kind, files[kind]).imported:,} rows")
            with conn.transaction():
                load_trips(conn, pop, progress=lambda done, total: _say(f"trips {done:,}/{total:,}"))
            conn.execute("VACUUM ANALYZE")
            trips = count(conn, "SELECT count(*) FROM trips")
        load_s = time.perf_counter() - start
        config = load_config()
        start = time.perf_counter()
        report = run_analytics(url, config, full=True, seed=args.seed, progress=_say)
        seconds = time.perf_counter() - start
        # new trips for 1% of the customers, then an incremental run
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO trips (vehicle_id, trip_id, seq, started_at, ended_at, distance_km, duration_s,"
                " moving_s, idle_s, max_speed_kmh, avg_speed_kmh, night_share, samples)"
                " SELECT vehicle_id, trip_id || '-new', seq, started_at + INTERVAL '60 days',"
                " ended_at + INTERVAL '60 days', distance_km, duration_s, moving_s, idle_s, max_speed_kmh,"
                " avg_speed_kmh, night_share, samples FROM trips"
                " WHERE vehicle_id = ANY(%s)",
                (
                    list(
                        np.random.default_rng(1).choice(
                            pop.vehicles["vehicle_id"], max(1, args.customers // 100)
                        )
                    ),
                ),
            )
        start = time.perf_counter()
        # nothing else writes here, so no late commits to catch: no overlap window
        incremental = run_analytics(url, config, seed=args.seed, overlap=timedelta(0), progress=_say)
        incremental_s = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "customers": args.customers,
                    "trips": trips,
                    "seconds": round(seconds, 1),
                    "steps": report["seconds"],
                    "k": report["clusters"]["k"],
                    "tagged": report["tags"],
                    "incremental_customers": incremental["customers"],
                    "incremental_seconds": round(incremental_s, 1),
                    "load_seconds": round(load_s, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
