"""The erasure ledger: what was erased, as keyed hashes only, so that a restored backup can be erased again.

Each entry holds HMAC-SHA256 under the installation's ledger key (``DRIVESIGHT_PRIVACY_LEDGER_KEY``) of the
erased customer id, of the vehicle ids they owned and of their online account ids — never a clear id. A plain
SHA-256 would not do: customer and vehicle ids are short and enumerable, so anyone holding the ledger could
hash every candidate and learn who was erased; without the key they cannot. The same key matches the ids of a
restored database in one pass (one HMAC per id), which a per-entry salt would not.

The ledger lives in the ``erasure_ledger`` table and, appended before each erasure commits, in a JSON-lines
file outside the database (``DRIVESIGHT_PRIVACY_LEDGER_FILE``): a backup older than an erasure does not hold
its entry, the file does. ``key_check`` (an HMAC of a fixed text) tells an entry written under another key
apart: it would silently match nobody, so it is refused instead.

Errors::

    LedgerError (RuntimeError)   an entry under another key, or an unreadable ledger file
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import tuple_row

_KEY_CHECK_TEXT = b"drivesight erasure ledger key check v1"


class LedgerError(RuntimeError):
    """The ledger cannot be used: written under another key, or its file is unreadable."""


def pseudonym(key: bytes, kind: str, identifier: str) -> bytes:
    """HMAC-SHA256 of ``kind:identifier`` under the ledger key (kind: customer, vehicle or account)."""
    return hmac.new(key, f"{kind}:{identifier}".encode(), hashlib.sha256).digest()


def key_check(key: bytes) -> bytes:
    """What identifies the key an entry was written under (16 bytes; does not reveal the key)."""
    return hmac.new(key, _KEY_CHECK_TEXT, hashlib.sha256).digest()[:16]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One erasure: when, and the keyed hashes of the customer, their vehicles and accounts."""

    erased_at: datetime
    customer: bytes
    vehicles: tuple[bytes, ...] = ()
    accounts: tuple[bytes, ...] = ()
    key_check: bytes = field(default=b"")

    @classmethod
    def of(
        cls,
        key: bytes,
        erased_at: datetime,
        customer_id: str,
        vehicle_ids: Iterable[str],
        account_ids: Iterable[str],
    ) -> LedgerEntry:
        """The entry for erasing ``customer_id`` with these vehicles and accounts."""
        return cls(
            erased_at,
            pseudonym(key, "customer", customer_id),
            tuple(sorted(pseudonym(key, "vehicle", v) for v in vehicle_ids)),
            tuple(sorted(pseudonym(key, "account", a) for a in account_ids)),
            key_check(key),
        )

    def to_json(self) -> str:
        """One line of the ledger file."""
        return json.dumps(
            {
                "erased_at": self.erased_at.isoformat(),
                "customer": self.customer.hex(),
                "vehicles": [v.hex() for v in self.vehicles],
                "accounts": [a.hex() for a in self.accounts],
                "key_check": self.key_check.hex(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> LedgerEntry:
        """An entry from one line of the ledger file."""
        d = json.loads(line)
        return cls(
            datetime.fromisoformat(d["erased_at"]),
            bytes.fromhex(d["customer"]),
            tuple(bytes.fromhex(v) for v in d["vehicles"]),
            tuple(bytes.fromhex(a) for a in d["accounts"]),
            bytes.fromhex(d["key_check"]),
        )


def append_file(path: Path, entry: LedgerEntry) -> None:
    """Append ``entry`` to the ledger file and fsync it (before the erasure commits: a crash in between
    leaves an entry whose erasure a restore applies, which is what the person asked for)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(entry.to_json() + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_file(path: Path) -> list[LedgerEntry]:
    """Every entry of the ledger file (none when it does not exist yet)."""
    if not path.exists():
        return []
    entries = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerError(f"cannot read the erasure ledger {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(LedgerEntry.from_json(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerError(f"{path}: line {number} is not a ledger entry: {exc}") from exc
    return entries


def insert(conn: psycopg.Connection[Any], entry: LedgerEntry) -> int | None:
    """Store ``entry`` in ``erasure_ledger`` unless it is there already; return its id (None: was there)."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "INSERT INTO erasure_ledger (erased_at, customer_hash, vehicle_hashes, account_hashes, key_check)"
            " VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (customer_hash, erased_at) DO NOTHING RETURNING erasure_id",
            (entry.erased_at, entry.customer, list(entry.vehicles), list(entry.accounts), entry.key_check),
        )
        .fetchone()
    )
    return None if row is None else int(row[0])


def stored(conn: psycopg.Connection[Any]) -> list[LedgerEntry]:
    """The entries in ``erasure_ledger``, oldest first."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT erased_at, customer_hash, vehicle_hashes, account_hashes, key_check FROM erasure_ledger"
            " ORDER BY erased_at, erasure_id"
        )
        .fetchall()
    )
    return [
        LedgerEntry(at, bytes(c), tuple(bytes(v) for v in vs), tuple(bytes(a) for a in acs), bytes(k))
        for at, c, vs, acs, k in rows
    ]


def check_keys(entries: Sequence[LedgerEntry], key: bytes) -> None:
    """Refuse entries written under another key: they would match nobody and erase nothing, silently."""
    mine = key_check(key)
    other = [e for e in entries if not hmac.compare_digest(e.key_check, mine)]
    if other:
        raise LedgerError(
            f"{len(other)} erasure ledger entries were written under another ledger key; set"
            " DRIVESIGHT_PRIVACY_LEDGER_KEY to the key they were written under"
        )


class ErasedIds:
    """Which ids the erasure ledger names, for the paths that could bring an erased person back: the ingest
    (a car that keeps sending after its owner was erased) and CRM imports (an old file imported again).

    The ledger holds keyed hashes only, so a clear id is matched by hashing it under the key (one HMAC, then
    cached). :meth:`refresh` costs one indexed query and reloads the hashes only when the ledger changed, so
    an erasure takes effect at the next batch or import. Without a key nothing can be matched: ``usable``
    is False whenever the ledger holds entries, and the caller decides (the import refuses, the ingest warns).
    """

    #: how many id → erased answers are remembered between ledger changes (a fleet's vehicle ids fit)
    CACHE_SIZE = 200_000

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self.entries = 0
        self._version: tuple[int, int] | None = None
        self._hashes: dict[str, frozenset[bytes]] = {
            k: frozenset() for k in ("customer", "vehicle", "account")
        }
        self._cache: dict[tuple[str, str], bool] = {}

    @property
    def usable(self) -> bool:
        """Whether ids can be matched: the ledger is empty, or the key is known."""
        return self.entries == 0 or self.key is not None

    def refresh(self, conn: psycopg.Connection[Any]) -> bool:
        """Reload the hashes if the ledger changed since the last call; return whether it did.

        Entries written under another key are refused (:class:`LedgerError`): they would match nobody.
        """
        row = (
            conn.cursor(row_factory=tuple_row)
            .execute("SELECT count(*), coalesce(max(erasure_id), 0) FROM erasure_ledger")
            .fetchone()
        )
        version = (int(row[0]), int(row[1])) if row else (0, 0)
        if version == self._version:
            return False
        self._version, self.entries = version, version[0]
        self._cache.clear()
        if self.key is None or self.entries == 0:
            self._hashes = {kind: frozenset() for kind in self._hashes}
            return True
        entries = stored(conn)
        check_keys(entries, self.key)
        self._hashes = {
            "customer": frozenset(e.customer for e in entries),
            "vehicle": frozenset(v for e in entries for v in e.vehicles),
            "account": frozenset(a for e in entries for a in e.accounts),
        }
        return True

    def named(self, kind: str, identifier: str) -> bool:
        """Whether the ledger names ``identifier`` as an erased ``kind`` (customer, vehicle or account)."""
        if self.key is None or not self._hashes[kind]:
            return False
        answer = self._cache.get((kind, identifier))
        if answer is None:
            answer = pseudonym(self.key, kind, identifier) in self._hashes[kind]
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[(kind, identifier)] = answer
        return answer
