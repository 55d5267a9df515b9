"""``drivesight cloud db backup|restore`` and ``drivesight cloud privacy export|erase|confirm|consent``.

The privacy commands act as the operator at the console: their audit rows carry no key id. Results on stdout
(with ``--json`` only JSON), errors on stderr with a non-zero exit: 2 for refused input (unknown customer or
request, wrong token, expired request, bad scope), 3 for a conflict (an erasure confirmed before).
Heavy imports happen inside the handlers, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloud.config import CloudSettings

log = logging.getLogger(__name__)


def register_db(db_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``backup`` and ``restore`` to the ``db`` command's subparsers."""
    backup = db_subparsers.add_parser("backup", help="write the database to FILE (pg_dump custom format)")
    backup.add_argument("file", type=Path)
    backup.add_argument("--json", action="store_true", help="one JSON document on stdout")
    backup.set_defaults(handler=_backup)
    restore = db_subparsers.add_parser(
        "restore",
        help="restore FILE into the (empty) database, migrate it, and re-apply the erasure ledger",
    )
    restore.add_argument("file", type=Path)
    restore.add_argument("--json", action="store_true", help="one JSON document on stdout")
    restore.set_defaults(handler=_restore)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``privacy`` command to the cloud command's subparsers."""
    privacy = subparsers.add_parser("privacy", help="one person's data: export, erasure, consent")
    sub = privacy.add_subparsers(dest="privacy_command", required=True)
    export = sub.add_parser("export", help="everything held about a customer, as one JSON document")
    export.add_argument("customer_id")
    export.add_argument("--out", type=Path, help="write the document here instead of stdout")
    export.add_argument("--json", action="store_true", help="compact JSON (default: indented)")
    export.set_defaults(handler=_export)
    erase = sub.add_parser("erase", help="request a customer's erasure: prints the request id and its token")
    erase.add_argument("customer_id")
    erase.add_argument(
        "--expires-hours", type=_positive_hours, default=24.0, help="the token's lifetime (default 24)"
    )
    erase.add_argument("--json", action="store_true", help="one JSON document on stdout")
    erase.set_defaults(handler=_erase)
    confirm = sub.add_parser("confirm", help="confirm an erasure request with its token: erases the person")
    confirm.add_argument("request_id", type=int)
    confirm.add_argument("--token", required=True, help="the token the request printed")
    confirm.add_argument("--json", action="store_true", help="one JSON document on stdout")
    confirm.set_defaults(handler=_confirm)
    consent = sub.add_parser("consent", help="show a customer's consent, or record a grant or withdrawal")
    consent.add_argument("customer_id")
    change = consent.add_mutually_exclusive_group()
    change.add_argument(
        "--grant", metavar="SCOPE", help="marketing, profiling, location, rd or dealer_sharing"
    )
    change.add_argument(
        "--withdraw", metavar="SCOPE", help="marketing, profiling, location, rd or dealer_sharing"
    )
    consent.add_argument("--source", default="dealer", help="app, dealer or import (default dealer)")
    consent.add_argument("--at", help="when the person decided (ISO 8601; default now)")
    consent.add_argument("--json", action="store_true", help="one JSON document on stdout")
    consent.set_defaults(handler=_consent)


def _positive_hours(text: str) -> float:
    hours = float(text)
    if not 0 < hours <= 24 * 30:
        raise argparse.ArgumentTypeError("give hours between 0 and 720")
    return hours


def _settings() -> CloudSettings:
    from cloud.config import CloudSettings  # late: --help stays fast

    return CloudSettings()


def _backup(args: argparse.Namespace) -> int:
    from cloud.db.backup import BackupError, backup

    try:
        info = backup(_settings().require_database_url(), args.file)
    except BackupError as exc:
        log.error("%s", exc)
        return 2
    if args.json:
        print(json.dumps({"path": str(info.path), "bytes": info.bytes, "seconds": info.seconds}))
    else:
        print(f"backup written to {info.path}: {info.bytes} bytes in {info.seconds:.1f} s")
    return 0


