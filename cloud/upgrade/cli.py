"""``drivesight cloud upgrade run|list|show|leads|backtest``.

Results on stdout (with ``--json`` only JSON), progress and errors on stderr. Exit codes: 1 for a database
that cannot be reached, 2 for a refused input (a bad configuration, day or probability, nothing to learn
from, another run under way), 3 for a customer without scores (unknown, not consenting to marketing, or not
scored yet). ``list``, ``show`` and ``leads`` read personal data: each is a row in the audit log (no key: the
CLI). Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from cloud.scores.cli import audit, day_arg, dispatch, reasons_brief, show

log = logging.getLogger(__name__)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability (0 to 1)")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``upgrade`` command to the cloud command's subparsers."""
    upgrade = subparsers.add_parser("upgrade", help="upgrade intent: score, list, show, leads, backtest")
    sub = upgrade.add_subparsers(dest="upgrade_command", required=True)
    run = sub.add_parser("run", help="the daily job: score every consenting car owner for a day")
    run.add_argument("--day", type=day_arg, help="the day to score (default: yesterday, UTC)")
    run.add_argument("--retrain", action="store_true", help="fit a new model before scoring")
    run.add_argument("--seed", type=int, default=0)
    listing = sub.add_parser("list", help="the newest day's scores, likeliest first")
    listing.add_argument("--min-probability", type=_probability, default=0.0)
    listing.add_argument("--limit", type=int, default=50)
    show = sub.add_parser("show", help="one customer's score, reasons and trend")
    show.add_argument("customer_id")
    leads = sub.add_parser("leads", help="customers ready to become dealer leads, with their dealer")
    leads.add_argument("--min-probability", type=_probability, required=True)
    leads.add_argument("--limit", type=int, default=10_000)
    back = sub.add_parser("backtest", help="train on earlier snapshots, score a later day, judge the outcome")
    back.add_argument("--test-day", type=day_arg, help="default: the newest day whose horizon has passed")
    back.add_argument("--seed", type=int, default=0)
    for p in (run, listing, show, leads, back):
        p.add_argument("--config", type=Path, help="an upgrade.toml (default: the shipped one)")
        p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    upgrade.set_defaults(handler=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config
    from .run import UpgradeError

    handlers = {"run": _run, "list": _list, "show": _show, "leads": _leads, "backtest": _backtest}
    return dispatch(args, args.upgrade_command, load_config, ConfigError, UpgradeError, handlers, log)


def _run(url: str, config: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from dataclasses import asdict
    from datetime import UTC, datetime

    from .run import run_upgrade

    day = args.day or (datetime.now(UTC).date() - timedelta(days=1))
    report = run_upgrade(url, config, day, retrain=args.retrain, seed=args.seed, progress=log.info)
    text = (
        f"{day}: {report.scored} customers scored with model {report.model_version}"
        f" (mean probability {report.mean_probability:.3f})"
    )
    return asdict(report), text


def _list(url: str, config: Any, args: argparse.Namespace) -> tuple[Any, str]:
    import psycopg

    from .read import list_scores

    with psycopg.connect(url) as conn, conn.transaction():
        scores = list_scores(conn, args.min_probability, limit=args.limit)
        audit(conn, "upgrade.list", None, {"min_probability": args.min_probability, "customers": len(scores)})
    items = [
        {"customer_id": s.customer_id, "day": s.day, "probability": s.probability, "reasons": s.reasons}
        for s in scores
    ]
    lines = [f"{s.customer_id}  {s.probability:.3f}  {reasons_brief(s.reasons)}" for s in scores]
    return {"items": items}, "\n".join(lines) or "no scores"


def _show(url: str, config: Any, args: argparse.Namespace) -> tuple[Any, str] | None:
    from .read import customer_upgrade

    return show(
        url,
        args.customer_id,
        "upgrade",
        customer_upgrade,
        lambda s: {},
        lambda h: {"day": h[0], "probability": h[1]},
        lambda s, trend: trend,
        log,
    )


def _leads(url: str, config: Any, args: argparse.Namespace) -> tuple[Any, str]:
    import psycopg

    from .read import leads

    with psycopg.connect(url) as conn, conn.transaction():
        found = leads(conn, args.min_probability, limit=args.limit)
        audit(conn, "upgrade.leads", None, {"min_probability": args.min_probability, "customers": len(found)})
    items = [
        {
            "customer_id": lead.customer_id,
            "dealer_id": lead.dealer_id,
            "dealer_name": lead.dealer_name,
            "day": lead.day,
            "probability": lead.probability,
            "reasons": lead.reasons,
        }
        for lead in found
    ]
    lines = [
        f"{lead.customer_id}  {lead.dealer_id or '-'}  {lead.probability:.3f}  {reasons_brief(lead.reasons)}"
        for lead in found
    ]
    return {"min_probability": args.min_probability, "leads": items}, "\n".join(lines) or "no leads"


def _backtest(url: str, config: Any, args: argparse.Namespace) -> tuple[Any, str]:
    import psycopg

    from .backtest import backtest
    from .run import training_days

    with psycopg.connect(url, autocommit=True) as conn:
        test_day = args.test_day
        if test_day is None:
            row = conn.execute("SELECT max(purchased_at) FROM purchases").fetchone()
            if row is None or row[0] is None:
                raise ValueError("no purchases: nothing to backtest on")
            test_day = row[0] - timedelta(days=config.horizon_days)
        result = backtest(conn, config, training_days(test_day, config), test_day, seed=args.seed)
    text = (
        f"trained on {', '.join(result.train_days)} ({result.train_rows} rows), scored {result.test_day}"
        f" ({result.test_rows} rows, bought {result.base_rate:.3f}): AUC {result.auc} {list(result.auc_ci)}"
        f" (baseline of the oldest car {result.baseline_auc}), top-decile lift {result.top_decile_lift},"
        f" Brier {result.brier} (base rate alone {result.brier_base_rate})"
    )
    return result.as_dict(), text
