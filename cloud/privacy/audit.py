"""The audit log: an append-only, hash-chained record of every write and every read of personal data.

``record`` appends one row in the caller's transaction, so the row exists exactly when what it records was
committed. Row ``n`` stores ``hash = sha256(prev_hash || b"n\\n" || body)`` where ``body`` is the canonical
JSON (sorted keys, no spaces, UTF-8) of its time, key id, action, subject, outcome and detail, and
``prev_hash`` is row ``n - 1``'s hash (32 zero bytes before row 1). Appends are serialized by locking the
single ``audit_head`` row, which also names the last row, so ids are gapless and a removed tail is noticed.

``verify`` walks the chain and reports each row whose content no longer matches its hash (``changed``),
each gap in the ids (``missing``), a row whose ``prev_hash`` is not its predecessor's hash (``relinked``), and
a head that names another last row (``tail_missing``). A database trigger refuses UPDATE, DELETE and
TRUNCATE; the chain is what shows tampering by someone who can bypass the trigger (a superuser).

Someone who can bypass the trigger can also cut the tail and move the head back, or restore an older
backup: the chain left is consistent. An anchor kept outside the database (the ``last_id`` and ``head_hash``
a verification printed, e.g. in the operations log) catches that: ``verify(anchors=...)`` reports a row
whose hash is no longer the anchored one, or that is gone (``anchor_mismatch``).

Subjects that name a person should be pseudonymous (``personal_subject``): the log outlives an erasure, and
must not keep the erased id in the clear.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

__all__ = ["GENESIS", "AuditProblem", "AuditReport", "personal_subject", "record", "row_hash", "verify"]

#: the prev_hash of the first row
GENESIS = bytes(32)

_APPEND = """
WITH head AS (SELECT id, hash FROM audit_head WHERE one FOR UPDATE),
appended AS (
    INSERT INTO audit_log (id, at, key_id, action, subject, outcome, detail, prev_hash, hash)
    SELECT head.id + 1, %(at)s, %(key_id)s, %(action)s, %(subject)s, %(outcome)s, %(detail)s, head.hash,
           sha256(head.hash || convert_to((head.id + 1)::text || E'\\n' || %(body)s, 'UTF8'))
    FROM head
    RETURNING id, hash
)
UPDATE audit_head SET id = appended.id, hash = appended.hash FROM appended WHERE audit_head.one
"""


def _timestamp(at: datetime) -> str:
    # one fixed text per instant (timestamptz keeps microseconds): what was hashed can be rebuilt from the row
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _body(
    at: datetime, key_id: int | None, action: str, subject: str | None, outcome: str, detail: str | None
) -> str:
    return _canonical(
        {
            "at": _timestamp(at),
            "key_id": key_id,
            "action": action,
            "subject": subject,
            "outcome": outcome,
            "detail": detail,
        }
    )


def row_hash(prev_hash: bytes, row_id: int, body: str) -> bytes:
    """The hash of row ``row_id`` with canonical ``body`` after a row whose hash is ``prev_hash``."""
    return hashlib.sha256(prev_hash + f"{row_id}\n{body}".encode()).digest()


def personal_subject(kind: str, identifier: str) -> str:
    """A subject naming a person pseudonymously: ``kind:sha256:<hex>`` of the id (searchable by whoever knows
    the id, and what the erasure ledger hashes alike)."""
    return f"{kind}:sha256:{hashlib.sha256(identifier.encode()).hexdigest()}"


def _text(name: str, value: str | None, limit: int) -> None:
    if value is None:
        return
    if "\x00" in value:
        raise ValueError(f"audit {name} holds a NUL character")
    if len(value) > limit:
        raise ValueError(f"audit {name} longer than {limit} characters")


def record(
    conn: psycopg.Connection[Any],
    *,
    key_id: int | None,
    action: str,
    subject: str | None,
    outcome: str,
    detail: dict[str, object] | None = None,
) -> None:
    """Append one row to the audit log in ``conn``'s current transaction (it commits or rolls back with it).

    The head row stays locked until that transaction ends, so call this late in a long transaction: appends
    of other transactions wait for it. ``detail`` must be JSON-serialisable (finite floats, str keys).
    """
    _text("action", action, 100)
    _text("outcome", outcome, 100)
    _text("subject", subject, 1000)
    if not action or not outcome:
        raise ValueError("an audit row needs an action and an outcome")
    detail_text = None if detail is None else _canonical(detail)
    _text("detail", detail_text, 100_000)
    at = datetime.now(UTC)
    body = _body(at, key_id, action, subject, outcome, detail_text)
    params = {
        "at": at,
        "key_id": key_id,
        "action": action,
        "subject": subject,
        "outcome": outcome,
        "detail": detail_text,
        "body": body,
    }
    conn.cursor(row_factory=tuple_row).execute(_APPEND, params)


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One thing wrong with the chain: ``kind`` is changed, missing, relinked or tail_missing."""

    kind: str
    id: int
    detail: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What ``verify`` found: how many rows it read, the last id, and the problems (none: intact)."""

    rows: int
    last_id: int
    #: the hash of the last row (hex; 64 zeros for an empty log): with ``last_id``, an anchor to keep outside
    head_hash: str
    problems: list[AuditProblem]

    @property
    def ok(self) -> bool:
        """True when the chain is intact."""
        return not self.problems


def _rows(conn: psycopg.Connection[Any], batch: int) -> Iterator[tuple[Any, ...]]:
    # a server-side cursor: the log grows without bound and must not be read into memory at once
    with conn.transaction(), conn.cursor(name="audit_verify", row_factory=tuple_row) as cur:
        cur.itersize = batch
        cur.execute(
            "SELECT id, at, key_id, action, subject, outcome, detail, prev_hash, hash"
            " FROM audit_log ORDER BY id"
        )
        yield from cur


def verify(
    conn: psycopg.Connection[Any],
    *,
    anchors: Sequence[tuple[int, bytes]] = (),
    batch: int = 5000,
) -> AuditReport:
    """Walk the whole chain and report every changed, missing or relinked row and a removed tail, and every
    anchor ``(id, hash)`` (a row's hash recorded earlier, outside the database) the log no longer holds."""
    anchored = dict(anchors)
    problems: list[AuditProblem] = []
    expected_id = 1
    prev_hash = GENESIS
    rows = 0
    for row_id, at, key_id, action, subject, outcome, detail, stored_prev, stored_hash in _rows(conn, batch):
        rows += 1
        if row_id != expected_id:
            problems.append(
                AuditProblem("missing", expected_id, f"rows {expected_id}..{row_id - 1} are missing")
            )
        elif bytes(stored_prev) != prev_hash:
            problems.append(AuditProblem("relinked", row_id, "prev_hash is not the previous row's hash"))
        body = _body(at, key_id, action, subject, outcome, detail)
        if row_hash(bytes(stored_prev), row_id, body) != bytes(stored_hash):
            problems.append(AuditProblem("changed", row_id, "the row's content does not match its hash"))
        prev_hash = bytes(stored_hash)
        expected_id = row_id + 1
        if row_id in anchored and anchored.pop(row_id) != prev_hash:
            problems.append(AuditProblem("anchor_mismatch", row_id, "the row's hash is not the anchored one"))
    head = conn.cursor(row_factory=tuple_row).execute("SELECT id, hash FROM audit_head").fetchone()
    last_id = expected_id - 1
    if head is None:
        problems.append(AuditProblem("tail_missing", last_id, "the audit head row is gone"))
    elif int(head[0]) != last_id or bytes(head[1]) != prev_hash:
        problems.append(
            AuditProblem(
                "tail_missing", int(head[0]), f"the head names row {head[0]}, the last row is {last_id}"
            )
        )
    for row_id in sorted(anchored):
        problems.append(AuditProblem("anchor_mismatch", row_id, "the anchored row is gone"))
    return AuditReport(rows=rows, last_id=last_id, head_hash=prev_hash.hex(), problems=problems)
