"""Churn early warning at scale: the daily scoring of every customer, and a backtest of what it foresaw.

A simulated world (simulators/churn_world.py: customers who leave from hidden traits and noise, half a year of
trips, service visits, complaints, fault codes and in-car pushes) is loaded into a private database. Then:

- the backtest (cloud/churn/backtest.py): a model trained on the snapshots whose 30-day outcome was known by
  the test day, scoring the customers active on the test day; ``auc`` (with ``auc_ci``), ``top_decile_lift``,
  ``brier`` (next to ``brier_base_rate``: always predicting the training churn rate), ``baseline_auc`` (fewest
  recent trips first), and ``auc_vs_truth``: the same scores against the simulator's hidden truth (left
  within the horizon) among the customers who had not left by the test day (``already_gone``: the share of
  the test rows who had, whom the derived label counts as churned and the simulator does not);
- ``score_s``: the daily job on the last day with a trained model — features in SQL, calibrated
  probabilities, tree SHAP reasons, consent and the scores stored (``train_s``: fitting that model).

- the retention experiment (simulators/retention_world.py): the high tier of that day's scores (the shipped
  tiers: the riskiest tenth of the active customers) is the audience of a retention campaign with a holdout
  (``--holdout-share``),
  created and launched through the campaign engine (cloud/push) the next day at noon local time; the
  customers who see the offer leave with a hazard lowered by their hidden effect (``--offer-strength``; 0:
  none); the following ``--retention-days`` (60; churned: silent for the last ``--silent-days``, 30) are
  simulated and stored, and the campaign's results say the churn in treatment and holdout:
  ``churn_reduction`` (holdout churn minus treated churn among the customers active when assigned,
  percentage points) with ``ci_low``/``ci_high`` (Newcombe 95 %), ``retention`` (the whole block), and
  ``truth_reduction``: the treated customers' leaving within the window without the offer minus with it, by
  the simulator's hidden truth (customers still there when assigned).

    python tests/benchmarks/churn.py                      # 100,000 customers
    python tests/benchmarks/churn.py --customers 3000     # smoke size (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.churn.backtest import backtest
from cloud.churn.config import load_config
from cloud.churn.features import active
from cloud.churn.run import consenting_features, run_churn, train_model, training_days
from cloud.db.migrate import migrate
from simulators.churn_world import load_churn_world, simulate_churn_world
from simulators.retention_world import (
    OfferModel,
    import_offer,
    retention_campaign,
    run_retention_campaign,
    simulate_follow_up,
)
from tests.helpers import scratch_database


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--config", type=Path, help="a churn.toml (default: the shipped one)")
    parser.add_argument("--holdout-share", type=float, default=0.5)
    parser.add_argument("--retention-days", type=int, default=60)
    parser.add_argument("--silent-days", type=int, default=30)
    parser.add_argument("--offer-strength", type=float, default=1.0)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    config = load_config(args.config)
    start = time.perf_counter()
    world = simulate_churn_world(args.customers, args.seed, days=args.days)
    _say(f"world: {int(world.trips_per_day.sum()):,} trips in {time.perf_counter() - start:.1f} s")
    last = world.day(world.days - 1)
    test_day = last - timedelta(days=config.horizon_days)
    with scratch_database(args.admin_url, "drivesight_churn_bench") as url:
        migrate(url)
        start = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            load_churn_world(conn, world, _say)
            conn.execute("VACUUM ANALYZE")
        _say(f"loaded in {time.perf_counter() - start:.1f} s")
        with psycopg.connect(url, autocommit=True) as conn:
            start = time.perf_counter()
            result = backtest(conn, config, training_days(test_day, config), test_day, seed=args.seed)
            _say(f"backtest in {time.perf_counter() - start:.1f} s: {result.as_dict()}")
            # the same test day's scores against the hidden truth: left within the horizon after it
            test = consenting_features(conn, test_day, config)
            test = test.rows(active(test, config))
            from cloud.churn.model import ChurnModel
            from cloud.churn.run import training_rows

            X, y = training_rows(conn, training_days(test_day, config), config)
            model = ChurnModel(config.model, args.seed).fit(X, y)
            index = np.array([int(c[1:]) for c in test.customers])
            churn_day = world.truth["churn_day"][index]
            t = (test_day - world.first_day).days
            left = (churn_day > t) & (churn_day <= t + config.horizon_days)
            still = (churn_day < 0) | (churn_day > t)  # had not left by the test day
            p = model.predict_proba(test.values)
            auc_vs_truth = float(roc_auc_score(left[still], p[still]))
            already_gone = float(np.mean(~still))
            start = time.perf_counter()
            stored = train_model(conn, last, config, seed=args.seed)
            train_s = time.perf_counter() - start
            _say(f"model {stored.version} trained in {train_s:.1f} s")
        start = time.perf_counter()
        report = run_churn(url, config, last, progress=_say)
        score_s = time.perf_counter() - start
        start = time.perf_counter()
        at = datetime.combine(world.day(world.days), datetime.min.time(), tzinfo=UTC) + timedelta(hours=4)
        offer = OfferModel(strength=args.offer_strength)
        with psycopg.connect(url, autocommit=True) as conn:
            import_offer(conn, at)
            spec = retention_campaign(
                "retention-high",
                at,
                holdout_share=args.holdout_share,
                retention={
                    "days": args.retention_days,
                    "silent_days": args.silent_days,
                    "cost_per_offer": 5.0,
                    "value_per_retained": 800.0,
                },
            )
            run = run_retention_campaign(conn, world, spec, now=at, model=offer, seed=args.seed)
        retention = run.results["retention"]
        treated_arm = next(a for a in retention["arms"] if a["arm"] == "offer")
        reduction = treated_arm["reduction_pp"]
        # the hidden truth: the treated customers' leaving within the window, with the offer and without it
        without = simulate_follow_up(world, args.retention_days + 1, args.seed)
        treated = np.zeros(len(world.customers), dtype=bool)
        with psycopg.connect(url) as conn:
            for (c,) in conn.execute(
                "SELECT customer_id FROM campaign_decisions WHERE campaign_id = 'retention-high'"
                " AND arm = 'offer'"
            ):
                treated[int(str(c)[1:])] = True
        end = world.days + args.retention_days
        still = treated & (world.truth["churn_day"] < 0)

        def _left(churn_day: np.ndarray) -> float:
            return float(np.mean((churn_day[still] >= 0) & (churn_day[still] < end))) if still.any() else 0.0

        truth_reduction = 100 * (_left(without.churn_day) - _left(run.follow.churn_day))
        retention_s = time.perf_counter() - start
        _say(f"retention experiment in {retention_s:.1f} s: {treated_arm}")
    print(
        json.dumps(
            {
                "customers": args.customers,
                "scored": report.scored,
                "score_s": round(score_s, 2),
                "score_steps_s": report.seconds,
                "train_s": round(train_s, 2),
                "tiers": report.tiers,
                "test_rows": result.test_rows,
                "base_rate": result.base_rate,
                "auc": result.auc,
                "auc_ci": list(result.auc_ci),
                "baseline_auc": result.baseline_auc,
                "auc_vs_truth": round(auc_vs_truth, 4),
                "already_gone": round(already_gone, 4),
                "top_decile_lift": result.top_decile_lift,
                "brier": result.brier,
                "brier_base_rate": result.brier_base_rate,
                "reliability": result.reliability,
                "churn_reduction": reduction["difference"],
                "ci_low": reduction["ci_low"],
                "ci_high": reduction["ci_high"],
                "thresholds": report.thresholds,
                "truth_reduction": round(truth_reduction, 3),
                "retention_s": round(retention_s, 2),
                "retention": retention,
            }
        )
    )


if __name__ == "__main__":
    main()
