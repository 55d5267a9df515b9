"""Privacy at population scale: export, two-step erasure, backup, restore with the ledger re-applied.

A simulated population (CRM and online files through the importer, trips by COPY, the analytics job run) gets
raw telemetry per car and dead letters naming random cars. Then: one person's export and erasure (median of
``--samples`` people), a backup, ``--ledger`` more erasures after it, and a restore of that backup into a
fresh database with the ledger re-applied. ``erase_vs_export`` compares an erasure with reading the same
person's rows (the export) in the same run. Prints one JSON line.

    python tests/benchmarks/privacy.py                                  # 2,000 customers, 30 days
    python tests/benchmarks/privacy.py --customers 300 --days 10 --ledger 10   # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.analytics.config import load_config
from cloud.analytics.run import run_analytics
from cloud.db.backup import backup, restore
from cloud.db.migrate import migrate
from cloud.privacy import erasure, export
from simulators.population import simulate_population
from tests.benchmarks.portrait_quality import load
from tests.helpers import scratch_database

#: the server (its maintenance database) the benchmark makes its databases on
ADMIN_URL = os.environ.get("DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KEY = b"benchmark-ledger-key-0123456789abcdef"


def _erase(conn: psycopg.Connection[Any], customer_id: str, ledger_file: Path) -> float:
    started = time.perf_counter()
    request = erasure.request_erasure(conn, customer_id, key_id=1)
    erasure.confirm_erasure(
        conn, request.request_id, request.token, key_id=2, ledger_key=KEY, ledger_file=ledger_file
    )
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--telemetry-per-car", type=int, default=1440, help="raw rows per car (1/min: a day)")
    parser.add_argument("--dead-letters", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=5, help="people exported and erased one by one")
    parser.add_argument("--ledger", type=int, default=100, help="erasures after the backup, re-applied")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    out: dict[str, Any] = {"customers": args.customers, "days": args.days}
    with scratch_database(ADMIN_URL, "drivesight_bench") as url, tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        migrate(url)
        pop = simulate_population(args.customers, args.seed, days=args.days)
        started = time.monotonic()
        load(url, pop, directory / "files")
        run_analytics(url, load_config(), full=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO telemetry (time, vehicle_id, speed_kmh, lat, lon)"
                " SELECT timestamptz '2026-08-01' + g * interval '1 minute', v.vehicle_id, 50, 31.2, 121.4"
                " FROM vehicles v, generate_series(0, %s - 1) g",
                (args.telemetry_per_car,),
            )
            conn.execute(
                "INSERT INTO dead_letters (topic, reason, detail, payload, size_bytes, sha256)"
                " SELECT 'ds/v1/' || v || '/trip', 'invalid', 'bench', p, length(p), sha256(p) FROM ("
                "  SELECT 'LDS' || lpad((random() * %s)::int::text, 14, '0') AS v,"
                "  convert_to(repeat('x', 2000), 'UTF8') AS p FROM generate_series(1, %s)) d",
                (args.customers - 1, args.dead_letters),
            )
            conn.execute("ANALYZE")
            out["load_s"] = round(time.monotonic() - started, 1)
            out["trips"] = len(pop.trips["customer"])
            out["telemetry_rows"] = args.customers * args.telemetry_per_car
            ids = [str(c) for c in pop.customers["customer_id"]]
            sample = ids[: args.samples]
            exports = []
            for customer_id in sample:
                t = time.perf_counter()
                doc = export.export_customer(conn, customer_id, key_id=1)
                exports.append((time.perf_counter() - t) * 1000)
            out["export_ms"] = round(statistics.median(exports), 1)
            out["export_bytes"] = len(json.dumps(doc))
            ledger_file = directory / "ledger.jsonl"
            erasures = [_erase(conn, customer_id, ledger_file) for customer_id in sample]
            out["erase_ms"] = round(statistics.median(erasures), 1)
            out["erase_vs_export"] = round(out["erase_ms"] / out["export_ms"], 2)
            out["database_mb"] = round(
                int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]) / 2**20  # type: ignore[index]
            )
        archive = directory / "bench.dump"
        info = backup(url, archive)
        out["backup_s"], out["backup_mb"] = info.seconds, round(info.bytes / 2**20, 1)
        with psycopg.connect(url, autocommit=True) as conn:
            after = ids[args.samples : args.samples + args.ledger]
            out["erase_after_backup_ms_median"] = round(
                statistics.median(_erase(conn, c, ledger_file) for c in after), 1
            )
        reapply = erasure.ledger_reapplier(KEY, ledger_file)
        timed: dict[str, float] = {}

        def timed_reapply(conn: psycopg.Connection[Any]) -> object:
            t = time.perf_counter()
            result = reapply(conn)
            timed["s"] = time.perf_counter() - t
            return result

        with scratch_database(ADMIN_URL, "drivesight_bench_restore") as target:
            restored = restore(target, archive, after_restore=timed_reapply)
            result = restored.after_restore
            assert isinstance(result, erasure.ReapplyResult)
            out["restore_s"] = restored.seconds
            out["reapply_s"] = round(timed["s"], 3)
            out["reapplied_customers"] = result.customers
            out["reapply_share_of_restore"] = round(timed["s"] / restored.seconds, 3)
            with psycopg.connect(target) as conn:
                back = conn.execute(
                    "SELECT count(*) FROM customers WHERE customer_id = ANY(%s)", (after,)
                ).fetchone()
                out["erased_people_back_after_restore"] = int(back[0]) if back else -1
    print(json.dumps(out))


if __name__ == "__main__":
    main()
