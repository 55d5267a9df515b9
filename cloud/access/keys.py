"""API keys: create (the secret is shown once, only its SHA-256 is kept), list, revoke, verify.

A key reads ``ds_<prefix>_<secret>``: the 8 hex digits of ``prefix`` are stored in the clear and name the key
in listings and logs; ``secret`` is 32 random bytes (base64url, 43 characters), so a plain SHA-256 of it is as
good as a slow password hash here (nobody can guess 256 bits, and verifying stays a microsecond).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from cloud.privacy.audit import record

from . import InvalidKeyRequest, KeyNotFound, UnknownScope


class Scope(StrEnum):
    """What a key may do; ``admin`` satisfies every scope."""

    FLEET_READ = "fleet:read"
    RD_READ = "rd:read"
    MARKETING_READ = "marketing:read"
    MARKETING_WRITE = "marketing:write"
    PRIVACY_ADMIN = "privacy:admin"
    LEADS_READ = "leads:read"  # every dealer's leads, their statistics and the dealer KPIs (lead managers)
    DEALER = "dealer"  # a key bound to one dealer: that dealer's leads only, and setting their follow-up
    ADMIN = "admin"


SCOPES: tuple[str, ...] = tuple(s.value for s in Scope)
KEY_RE = re.compile(r"^ds_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
#: last_used_at is written when it is older than this (not on every request)
LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_EXPIRES_DAYS = 3650

_COLUMNS = "key_id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at, dealer_id"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A stored key without its secret."""

    key_id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    dealer_id: str | None = None  # the dealer a ``dealer`` key acts for

    def usable(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def as_json(self) -> dict[str, object]:
        """Plain JSON data (times in ISO 8601, scopes sorted)."""
        return {
            "id": self.key_id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at and self.expires_at.isoformat(),
            "revoked_at": self.revoked_at and self.revoked_at.isoformat(),
            "last_used_at": self.last_used_at and self.last_used_at.isoformat(),
            "dealer_id": self.dealer_id,
        }


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key with its secret, which exists nowhere else once this is gone."""

    id: int
    key: str
    scopes: tuple[str, ...]
    expires_at: datetime | None


def _info(row: tuple[Any, ...]) -> KeyInfo:
    key_id, name, prefix, scopes, created, expires, revoked, used, dealer = row
    return KeyInfo(
        int(key_id),
        str(name),
        str(prefix),
        frozenset(scopes),
        created,
        expires,
        revoked,
        used,
        None if dealer is None else str(dealer),
    )


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Scopes from ``a,b`` text or a list: known ones only, without duplicates, sorted."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = sorted({s.strip() for s in items if s.strip()})
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise UnknownScope(f"unknown scope {', '.join(map(repr, unknown))}; use {', '.join(SCOPES)}")
    if not scopes:
        raise UnknownScope(f"give at least one scope of {', '.join(SCOPES)}")
    return tuple(scopes)


def secret_digest(secret: str) -> bytes:
    """The stored form of a key's secret."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def create_key(
    conn: psycopg.Connection[Any],
    *,
    name: str,
    scopes: str | list[str] | tuple[str, ...],
    expires_days: int | None = None,
    actor_key_id: int | None = None,
    dealer_id: str | None = None,
) -> CreatedKey:
    """Store a new key and audit it in one transaction; the returned secret is not stored anywhere.

    A key for a dealer (``dealer_id``) holds the ``dealer`` scope and nothing else, so that it can never read
    another dealer's leads or anything of marketing; the dealer must exist."""
    chosen = parse_scopes(scopes)
    if (dealer_id is not None) != (Scope.DEALER in chosen):
        raise InvalidKeyRequest("the 'dealer' scope needs --dealer, and a key for a dealer needs that scope")
    if dealer_id is not None and chosen != (Scope.DEALER,):
        raise InvalidKeyRequest("a key for a dealer holds the 'dealer' scope only")
    if dealer_id is not None and (
        conn.execute("SELECT 1 FROM dealers WHERE dealer_id = %s", (dealer_id,)).fetchone() is None
    ):
        raise InvalidKeyRequest(f"no dealer {dealer_id!r}")
    name = name.strip()
    if not 1 <= len(name) <= 100 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidKeyRequest("a key name is 1 to 100 printable characters")
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRES_DAYS:
        raise InvalidKeyRequest(f"--expires-days must be 1 to {MAX_EXPIRES_DAYS}")
    cur = conn.cursor(row_factory=tuple_row)
    with conn.transaction():
        for _attempt in range(8):  # 32-bit prefixes: a collision is rare, and tried again
            prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
            try:
                with conn.transaction():
                    row = cur.execute(
                        "INSERT INTO api_keys (name, prefix, secret_sha256, scopes, expires_at, dealer_id)"
                        " VALUES (%s, %s, %s, %s, now() + make_interval(days => %s), %s)"
                        " RETURNING key_id, expires_at",
                        (name, prefix, secret_digest(secret), list(chosen), expires_days, dealer_id),
                    ).fetchone()
                break
            except psycopg.errors.UniqueViolation:
                continue
        else:  # pragma: no cover - 8 collisions in a row
            raise RuntimeError("could not find a free key prefix")
        assert row is not None
        key_id, expires_at = int(row[0]), row[1]
        record(
            conn,
            key_id=actor_key_id,
            action="key.create",
            subject=f"key:{key_id}",
            outcome="ok",
            detail={
                "name": name,
                "prefix": prefix,
                "scopes": list(chosen),
                "expires_days": expires_days,
                "dealer_id": dealer_id,
            },
        )
    return CreatedKey(key_id, f"ds_{prefix}_{secret}", chosen, expires_at)


