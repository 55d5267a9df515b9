"""``drivesight cloud keys ...`` and ``drivesight cloud audit ...``: API key administration and the audit
log's verification. Results on stdout (only JSON with ``--json``), errors on stderr, non-zero exit on
error."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keys`` and ``audit`` commands to the cloud command's subparsers."""
    from .keys import SCOPES  # light: no database library

    keys = subparsers.add_parser("keys", help="API keys: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="a new key; its secret is printed once and stored hashed")
    create.add_argument("--name", required=True, help="who or what uses the key (1-100 characters)")
    create.add_argument("--scopes", required=True, help=f"comma-separated: {', '.join(SCOPES)}")
    create.add_argument("--expires-days", type=int, help="the key stops working after this many days")
    create.add_argument("--dealer", help="bind the key to this dealer (with --scopes dealer): its leads only")
    create.add_argument("--json", action="store_true", help="one JSON document on stdout")
    create.set_defaults(handler=_create)
    listing = keys_sub.add_parser("list", help="every key without its secret")
    listing.add_argument("--active", action="store_true", help="leave revoked keys out")
    listing.add_argument("--json", action="store_true", help="one JSON document on stdout")
    listing.set_defaults(handler=_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key (the API refuses it within seconds)")
    revoke.add_argument("id", type=int)
    revoke.add_argument("--json", action="store_true", help="one JSON document on stdout")
    revoke.set_defaults(handler=_revoke)
    audit = subparsers.add_parser("audit", help="the hash-chained audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the chain: exit 1 when a row was changed or removed")
    verify.add_argument(
        "--anchor",
        action="append",
        default=[],
        type=_anchor,
        metavar="ID:HASH",
        help="a last_id:head_hash an earlier verification printed (kept outside the database); repeatable",
    )
    verify.add_argument("--json", action="store_true", help="one JSON document on stdout")
    verify.set_defaults(handler=_verify)


def _anchor(text: str) -> tuple[int, bytes]:
    """``ID:HASH`` (64 hex digits) as an anchor."""
    row_id, _, digest = text.partition(":")
    try:
        value = (int(row_id), bytes.fromhex(digest))
    except ValueError:
        value = (0, b"")
    if value[0] < 1 or len(value[1]) != 32:
        raise argparse.ArgumentTypeError(f"{text!r} is not ID:HASH (a row id and 64 hex digits)")
    return value


def _database_url() -> str:
    from cloud.config import CloudSettings

    return CloudSettings().require_database_url()


def _create(args: argparse.Namespace) -> int:
    import psycopg

    from . import AccessError
    from .keys import create_key

    with psycopg.connect(_database_url(), autocommit=True) as conn:
        try:
            key = create_key(
                conn,
                name=args.name,
                scopes=args.scopes,
                expires_days=args.expires_days,
                dealer_id=args.dealer,
            )
        except AccessError as exc:
            log.error("%s", exc)
            return 2
    expires = key.expires_at.isoformat() if key.expires_at else None
    if args.json:
        print(json.dumps({"id": key.id, "key": key.key, "scopes": list(key.scopes), "expires_at": expires}))
        return 0
    print(f"key {key.id} ({', '.join(key.scopes)}), expires {expires or 'never'}:")
    print(key.key)
    log.warning("the key is shown only now; only its hash is stored")
    return 0


def _list(args: argparse.Namespace) -> int:
    import psycopg

    from .keys import list_keys

    with psycopg.connect(_database_url(), autocommit=True) as conn:
        keys = list_keys(conn, include_revoked=not args.active)
    if args.json:
        print(json.dumps({"keys": [k.as_json() for k in keys]}))
        return 0
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        expires = f"{k.expires_at:%Y-%m-%d}" if k.expires_at else "never"
        used = f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never"
        print(
            f"{k.key_id:>6}  ds_{k.prefix}_…  {k.name:<24} {','.join(sorted(k.scopes)):<32}"
            f" {state:<24} expires {expires}  last used {used}"
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    import psycopg

    from . import AccessError
    from .keys import revoke_key

    with psycopg.connect(_database_url(), autocommit=True) as conn:
        try:
            key = revoke_key(conn, args.id)
        except AccessError as exc:
            log.error("%s", exc)
            return 2
    if args.json:
        print(json.dumps(key.as_json()))
    else:
        print(f"key {key.key_id} ({key.name}) revoked at {key.revoked_at}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    import dataclasses

    import psycopg

    from cloud.privacy.audit import verify

    with psycopg.connect(_database_url(), autocommit=True) as conn:
        report = verify(conn, anchors=args.anchor)
    if args.json:
        problems = [dataclasses.asdict(p) for p in report.problems]
        doc = {
            "ok": report.ok,
            "rows": report.rows,
            "last_id": report.last_id,
            "head_hash": report.head_hash,
            "problems": problems,
        }
        print(json.dumps(doc))
    else:
        for p in report.problems:
            print(f"row {p.id}: {p.kind}: {p.detail}")
        print(f"{report.rows} rows, last id {report.last_id}: {'intact' if report.ok else 'TAMPERED'}")
        print(f"anchor (keep it outside the database): {report.last_id}:{report.head_hash}")
    return 0 if report.ok else 1
