"""What the scoring jobs' commands (``cloud churn``, ``cloud upgrade``) share: the day argument, running a
subcommand (configuration, exit codes, printing), the audit row of a personal read and ``show``. Heavy imports
happen inside the functions."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

Handler = Callable[[str, Any, argparse.Namespace], "tuple[Any, str] | None"]


def day_arg(text: str) -> date:
    """An argparse type: a day as YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from exc


def dispatch(
    args: argparse.Namespace,
    command: str,
    load_config: Callable[[Path | None], Any],
    config_error: type[Exception],
    job_error: type[Exception],
    handlers: Mapping[str, Handler],
    log: logging.Logger,
) -> int:
    """Run the subcommand ``command`` names with the configuration of ``args.config``: print its result (JSON
    with ``--json``), 2 for a refused input or configuration, 3 for nothing found, 0 otherwise; an unreachable
    database is the cloud command's to report (exit 1). Errors go to ``log``, the command's own logger."""
    import psycopg

    from cloud.config import CloudSettings

    try:
        config = load_config(args.config)
    except config_error as exc:
        log.error("%s", exc)
        return 2
    url = CloudSettings().require_database_url()
    try:
        out = handlers[command](url, config, args)
    except (job_error, ValueError) as exc:
        log.error("%s", exc)
        return 2
    except psycopg.OperationalError:
        raise  # the cloud command's one-line "database unreachable", exit 1
    except psycopg.Error as exc:
        log.error("database: %s", exc)
        return 2
    if out is None:
        return 3
    document, text = out
    print(json.dumps(document, default=str) if args.json else text)
    return 0


def audit(conn: Any, action: str, subject: str | None, detail: dict[str, object]) -> None:
    """The audit row of a personal read by the CLI (no key)."""
    from cloud.privacy import audit

    audit.record(conn, key_id=None, action=action, subject=subject, outcome="ok", detail=detail)


def reasons_brief(reasons: list[dict[str, Any]]) -> str:
    """A score's reasons on one line of a list: ``feature=value, ...``."""
    return ", ".join(f"{r['feature']}={r['value']:g}" for r in reasons)


def show(
    url: str,
    customer_id: str,
    name: str,
    read: Callable[[Any, str], Any],
    own: Callable[[Any], dict[str, Any]],
    point: Callable[[tuple[Any, ...]], dict[str, Any]],
    label: Callable[[Any, str], str],
    log: logging.Logger,
) -> tuple[Any, str] | None:
    """One customer's newest score (``read``), audited as ``<name>.read``: its fields with the job's
    ``own``, the trend, the history (each day's ``point``); the text says ``label`` of the score and trend.
    None (and an error on ``log``, the command's own logger) when marketing may see no scores of the
    customer."""
    import psycopg

    from cloud.privacy import audit

    with psycopg.connect(url) as conn, conn.transaction():
        found = read(conn, customer_id)
        subject = audit.personal_subject("customer", customer_id)
        outcome = "ok" if found else "not_found"
        audit.record(conn, key_id=None, action=f"{name}.read", subject=subject, outcome=outcome)
    if found is None:
        log.error("no %s scores of customer %r that marketing may see", name, customer_id)
        return None
    s = found.latest
    document = {
        "customer_id": s.customer_id,
        "day": s.day,
        "probability": s.probability,
        **own(s),
        "reasons": s.reasons,
        "model_version": s.model_version,
        "trend": found.trend,
        "history": [point(h) for h in found.history],
    }
    reasons = "; ".join(f"{r['feature']} = {r['value']:g} (+{r['contribution']:.2f})" for r in s.reasons)
    trend = "" if found.trend is None else f", {found.trend:+.3f} over {len(found.history)} days"
    return document, f"{s.customer_id} on {s.day}: {s.probability:.3f}{label(s, trend)}; {reasons}"
