"""``drivesight cloud forecast``: unit-sales forecasts by model x region (or a coarser grouping), monthly or
weekly, from the database's purchases or a ``--data`` CSV file, with an optional rolling-origin backtest.

Results on stdout (with ``--json`` exactly one JSON document), progress, refused lines and errors on stderr.
Exit codes: 1 for a database that cannot be reached, 2 for a refused input (a bad ``--by`` or ``--horizon``,
a file that cannot be read or has no usable line, no purchases). Heavy imports happen inside the handler.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run import ForecastReport
    from .series import Freq, Sale

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``forecast`` command to the cloud command's subparsers."""
    p = subparsers.add_parser("forecast", help="unit-sales forecasts by model and region, with backtests")
    p.add_argument("--by", default="model,region", help="model,region | model | region | total")
    p.add_argument("--horizon", type=int, default=6, help="periods ahead (1..36)")
    p.add_argument("--freq", choices=("M", "W"), default="M", help="months (season 12) or weeks (season 52)")
    p.add_argument("--data", type=Path, help="a date,model,region,units CSV instead of the database")
    p.add_argument("--backtest", action="store_true", help="rolling-origin backtest; each series its best")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(handler=_forecast)


def _forecast(args: argparse.Namespace) -> int:
    from . import ForecastError
    from .run import forecast_sales
    from .series import Freq, LineProblem, parse_by, read_csv

    freq = Freq(args.freq)
    try:
        by = parse_by(args.by)
        if not 1 <= args.horizon <= 36:
            raise ForecastError(f"--horizon {args.horizon}: give 1 to 36 periods")
        problems: list[LineProblem] = []
        if args.data is not None:
            sales, problems = read_csv(args.data, freq)
            for p in problems:
                log.warning("%s line %d refused: %s", args.data, p.line, p.reason)
        else:
            sales = _from_database(freq)
        report = forecast_sales(
            sales, freq, by, args.horizon, run_backtest=args.backtest, problems=problems, seed=args.seed,
            progress=log.info,
        )  # fmt: skip
    except ForecastError as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(report.as_dict()) if args.json else _text(report))
    return 0


def _from_database(freq: Freq) -> list[Sale]:
    from datetime import UTC, datetime

    import psycopg

    from cloud.config import CloudSettings

    from .series import read_database

    with psycopg.connect(CloudSettings().require_database_url(), autocommit=True) as conn:
        return read_database(conn, freq, datetime.now(UTC).date())


def _text(report: ForecastReport) -> str:
    """A table: a line per series with its method and points, then the coarser levels' bottom-up sums."""
    doc = report.as_dict()
    lines = [f"{'series':32} {'method':15} " + " ".join(f"{p:>10}" for p in doc["periods"])]
    for s in doc["series"]:
        name = ",".join(s["key"].values()) or "total"
        points = " ".join(f"{f['point']:>10.1f}" for f in s["forecast"])
        flags = f"  [{'; '.join(s['flags'])}]" if s["flags"] else ""
        lines.append(f"{name[:32]:32} {s['method']:15} {points}{flags}")
    for a in doc["aggregates"]:
        name = ",".join(a["key"].values()) or "total"
        points = " ".join(f"{f['bottom_up']:>10.1f}" for f in a["forecast"])
        lines.append(f"{name[:32]:32} {'sum of series':15} {points}")
    if report.backtest is not None:
        bt = report.backtest.as_dict()
        lines.append(f"backtest: MASE {bt['mase']}, 80% coverage {bt['coverage_80']}")
        lines.append(f"no model beats seasonal-naive on {len(doc['no_model_beats_seasonal_naive'])} series")
    return "\n".join(lines)