def _restore(args: argparse.Namespace) -> int:
    import dataclasses

    from cloud.db.backup import BackupError, restore

    from .erasure import ReapplyResult, ledger_reapplier
    from .ledger import LedgerError

    settings = _settings()
    url = settings.require_database_url()
    try:
        reapply = ledger_reapplier(settings.ledger_key(), settings.privacy_ledger_file)
        info = restore(url, args.file, after_restore=reapply)
    except (BackupError, LedgerError) as exc:
        log.error("%s", exc)
        return 2
    result = info.after_restore
    assert isinstance(result, ReapplyResult)
    if settings.privacy_ledger_file is None:
        log.warning(
            "DRIVESIGHT_PRIVACY_LEDGER_FILE is not set: only the ledger inside the backup was re-applied, so"
            " erasures made after this backup was taken are not"
        )
    document = {
        "path": str(info.path),
        "dialect": info.dialect,
        "seconds": info.seconds,
        "migrations_applied": info.migrations_applied,
        "ledger": dataclasses.asdict(result),
    }
    if args.json:
        print(json.dumps(document))
    else:
        print(
            f"restored {info.path} ({info.dialect}) in {info.seconds:.1f} s; erasure ledger: {result.entries}"
            f" entries, {result.customers} customers and {sum(result.rows.values())} rows erased again"
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    import psycopg

    from .export import CustomerNotFound, export_customer

    with psycopg.connect(_settings().require_database_url(), autocommit=True) as conn:
        try:
            document = export_customer(conn, args.customer_id, key_id=None)
        except CustomerNotFound as exc:
            log.error("%s", exc)
            return 2
    text = json.dumps(document, ensure_ascii=False, indent=None if args.json else 2)
    if args.out is None:
        print(text)
        return 0
    args.out.write_text(text + "\n", encoding="utf-8")
    summary = {"customer_id": args.customer_id, "out": str(args.out), "bytes": args.out.stat().st_size}
    print(json.dumps(summary) if args.json else f"export of {args.customer_id} written to {args.out}")
    return 0


def _erase(args: argparse.Namespace) -> int:
    import psycopg

    from .erasure import ErasureError, request_erasure

    with psycopg.connect(_settings().require_database_url(), autocommit=True) as conn:
        try:
            request = request_erasure(
                conn, args.customer_id, key_id=None, ttl=timedelta(hours=args.expires_hours)
            )
        except ErasureError as exc:
            log.error("%s", exc)
            return 2
    if args.json:
        print(
            json.dumps(
                {
                    "request_id": request.request_id,
                    "token": request.token,
                    "expires_at": request.expires_at.isoformat(),
                }
            )
        )
        return 0
    print(
        f"erasure request {request.request_id}, expires {request.expires_at:%Y-%m-%d %H:%M %Z}; confirm with:"
    )
    print(f"drivesight cloud privacy confirm {request.request_id} --token={request.token}")
    log.warning("the token is shown only now; only its hash is stored")
    return 0


def _confirm(args: argparse.Namespace) -> int:
    import psycopg

    from .erasure import ErasureError, confirm_erasure

    settings = _settings()
    key, ledger_file = settings.ledger_key(), settings.privacy_ledger_file
    if ledger_file is None:
        log.warning(
            "DRIVESIGHT_PRIVACY_LEDGER_FILE is not set: this erasure is kept in the database's ledger only,"
            " so a restore of an older backup would not know it"
        )
    with psycopg.connect(settings.require_database_url(), autocommit=True) as conn:
        try:
            result = confirm_erasure(
                conn, args.request_id, args.token, key_id=None, ledger_key=key, ledger_file=ledger_file
            )
        except ErasureError as exc:
            log.error("%s", exc)
            return 3 if exc.status == 409 else 2
    if args.json:
        print(
            json.dumps(
                {"request_id": result.request_id, "erasure_id": result.erasure_id, "rows": result.rows}
            )
        )
        return 0
    print(
        f"erased: {sum(result.rows.values())} rows in {len(result.rows)} tables"
        f" (ledger entry {result.erasure_id})"
    )
    for table, n in sorted(result.rows.items()):
        print(f"  {table:<22} {n}")
    return 0


def _consent(args: argparse.Namespace) -> int:
    import psycopg

    from . import consent

    scope = args.grant or args.withdraw
    with psycopg.connect(_settings().require_database_url(), autocommit=True) as conn:
        try:
            if scope is not None:
                at = None
                if args.at:
                    at = datetime.fromisoformat(args.at)
                    at = at if at.tzinfo else at.replace(tzinfo=UTC)
                consent.change(conn, args.customer_id, scope, args.grant is not None, args.source, at=at)
            now, events = consent.read(conn, args.customer_id, key_id=None)
        except (consent.ConsentError, ValueError) as exc:
            log.error("%s", exc)
            return 2
    if args.json:
        history = [
            {
                "scope": e.scope,
                "granted": e.granted,
                "at": e.at.isoformat(),
                "source": e.source,
                "key_id": e.key_id,
                "vehicle_id": e.vehicle_id,
            }
            for e in events
        ]
        print(json.dumps({"customer_id": args.customer_id, "current": now, "history": history}))
        return 0
    print(
        f"{args.customer_id}: "
        + ", ".join(f"{s} {'granted' if g else 'not granted'}" for s, g in now.items())
    )
    for e in events:
        by = f" ({e.vehicle_id})" if e.vehicle_id else ""
        print(
            f"  {e.at:%Y-%m-%d %H:%M}  {e.scope:<10} {'grant' if e.granted else 'withdraw':<8} {e.source}{by}"
        )
    return 0
