"""Upgrade intent on a simulated world: a backtest of who bought another car, and the daily scoring.

A simulated world (simulators/upgrade_world.py: owners who buy their next car from hidden traits and noise,
their workshop history with odometer and cost, life events, new-model content viewed online) is loaded into
a private database. Then:

- the backtest (cloud/upgrade/backtest.py): a model trained on the snapshots whose 90-day outcome was known
  by the test day, scoring the consenting owners of the test day, held out: ``auc`` (with ``auc_ci``),
  ``top_decile_lift``, ``brier`` (next to ``brier_base_rate``), ``baseline_auc`` (the oldest car first).
  Every purchase of the world is imported, so the derived label is the simulator's ground truth itself (no
  second AUC against a hidden truth, as churn has: its label and its truth differ). The hidden appetite is
  no yardstick either: the owners with much of it bought early, so among the rest it goes with young cars;
- ``score_s``: the daily job on the last day with a trained model (features in SQL, calibrated
  probabilities, tree SHAP reasons, consent, the scores stored; ``train_s``: fitting that model).

    python tests/benchmarks/upgrade.py                     # 20,000 customers
    python tests/benchmarks/upgrade.py --customers 3000    # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.db.migrate import migrate
from cloud.upgrade.backtest import backtest
from cloud.upgrade.config import load_config
from cloud.upgrade.run import run_upgrade, training_days
from simulators.upgrade_world import load_upgrade_world, simulate_upgrade_world
from tests.helpers import scratch_database


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    config = load_config()
    with scratch_database(args.admin_url, "drivesight_bench_upgrade") as url:
        migrate(url)
        sim = simulate_upgrade_world(args.customers, seed=args.seed)
        with psycopg.connect(url, autocommit=True) as conn:
            load_upgrade_world(conn, sim, _say)
        last = sim.day(sim.days - 1)
        test_day = last - timedelta(days=config.horizon_days)
        with psycopg.connect(url, autocommit=True) as conn:
            result = backtest(conn, config, training_days(test_day, config), test_day, seed=args.seed)
        _say(f"backtest on {test_day}: AUC {result.auc}")
        started = time.perf_counter()
        report = run_upgrade(url, config, last, seed=args.seed, progress=_say)
        seconds = time.perf_counter() - started
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM upgrade_scores WHERE day = %s", (last,)).fetchone()
            stored = int(row[0]) if row else 0
    print(
        json.dumps(
            {
                "customers": args.customers,
                "seed": args.seed,
                "test_day": result.test_day,
                "train_rows": result.train_rows,
                "test_rows": result.test_rows,
                "base_rate": result.base_rate,
                "auc": result.auc,
                "auc_ci": result.auc_ci,
                "baseline_auc": result.baseline_auc,
                "top_decile_lift": result.top_decile_lift,
                "brier": result.brier,
                "brier_base_rate": result.brier_base_rate,
                "scored": report.scored,
                "stored": stored,
                "score_s": round(seconds - report.seconds["train"], 2),
                "train_s": report.seconds["train"],
            }
        )
    )


if __name__ == "__main__":
    main()