def list_keys(conn: psycopg.Connection[Any], *, include_revoked: bool = True) -> list[KeyInfo]:
    """Every key (no secrets), oldest first."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE %s OR revoked_at IS NULL ORDER BY key_id",
            (include_revoked,),
        )
        .fetchall()
    )
    return [_info(r) for r in rows]


def revoke_key(conn: psycopg.Connection[Any], key_id: int, *, actor_key_id: int | None = None) -> KeyInfo:
    """Revoke a key (a second revocation keeps the first time) and audit it, in one transaction."""
    cur = conn.cursor(row_factory=tuple_row)
    with conn.transaction():
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = %s FOR UPDATE", (key_id,)
        ).fetchone()
        if row is None:
            raise KeyNotFound(f"no API key with id {key_id}")
        before = _info(row)
        if before.revoked_at is None:
            row = cur.execute(
                f"UPDATE api_keys SET revoked_at = now() WHERE key_id = %s RETURNING {_COLUMNS}", (key_id,)
            ).fetchone()
            assert row is not None
        record(
            conn,
            key_id=actor_key_id,
            action="key.revoke",
            subject=f"key:{key_id}",
            outcome="ok" if before.revoked_at is None else "already_revoked",
            detail={"name": before.name, "prefix": before.prefix},
        )
    return _info(row)


def lookup_key(conn: psycopg.Connection[Any], token: str) -> KeyInfo | None:
    """The stored key ``token`` is the secret of (revoked and expired ones too), or None.

    Marks the key used when its ``last_used_at`` is older than ``LAST_USED_RESOLUTION``. ``conn`` should be
    in autocommit mode, so that this write does not wait for anything else.
    """
    match = KEY_RE.match(token)
    if match is None:
        return None
    prefix, secret = match.groups()
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute(
        f"SELECT {_COLUMNS}, secret_sha256, now() FROM api_keys WHERE prefix = %s", (prefix,)
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[-2]), secret_digest(secret)):
        return None
    info = _info(row[:-2])
    now: datetime = row[-1]
    if info.usable(now) and (info.last_used_at is None or now - info.last_used_at >= LAST_USED_RESOLUTION):
        cur.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE key_id = %s"
            " AND (last_used_at IS NULL OR last_used_at < now() - %s)",
            (info.key_id, LAST_USED_RESOLUTION),
        )
    return info
