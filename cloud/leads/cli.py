"""``drivesight cloud leads ...``: import lead files, process (clean, deduplicate, rate, route), escalate
missed first contacts, capture leads from what the system knows, and read leads, statistics and dealer KPIs.

Results on stdout (with ``--json`` only one JSON document), progress and errors on stderr. Exit codes: 2 for
a file or routing configuration refused, a bad ``--now`` or an unknown lead or merge; 3 when another run
holds the leads lock. A lead file's bad lines do not fail the import: they are reported (stderr, and
``refused`` with ``--json``) and every good line is captured.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cloud.clock import parse_now

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``leads`` command to the cloud command's subparsers."""
    leads = subparsers.add_parser("leads", help="dealer leads: import, process, route, escalate, KPIs")
    sub = leads.add_subparsers(dest="leads_command", required=True)
    imp = sub.add_parser(
        "import", help="capture the leads of CSV/JSON files line by line (bad lines reported)"
    )
    imp.add_argument("files", nargs="+", type=Path)
    imp.add_argument(
        "--source", choices=("form", "event", "campaign", "import"), help="for lines naming none"
    )
    capture = sub.add_parser(
        "capture", help="leads the system makes: test-drive clicks, upgrade intent, unbooked service"
    )
    capture.add_argument("--min-upgrade", type=float, default=0.5, help="upgrade probability from (0..1)")
    capture.add_argument(
        "--service-after-days", type=int, default=7, help="a service reminded this long ago and not booked"
    )
    process = sub.add_parser("process", help="clean, deduplicate, rate and route every new lead")
    escalate = sub.add_parser("escalate", help="leads whose first-contact deadline passed: to another dealer")
    for p in (process, escalate, capture):
        p.add_argument("--now", help="the run's time (ISO 8601 with offset; default: now)")
    for p in (process, escalate):
        p.add_argument("--routing", type=Path, help="routing rules (TOML; default: the shipped routing.toml)")
    listing = sub.add_parser("list", help="leads, newest first")
    listing.add_argument("--dealer")
    listing.add_argument("--status")
    listing.add_argument("--grade", choices=("A", "B", "C"))
    listing.add_argument("--limit", type=int, default=50)
    stats = sub.add_parser("stats", help="leads per channel, activity or source: funnel and conversion")
    stats.add_argument("--since", type=date.fromisoformat, required=True)
    stats.add_argument("--until", type=date.fromisoformat, required=True)
    stats.add_argument("--by", choices=("channel", "activity", "source"), default="channel")
    kpis = sub.add_parser("kpis", help="dealer KPIs of a month against their targets")
    kpis.add_argument("--month", help="YYYY-MM (default: this month)")
    kpis.add_argument("--dealer")
    undo = sub.add_parser("undo-merge", help="undo a duplicate merge: the lead is looked at afresh")
    undo.add_argument("merge_id", type=int)
    adf = sub.add_parser("adf", help="a dealer's assigned leads as ADF 1.0 XML (for its CRM), on stdout")
    adf.add_argument("--dealer", required=True)
    adf.add_argument("--status", default="assigned")
    for p in (imp, capture, process, escalate, listing, stats, kpis, undo):
        p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    leads.set_defaults(handler=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    import psycopg

    from cloud.analytics.imports import ImportError_
    from cloud.config import CloudSettings

    from .pipeline import LeadError
    from .routing import RoutingError

    handlers = {
        "import": _import, "capture": _capture, "process": _process, "escalate": _escalate, "list": _list,
        "stats": _stats, "kpis": _kpis, "undo-merge": _undo, "adf": _adf,
    }  # fmt: skip
    with psycopg.connect(CloudSettings().require_database_url(), autocommit=True) as conn:
        try:
            document, text = handlers[args.leads_command](conn, args)
        except LeadError as exc:
            log.error("%s", exc)
            return 3 if "lock" in str(exc) else 2
        except (ImportError_, RoutingError, ValueError) as exc:
            log.error("%s", exc)
            return 2
    if args.leads_command == "adf":
        print(text, end="")
    else:
        print(json.dumps(document, default=str) if getattr(args, "json", False) else text)
    return 0


def _routing(conn: Any, path: Path | None) -> Any:
    from .routing import load_routing

    config = load_routing(path)
    config.check_dealers({str(r[0]) for r in conn.execute("SELECT dealer_id FROM dealers")})
    return config


def _deliver(conn: Any, now: datetime) -> tuple[int, int]:
    """Post the dealer webhooks due (signed with ``DRIVESIGHT_PUSH_WEBHOOK_SECRET_FILE``; without a secret
    they wait, queued)."""
    from cloud.config import CloudSettings

    from .webhooks import deliver

    secret = CloudSettings().webhook_secret()
    if secret is None:
        log.info("no webhook signing secret configured: dealer webhooks stay queued")
        return 0, 0
    return deliver(conn, secret, now=now)


def _import(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .imports import read_lead_file
    from .pipeline import capture

    document: dict[str, Any] = {"files": {}}
    lines = []
    for path in args.files:
        found = read_lead_file(path, source=args.source)
        for line, why in found.refused:
            log.warning("%s:%d: %s", path, line, why)
        report = capture(conn, found.leads)
        document["files"][str(path)] = {
            "captured": report.captured,
            "already": report.already,
            "refused": [{"line": line, "why": why} for line, why in found.refused],
        }
        lines.append(
            f"{path}: {report.captured} leads captured, {report.already} captured before,"
            f" {len(found.refused)} lines refused"
        )
    return document, "\n".join(lines)


def _capture(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .capture import capture_from_system

    report = capture_from_system(
        conn,
        now=parse_now(args.now),
        min_upgrade=args.min_upgrade,
        service_after_days=args.service_after_days,
    )
    return report, ", ".join(f"{k}: {v}" for k, v in report.items())


def _process(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from dataclasses import asdict

    from .pipeline import process

    now = parse_now(args.now)
    report = process(conn, _routing(conn, args.routing), now=now, progress=log.info)
    delivered, failed = _deliver(conn, now)
    text = (
        f"{report.leads} new leads: {sum(report.rejected.values())} rejected, {report.duplicates} duplicates,"
        f" {report.linked_to_customers} linked to customers; grades {report.grades};"
        f" assigned {report.assigned}; unassigned {report.unassigned};"
        f" {report.waiting_assigned} waiting leads assigned; dealer webhooks delivered {delivered}, failed"
        f" {failed}"
    )
    return {**asdict(report), "webhooks_delivered": delivered, "webhooks_failed": failed}, text


def _escalate(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from dataclasses import asdict

    from .followup import escalate

    now = parse_now(args.now)
    report = escalate(conn, _routing(conn, args.routing), now=now)
    delivered, failed = _deliver(conn, now)
    text = (
        f"{report.escalated} escalated: reassigned {report.reassigned},"
        f" {report.unassigned} with no other dealer; dealer webhooks delivered {delivered}, failed {failed}"
    )
    return {**asdict(report), "webhooks_delivered": delivered, "webhooks_failed": failed}, text


def _list(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .read import list_leads

    rows = list_leads(conn, limit=args.limit, dealer_id=args.dealer, status=args.status, grade=args.grade)
    text = "\n".join(
        f"{r['lead_id']:>8} {r['created_at']:%Y-%m-%d %H:%M} {r['status']:<11} {r['grade'] or '-'}"
        f" {r['dealer_id'] or '-':<8} {r['channel']:<12} {r['name'] or ''}"
        for r in rows
    )
    return rows, text or "no leads"


def _stats(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .kpis import lead_stats

    rows = lead_stats(conn, args.since, args.until, by=args.by)
    text = "\n".join(
        f"{r[args.by]:<24} captured {r['captured']:>7}  assigned {r['assigned']:>7}  orders"
        f" {r['funnel']['order']:>6}  conversion {_pct(r['conversion'])}"
        for r in rows
    )
    return rows, text or "no leads"


def _pct(interval: dict[str, float | None]) -> str:
    if interval["rate"] is None:
        return "-"
    return f"{interval['rate']:.1%} [{interval['ci_low']:.1%}, {interval['ci_high']:.1%}]"


def _kpis(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .kpis import dealer_kpis

    month = date.fromisoformat(args.month + "-01") if args.month else datetime.now(UTC).date()
    rows = dealer_kpis(conn, month, args.dealer)
    text = "\n".join(
        f"{k.dealer_id:<8} leads {k.assigned:>5}  contacted {_pct(k.contact_rate)}  first contact p50"
        f" {k.hours_to_first_contact_p50 if k.hours_to_first_contact_p50 is not None else '-'} h  orders"
        f" {k.orders} ({_pct(k.conversion)})  target orders {k.targets['orders'] or '-'}"
        for k in rows
    )
    return [k.as_json() for k in rows], text or "no dealers"


def _undo(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .pipeline import undo_merge

    lead_id = undo_merge(conn, args.merge_id, now=datetime.now(UTC))
    return {
        "merge_id": args.merge_id,
        "lead_id": lead_id,
    }, f"merge {args.merge_id} undone: lead {lead_id} is new"


def _adf(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .adf import to_adf
    from .read import dealer_name, list_leads

    name = dealer_name(conn, args.dealer)
    if name is None:
        raise ValueError(f"no dealer {args.dealer!r}")
    rows = list_leads(conn, limit=100_000, dealer_id=args.dealer, status=args.status)
    return None, to_adf(rows, dealer_name=name).decode()
