"""``drivesight cloud churn run|list|show|backtest``.

Results on stdout (with ``--json`` only JSON), progress and errors on stderr. Exit codes: 1 for a database
that cannot be reached, 2 for a refused input (a bad configuration or day, nothing to learn from, another run
under way), 3 for a customer without scores (unknown, not consenting to marketing, or not scored yet).
``list`` and ``show`` read personal data: each is a row in the audit log (no key: the CLI). Heavy imports
happen inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from cloud.scores.cli import audit, day_arg, dispatch, reasons_brief, show

from .config import TIERS

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``churn`` command to the cloud command's subparsers."""
    churn = subparsers.add_parser("churn", help="churn early warning: score, list, show, backtest")
    sub = churn.add_subparsers(dest="churn_command", required=True)
    run = sub.add_parser("run", help="the daily job: score every consenting customer for a day")
    run.add_argument("--day", type=day_arg, help="the day to score (default: yesterday, UTC)")
    run.add_argument("--retrain", action="store_true", help="fit a new model before scoring")
    run.add_argument("--seed", type=int, default=0)
    listing = sub.add_parser("list", help="the newest day's scores of a tier, riskiest first")
    listing.add_argument("--tier", choices=TIERS)
    listing.add_argument("--limit", type=int, default=50)
    show = sub.add_parser("show", help="one customer's score, reasons and trend")
    show.add_argument("customer_id")
    back = sub.add_parser("backtest", help="train on earlier snapshots, score a later day, judge the outcome")
    back.add_argument("--test-day", type=day_arg, help="default: the newest day whose horizon has passed")
    back.add_argument("--seed", type=int, default=0)
    for p in (run, listing, show, back):
        p.add_argument("--config", type=Path, help="a churn.toml (default: the shipped one)")
        p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    churn.set_defaults(handler=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config
    from .run import ChurnError

    handlers = {"run": _run, "list": _list, "show": _show, "backtest": _backtest}
    return dispatch(args, args.churn_command, load_config, ConfigError, ChurnError, handlers, log)


def _run(url: str, config: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from dataclasses import asdict
    from datetime import UTC, datetime

    from .run import run_churn

    day = args.day or (datetime.now(UTC).date() - timedelta(days=1))
    report = run_churn(url, config, day, retrain=args.retrain, seed=args.seed, progress=log.info)
    tiers = ", ".join(f"{t} {n}" for t, n in report.tiers.items())
    return asdict(
        report
    ), f"{day}: {report.scored} customers scored with model {report.model_version} ({tiers})"


def _list(url: str, config: Any, args: argparse.Namespace) -> tuple[Any, str]:
    import psycopg

    from .read import list_tier

    with psycopg.connect(url) as conn, conn.transaction():
        scores = list_tier(conn, args.tier, limit=args.limit)
        audit(conn, "churn.list", None, {"tier": args.tier, "customers": len(scores)})
    items = [
        {
            "customer_id": s.customer_id,
            "day": s.day,
            "probability": s.probability,
            "tier": s.tier,
            "reasons": s.reasons,
        }
        for s in scores
    ]
    lines = [f"{s.customer_id}  {s.probability:.3f}  {s.tier:6}  {reasons_brief(s.reasons)}" for s in scores]
    return {"items": items}, "\n".join(lines) or "no scores"


def _show(url: str, config: Any, args: argparse.Namespace) -> tuple[Any, str] | None:
    from .read import customer_churn

    return show(
        url,
        args.customer_id,
        "churn",
        customer_churn,
        lambda s: {"tier": s.tier},
        lambda h: {"day": h[0], "probability": h[1], "tier": h[2]},
        lambda s, trend: f" ({s.tier}{trend})",
        log,
    )


def _backtest(url: str, config: Any, args: argparse.Namespace) -> tuple[Any, str]:
    import psycopg

    from .backtest import backtest

    with psycopg.connect(url, autocommit=True) as conn:
        test_day = args.test_day
        if test_day is None:
            row = conn.execute("SELECT max(started_at)::date FROM trips").fetchone()
            if row is None or row[0] is None:
                raise ValueError("no trips: nothing to backtest on")
            test_day = row[0] - timedelta(days=config.horizon_days)
        train = [
            test_day - timedelta(days=config.horizon_days + config.snapshot_step_days * k)
            for k in reversed(range(config.snapshots))
        ]
        result = backtest(conn, config, train, test_day, seed=args.seed)
    text = (
        f"trained on {', '.join(result.train_days)} ({result.train_rows} rows), scored {result.test_day}"
        f" ({result.test_rows} rows, churn {result.base_rate:.3f}): AUC {result.auc} {list(result.auc_ci)}"
        f" (baseline {result.baseline_auc}), top-decile lift {result.top_decile_lift},"
        f" Brier {result.brier} (base rate alone {result.brier_base_rate})"
    )
    return result.as_dict(), text
