"""``drivesight cloud service remind|reminders``: the daily reminder job, and its decisions.

Results on stdout (with ``--json`` only JSON), progress and errors on stderr. Exit codes: 2 for a service
plan file refused or a bad ``--now``, 4 when the broker cannot be reached. The job publishes through the
broker identity of ``DRIVESIGHT_MQTT_URL`` and signs dealer webhooks with
``DRIVESIGHT_PUSH_WEBHOOK_SECRET_FILE`` (or ``_SECRET``; without it dealer notifications are suppressed with
the reason). The plans: ``--plans FILE``, else ``DRIVESIGHT_SERVICE_PLANS``, else the shipped plans.toml.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from cloud.clock import parse_now

log = logging.getLogger(__name__)

#: the outcomes ``reminders --status`` filters by (a suppression's reason counts as its status)
STATUSES = (
    "sending", "sent", "failed", "suppressed", "stopped_by_booking",
    "no_consent", "quiet_hours", "capped", "held", "no_dealer", "no_endpoint",
)  # fmt: skip


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``service`` command to the cloud command's subparsers."""
    service = subparsers.add_parser("service", help="service reminders: due by mileage, time and faults")
    sub = service.add_subparsers(dest="service_command", required=True)
    remind = sub.add_parser(
        "remind", help="the daily job: remind due cars in the car, re-notify, stop on booking, tell dealers"
    )
    remind.add_argument("--now", help="the job's time (ISO 8601 with offset; default: now)")
    remind.add_argument("--plans", type=Path, help="service plans (TOML; default: the shipped plans.toml)")
    remind.add_argument("--vehicle", action="append", help="only this car (repeatable)")
    remind.add_argument("--json", action="store_true", help="one JSON document on stdout")
    listing = sub.add_parser("reminders", help="reminder decisions with their reasons, newest first")
    listing.add_argument("--vehicle", help="only this car")
    listing.add_argument("--status", choices=STATUSES, help="only this outcome or suppression")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="one JSON document on stdout")
    service.set_defaults(handler=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    import psycopg

    from cloud.config import CloudSettings

    from .plans import PlanError

    settings = CloudSettings()
    with psycopg.connect(settings.require_database_url(), autocommit=True) as conn:
        try:
            if args.service_command == "remind":
                document, text = _remind(conn, args, settings)
            else:
                document, text = _reminders(conn, args)
        except (PlanError, ValueError) as exc:
            log.error("%s", exc)
            return 2
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.error("the broker cannot be reached: %s", exc)
            return 4
    print(json.dumps(document, default=str) if args.json else text)
    return 0


def _remind(conn: Any, args: argparse.Namespace, settings: Any) -> tuple[Any, str]:
    from cloud.downlink import DownlinkPublisher, connect_service
    from cloud.privacy.audit import record
    from cloud.push.campaigns import mqtt_sender

    from .dealers import DealerChannel
    from .plans import load_plans
    from .remind import run_reminders

    now = parse_now(args.now)
    path = args.plans or (
        Path(os.environ["DRIVESIGHT_SERVICE_PLANS"]) if "DRIVESIGHT_SERVICE_PLANS" in os.environ else None
    )
    plans = load_plans(path)
    client = connect_service(settings)
    try:
        secret = settings.webhook_secret()
        report = run_reminders(
            conn,
            plans,
            mqtt_sender(DownlinkPublisher(client)),
            now=now,
            dealers=None if secret is None else DealerChannel(secret),
            vehicles=args.vehicle,
        )
    finally:
        client.disconnect()
        client.loop_stop()
    document = {
        "now": now.isoformat(),
        "cars": report.cars,
        "due": report.due,
        "decided": report.decided,
        "unchanged": report.unchanged,
        "published": report.published,
        "acknowledged": report.acknowledged,
        "webhooks_delivered": report.webhooks_delivered,
        "webhooks_failed": report.webhooks_failed,
        "seconds": round(report.seconds, 3),
    }
    detail: dict[str, object] = {**report.decided}
    with conn.transaction():
        record(conn, key_id=None, action="service.remind", subject="service", outcome="ok", detail=detail)
    lines = [f"{report.cars} cars at {now:%Y-%m-%d %H:%M} UTC; due: {report.due or 'none'}"]
    lines += [f"  {k:<32} {n}" for k, n in report.decided.items()]
    if report.unchanged:
        lines.append(f"unchanged (suppressed as before, not recorded again): {report.unchanged}")
    lines.append(f"published {report.published}, acknowledged {report.acknowledged}")
    if report.webhooks_delivered or report.webhooks_failed:
        lines.append(
            f"dealer webhooks delivered {report.webhooks_delivered}, failed {report.webhooks_failed}"
        )
    return document, "\n".join(lines)


def _reminders(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .read import list_reminders

    rows = list_reminders(conn, vehicle_id=args.vehicle, status=args.status, limit=args.limit)
    lines = [
        f"{r['decided_at']:%Y-%m-%d %H:%M} {r['vehicle_id']:<20} {r['channel']:<14} {r['reason']:<15}"
        f" #{r['attempt']} {r['suppressed_by'] or r['outcome']:<18} {r['why']}"
        for r in rows
    ]
    return rows, "\n".join(lines) or "no reminder decisions"
