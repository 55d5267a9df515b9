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

import asyncio
import contextlib
import hashlib
import json
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

__all__ = [
    "GENESIS", "AsyncAuditWriter", "AuditProblem", "AuditReport", "AuditUnavailable", "AuditWriter",
    "personal_subject", "record", "row_hash", "verify",
]  # fmt: skip

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
    params = _params(key_id=key_id, action=action, subject=subject, outcome=outcome, detail=detail)
    conn.cursor(row_factory=tuple_row).execute(_APPEND, params)


def _params(
    *, key_id: int | None, action: str, subject: str | None, outcome: str, detail: dict[str, object] | None
) -> dict[str, Any]:
    _text("action", action, 100)
    _text("outcome", outcome, 100)
    _text("subject", subject, 1000)
    if not action or not outcome:
        raise ValueError("an audit row needs an action and an outcome")
    detail_text = None if detail is None else _canonical(detail)
    _text("detail", detail_text, 100_000)
    at = datetime.now(UTC)
    body = _body(at, key_id, action, subject, outcome, detail_text)
    return {
        "at": at,
        "key_id": key_id,
        "action": action,
        "subject": subject,
        "outcome": outcome,
        "detail": detail_text,
        "body": body,
    }


class AuditWriter:
    """Appends audit rows of reads for many threads, several in one transaction (a group commit).

    ``record`` returns once its row is committed, so a read answered after it is audited exactly as with
    ``record(conn, ...)``; it raises (``AuditUnavailable``) when the row could not be written, and the read
    must then not be answered. Why: every append locks the log's single head row until its transaction
    commits, so appends in the readers' own transactions run one at a time, each holding the lock across
    the rest of its request and a WAL flush; at a few hundred portrait reads a second they queued behind that
    lock (measured: 2 API processes saturated at about 190 reads/s, most database sessions waiting on it).
    Here the rows waiting when a transaction starts are appended by it together, under one lock and one
    flush. Writes keep ``record(conn, ...)``: their row must commit or roll back with what they change.

    One thread and one connection per writer (per API process); thread-safe. Coroutines use
    ``AsyncAuditWriter``.
    """

    def __init__(self, conninfo: str, *, max_batch: int = 500, timeout_s: float = 10.0) -> None:
        self.conninfo = conninfo
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], Future[None]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self.transactions = 0  # for tests and metrics: rows / transactions is the batching achieved

    def open(self) -> None:
        """Start the writing thread (it connects on first use, and again after a lost connection)."""
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is queued, then stop the thread and close the connection."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(self.timeout_s)
            self._thread = None

    def record(
        self,
        *,
        key_id: int | None,
        action: str,
        subject: str | None,
        outcome: str,
        detail: dict[str, object] | None = None,
    ) -> None:
        """Append one row (as ``record`` does) and wait until it is committed."""
        done = self._submit(
            _params(key_id=key_id, action=action, subject=subject, outcome=outcome, detail=detail)
        )
        try:
            done.result(self.timeout_s)
        except FutureTimeout as exc:  # the row may still be written; the read is not answered either way
            raise AuditUnavailable(f"the audit row was not committed within {self.timeout_s:g} s") from exc

    def _submit(self, params: dict[str, Any]) -> Future[None]:
        if self._thread is None:
            raise AuditUnavailable("the audit writer is not open")
        done: Future[None] = Future()
        self._queue.put((params, done))
        return done

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)
        if self._conn is not None:
            self._conn.close()

    def _write(self, batch: list[tuple[dict[str, Any], Future[None]]]) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.conninfo, autocommit=True)
            cursor = self._conn.cursor(row_factory=tuple_row)
            if len(batch) == 1:
                # the usual batch at a few hundred reads a second: one statement, its own transaction
                # (autocommit), one round trip; BEGIN, append and COMMIT apart took three and twice the CPU
                cursor.execute(_APPEND, batch[0][0], prepare=True)
            else:
                with self._conn.transaction():
                    # in order, one statement each (a pipeline: one round trip): each links to the one before
                    cursor.executemany(_APPEND, [p for p, _ in batch])
            self.transactions += 1
        except Exception as exc:  # every waiter learns its row is not written; the thread goes on
            if self._conn is not None and self._conn.broken:
                self._conn.close()
            for _, done in batch:
                done.set_exception(AuditUnavailable(f"the audit log cannot be written: {exc}"))
            return
        for _, done in batch:
            done.set_result(None)


class AsyncAuditWriter:
    """``AuditWriter`` for coroutines of one event loop: a task and an async connection instead of a thread.

    ``record`` returns once its row is committed (the same group commit, the same guarantee). Why not the
    thread's writer awaited: its thread took the GIL from the event loop at every batch and gave it back at
    the loop's next pause (up to the 5 ms switch interval under load), the wake-ups crossed threads both
    ways, and an async route then still cost thread hand-offs. Open and use it on one loop only.
    """

    def __init__(self, conninfo: str, *, max_batch: int = 500, timeout_s: float = 10.0) -> None:
        self.conninfo = conninfo
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[None]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.transactions = 0  # for tests and metrics: rows / transactions is the batching achieved

    def open(self) -> None:
        """Start the writing task on the running loop (it connects on first use, and after a lost
        connection)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def close(self) -> None:
        """Write what is queued, then stop the task and close the connection."""
        if self._task is not None:
            self._queue.put_nowait(None)
            # past the time, wait_for cancels the task: the rows' waiters time out as they would
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._task, self.timeout_s)
            self._task = None
        if self._conn is not None:
            await self._conn.close()

    async def record(
        self,
        *,
        key_id: int | None,
        action: str,
        subject: str | None,
        outcome: str,
        detail: dict[str, object] | None = None,
    ) -> None:
        """Append one row (as ``record`` does) and wait until it is committed; ``AuditUnavailable`` when it
        could not be, or not within ``timeout_s``."""
        if self._task is None:
            raise AuditUnavailable("the audit writer is not open")
        params = _params(key_id=key_id, action=action, subject=subject, outcome=outcome, detail=detail)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((params, done))
        try:
            # shielded: a waiter cancelled (its client went away) leaves the row to be written all the same
            await asyncio.wait_for(asyncio.shield(done), self.timeout_s)
        except TimeoutError as exc:  # the row may still be written; the read is not answered either way
            raise AuditUnavailable(f"the audit row was not committed within {self.timeout_s:g} s") from exc

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            await self._write(batch)

    async def _write(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            cursor = self._conn.cursor(row_factory=tuple_row)
            if len(batch) == 1:  # one statement, one round trip (see AuditWriter._write)
                await cursor.execute(_APPEND, batch[0][0], prepare=True)
            else:
                async with self._conn.transaction():
                    await cursor.executemany(_APPEND, [p for p, _ in batch])
            self.transactions += 1
        except Exception as exc:  # every waiter learns its row is not written; the task goes on
            if self._conn is not None and self._conn.broken:
                await self._conn.close()
            for _, done in batch:
                if not done.done():
                    done.set_exception(AuditUnavailable(f"the audit log cannot be written: {exc}"))
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)


class AuditUnavailable(RuntimeError):
    """An audit row could not be committed (the database does not answer, or too slowly)."""


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
