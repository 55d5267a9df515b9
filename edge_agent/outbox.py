"""Durable, bounded outbox: messages wait in SQLite (WAL) until the broker acknowledged them (and a while).

Each message gets its ``seq`` in the same transaction that stores it, so a ``seq`` is never reused, even
after a crash, and a message republished after a restart carries the ``seq`` it had: the cloud stores it
once. A new store seeds ``seq`` from the wall clock in microseconds, so that a vehicle whose outbox file was
lost keeps counting above everything it sent before (the cloud would otherwise drop its new messages as
duplicates). Commits are synced to disk (``synchronous=FULL``) except raw telemetry's, which survive a killed
process but not necessarily a power cut.

A broker's acknowledgement (PUBACK) is not the end of a message: Mosquitto writes what it holds to disk only
every ``autosave_interval``, so a broker killed in between loses messages it acknowledged, and a broker that
restarts without its state acknowledges messages for which no subscriber exists yet. The uplink therefore
marks acknowledged messages *delivered* (:meth:`Outbox.ack` with ``retain_at``) and deletes them only on the
cloud's receipt (:meth:`Outbox.confirm`), which the ingest sends after the transaction that stored them. A
delivered message without a receipt is sent again after a window that doubles with each attempt
(:meth:`Outbox.resend_unconfirmed`), after a reconnect, and after a restart of this process
(:meth:`Outbox.resend_delivered`); the cloud drops the duplicates by ``(vehicle_id, seq)`` and confirms them
again.

The store is bounded by ``max_bytes`` *on disk*: the database file, its write-ahead log and the log's index
together (:mod:`edge_agent.outbox_budget` says how the bound is shared). When a new message does not fit,
delivered messages go first, oldest first (they reached the broker once); then the oldest messages of the
lowest priority — raw telemetry, then status, usage and feedback, and trips, events and DTCs last — but never
a message of higher priority than the new one: if only such messages remain, the new message is the one
dropped. Every drop of an undelivered message is counted per kind, persistently, so the car can report what
it lost. A disk that fills up before the bound is treated the same way. A message over ``max_message_bytes``
(the broker's and the contract's limit) is refused with :class:`MessageTooLarge`, never stored or sent.

Errors::

    OutboxFull(RuntimeError)            everything stored outranks the new message
    MessageTooLarge(PayloadTooLarge)    the encoded message is over the message limit (split it, or drop it)
    BoundTooSmall(ValueError)           the bound cannot hold the log and two messages of the limit's size
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .outbox_budget import BoundTooSmall, DiskBudget
from .protocol import MAX_PAYLOAD_BYTES, Body, PayloadTooLarge, UplinkKind, decode, encode, uplink_topic

__all__ = [
    "MAX_RECEIPT_WAIT_S", "PRIORITY", "BoundTooSmall", "MessageTooLarge", "Outbox", "OutboxFull",
    "OutboxItem",
]  # fmt: skip

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Lower goes first when the outbox is full.
PRIORITY: dict[UplinkKind, int] = {
    UplinkKind.TELEMETRY: 0,
    UplinkKind.STATUS: 1,
    UplinkKind.FEEDBACK: 3,
    UplinkKind.EVENTS: 4,
    UplinkKind.TRIP: 5,
    UplinkKind.DTC: 5,
}

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: The contract's limit: the cloud refuses a larger payload, so it is never worth sending.
DEFAULT_MAX_MESSAGE_BYTES = MAX_PAYLOAD_BYTES
#: Rows one transaction deletes on a receipt, so that one transaction stays within the log's budget.
DELETE_BATCH = 64
#: The longest wait for a receipt before a delivered message is published again (the wait doubles per try).
MAX_RECEIPT_WAIT_S = 3600.0
_UNBOUNDED = 1 << 30
#: sqlite3's default wait for a lock (this process is the only writer; a reader never blocks a write)
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_eviction ON outbox (priority, seq);
CREATE TABLE IF NOT EXISTS dropped (kind TEXT PRIMARY KEY, messages INTEGER NOT NULL, bytes INTEGER NOT NULL);
-- Acknowledged by the broker (a small row of its own: updating the message row would rewrite its payload).
-- acked_at is on the uplink's clock; resend = 1: to be published again (after a reconnect or restart);
-- attempts: how often it was published again for want of the cloud's receipt (the wait doubles each time).
CREATE TABLE IF NOT EXISTS delivered (
    seq INTEGER PRIMARY KEY, acked_at REAL NOT NULL, resend INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER IF NOT EXISTS outbox_forget AFTER DELETE ON outbox
    BEGIN DELETE FROM delivered WHERE seq = old.seq; END;
"""

#: Messages waiting to be published: never acknowledged, or acknowledged and due to be sent again.
#: (A lookup per row by primary key: the delivered table may hold a whole window of a busy simulator.)
_WAITING = "NOT EXISTS (SELECT 1 FROM delivered d WHERE d.seq = outbox.seq AND d.resend = 0)"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored message, ready to publish."""

    seq: int
    topic: str
    payload: bytes


class OutboxFull(RuntimeError):
    """A message could not be stored: everything in the outbox outranks it."""


class MessageTooLarge(PayloadTooLarge):
    """The encoded message is over the message limit; nothing was stored and no drop was counted."""

    def __init__(self, kind: UplinkKind, size: int, limit: int) -> None:
        super().__init__(f"{kind.value} message is {size} bytes, the limit is {limit}")
        self.kind = kind
        self.size = size
        self.limit = limit


class Outbox:
    """A vehicle's durable queue of encoded messages, ordered by ``seq``. Thread-safe."""

    def __init__(
        self,
        path: str | Path,
        vehicle_id: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vehicle_id = vehicle_id
        self.path = str(path)
        self.max_bytes = max_bytes
        self.max_message_bytes = max_message_bytes
        #: delivered messages evicted to make room (not counted as drops: the broker had them)
        self.evicted_delivered = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._files = self.path not in ("", ":memory:") and not self.path.startswith("file:")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # must precede the first table so that deleted pages can be returned to the file system
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed message survives power loss, not only a killed process.
        self._db.execute("PRAGMA synchronous=FULL")
        # Debian's SQLite zeroes freed pages by default, which writes every evicted or expired page to the log
        # again; FAST zeroes only what is written anyway (the data stays unreadable through SQL either way).
        self._db.execute("PRAGMA secure_delete=FAST")
        page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self.budget = DiskBudget.plan(max_bytes, page_size, max_message_bytes)
        self._data_pages = self.budget.data_pages  # lowered when the disk fills before the bound
        self._db.execute(f"PRAGMA wal_autocheckpoint={self.budget.wal_frames}")
        self._db.execute(f"PRAGMA journal_size_limit={self.budget.wal_rest_bytes}")
        self._db.executescript(_SCHEMA)
        columns = {str(row[1]) for row in self._db.execute("PRAGMA table_info(delivered)")}
        if "attempts" not in columns:  # a store written before receipts existed
            self._db.execute("ALTER TABLE delivered ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
        if int(self._db.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:
            # a store created before incremental auto-vacuum: convert it once, or it could never shrink
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("VACUUM")
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('next_seq', ?)", (int(clock() * 1e6),)
            )
            self._next_seq = int(
                self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
            )
            # a new process cannot know whether the broker kept what it acknowledged to the previous one
            self._db.execute("UPDATE delivered SET resend = 1 WHERE resend = 0")
            self._bytes = self._recount()
            self._in_transaction(self._drop_oversized)
            # the bound may have been lowered since the last start
            self._in_transaction(lambda: int(self._shrink(PRIORITY[UplinkKind.TRIP], exclude=-1)))
            self._after_write()

    # internals (caller holds the lock) -------------------------------------------------------------
    def _take_seq(self) -> int:
        # this process is the store's only writer, so the counter lives in memory and is written through
        seq = self._next_seq
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
        self._next_seq = seq + 1
        return seq

    def _count_drop(self, kind: str, size: int) -> None:
        self._db.execute(
            "INSERT INTO dropped(kind, messages, bytes) VALUES (?, 1, ?) ON CONFLICT(kind) DO UPDATE"
            " SET messages = messages + 1, bytes = bytes + excluded.bytes",
            (kind, size),
        )

    def _pragma(self, name: str) -> int:
        return int(self._db.execute(f"PRAGMA {name}").fetchone()[0])

    def _used_pages(self) -> int:
        return self._pragma("page_count") - self._pragma("freelist_count")

    def _evict_one(self, priority: int, exclude: int) -> bool:
        """Delete the message that goes first; False when only messages above ``priority`` remain."""
        row = self._db.execute(
            "SELECT seq, kind, length(payload) FROM outbox WHERE seq IN"
            " (SELECT seq FROM delivered ORDER BY seq LIMIT 1)"
        ).fetchone()
        delivered = row is not None
        if not delivered:
            row = self._db.execute(
                "SELECT seq, kind, length(payload) FROM outbox WHERE priority <= ? AND seq != ?"
                " ORDER BY priority, seq LIMIT 1",
                (priority, exclude),
            ).fetchone()
        if row is None:
            return False
        seq, kind, size = int(row[0]), str(row[1]), int(row[2])
        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        if delivered:
            self.evicted_delivered += 1
        else:
            self._count_drop(kind, size)
        self._bytes -= size
        return True

    def _vacuum(self, pages: int) -> None:
        # Python steps a PRAGMA once, and incremental_vacuum frees one page per step: one call per page
        for _ in range(pages):
            self._db.execute("PRAGMA incremental_vacuum(1)")

    def _shrink(self, priority: int, exclude: int) -> bool:
        """Bring the database file within its pages: give free pages back, else evict. False if it cannot."""
        while (over := self._pragma("page_count") - self._data_pages) > 0:
            free = self._pragma("freelist_count")
            if free:
                self._vacuum(min(free, over))
            elif not self._evict_one(priority, exclude):
                return False
        return True

    def _after_write(self) -> None:
        """Truncate the write-ahead log once it holds more than the budget lets it keep between commits."""
        if not self._files:
            return
        try:
            wal = os.stat(self.path + "-wal").st_size
        except FileNotFoundError:
            return
        if wal > self.budget.wal_rest_bytes:
            # Nothing but this process writes, and only a reader (a diagnostic tool) can hold the checkpoint
            # back: then do not wait for it; the next commit tries again.
            self._db.execute("PRAGMA busy_timeout=0")
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _in_transaction(self, work: Callable[[], _T]) -> _T:
        next_seq, stored, evicted = self._next_seq, self._bytes, self.evicted_delivered
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            # the rolled-back seq was never stored: take it again
            self._next_seq, self._bytes, self.evicted_delivered = next_seq, stored, evicted
            raise
        return result

    def _drop_oversized(self) -> int:
        """Drop (and count) stored messages over the message limit: ones stored under a larger limit."""
        rows = self._db.execute(
            "SELECT seq, kind, length(payload) FROM outbox WHERE length(payload) > ?",
            (self.max_message_bytes,),
        ).fetchall()
        for seq, kind, size in rows:
            log.error(
                "%s: dropping stored %s message %d: %d bytes, over the %d-byte message limit",
                self.vehicle_id, kind, seq, size, self.max_message_bytes,
            )  # fmt: skip
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._count_drop(str(kind), int(size))
            self._bytes -= int(size)
        return len(rows)

    def _recount(self) -> int:
        row = self._db.execute("SELECT coalesce(sum(length(payload)), 0) FROM outbox").fetchone()
        return int(row[0])

    # public API --------------------------------------------------------------------------------------
    def reserve_seq(self) -> int:
        """Take a ``seq`` for a message that is not stored here (the MQTT last will)."""
        with self._lock:
            seq = self._in_transaction(self._take_seq)
            self._after_write()
            return seq

    def enqueue(self, body: Body, *, compress: bool = False) -> int:
        """Encode ``body`` with the next ``seq`` and store it durably; return the ``seq``.

        Raises :class:`OutboxFull` (after counting the drop) when every stored message outranks it, and
        :class:`MessageTooLarge` (storing nothing, counting nothing) when it is over the message limit.
        """
        kind = UplinkKind(body.KIND)
        priority = PRIORITY[kind]

        def store() -> int:
            seq = self._take_seq()
            payload = encode(self.vehicle_id, seq, body, compress=compress, max_bytes=_UNBOUNDED)
            if len(payload) > self.max_message_bytes:
                raise MessageTooLarge(kind, len(payload), self.max_message_bytes)
            # evict by pages, before inserting, so that the file never grows past its share of the bound
            need = self.budget.message_pages(len(payload))
            while self._used_pages() + need > self._data_pages:
                if not self._evict_one(priority, exclude=-1):
                    self._count_drop(kind.value, len(payload))
                    return -1
            self._db.execute(
                "INSERT INTO outbox(seq, kind, priority, topic, payload, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (seq, kind.value, priority, uplink_topic(self.vehicle_id, kind), payload, self._clock()),
            )
            self._bytes += len(payload)
            if not self._shrink(priority, exclude=seq):  # the estimate fell short and nothing can go
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                self._bytes -= len(payload)
                self._count_drop(kind.value, len(payload))
                return -1
            return seq

        with self._lock:
            # Raw telemetry is the first thing evicted anyway: it need not cost an fsync per batch. In WAL
            # mode NORMAL survives a killed process; only a power cut may lose the latest telemetry commits
            # (the next FULL commit syncs them too). Trips, events, fault codes and status are synced at once.
            durable = priority > PRIORITY[UplinkKind.TELEMETRY]
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                seq = self._in_transaction(store)
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc):
                    raise
                # The disk filled before our bound: lower the bound to half of what is used; try once more.
                used = self._used_pages()
                log.error("outbox disk full at %d pages; lowering the bound and evicting", used)
                self._data_pages = max(used // 2, 1)
                seq = self._in_transaction(store)
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")
                self._after_write()
        if seq < 0:
            raise OutboxFull(f"outbox full ({self.max_bytes} bytes) of messages that outrank {kind.value}")
        return seq

    def record_drop(self, kind: UplinkKind, size: int) -> None:
        """Count a message that was never stored (e.g. over the message limit and indivisible)."""

        def count() -> int:
            self._count_drop(kind.value, size)
            return 0

        with self._lock:
            self._in_transaction(count)
            self._after_write()

    def refuse(self, seq: int) -> None:
        """Drop (and count) a stored message that must not be sent: over the limit the broker enforces."""
        with self._lock:

            def drop() -> int:
                row = self._db.execute(
                    "DELETE FROM outbox WHERE seq = ? RETURNING kind, length(payload)", (seq,)
                ).fetchone()
                if row is not None:
                    log.error(
                        "%s: %s message %d of %d bytes is over the %d-byte message limit; dropped, not sent",
                        self.vehicle_id, row[0], seq, row[1], self.max_message_bytes,
                    )  # fmt: skip
                    self._count_drop(str(row[0]), int(row[1]))
                    self._bytes -= int(row[1])
                return 0

            self._in_transaction(drop)
            self._after_write()

    def pending(self, *, after_seq: int = -1, limit: int = 100) -> list[OutboxItem]:
        """Up to ``limit`` messages waiting to be published with ``seq > after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, topic, payload FROM outbox WHERE seq > ? AND {_WAITING} ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxItem(int(s), str(t), bytes(p)) for s, t, p in rows]

    def ack(self, seqs: Iterable[int], *, retain_at: float | None = None) -> None:
        """Record the broker's acknowledgement (messages already evicted are ignored).

        Without ``retain_at`` the messages are deleted. With it they are kept as delivered, acknowledged at
        that time (on the caller's clock), until the cloud's receipt (:meth:`confirm`) or eviction removes
        them.
        """
        batch = [(s,) for s in seqs]
        if not batch:
            return
        with self._lock:

            def record() -> int:
                if retain_at is not None:
                    # a message published again keeps its count of attempts: its next wait is longer
                    self._db.executemany(
                        "INSERT INTO delivered(seq, acked_at, resend)"
                        " SELECT seq, ?, 0 FROM outbox WHERE seq = ?"
                        " ON CONFLICT(seq) DO UPDATE SET acked_at = excluded.acked_at, resend = 0",
                        [(retain_at, s) for (s,) in batch],
                    )
                    return 0
                freed = 0
                for (seq,) in batch:
                    row = self._db.execute(
                        "DELETE FROM outbox WHERE seq = ? RETURNING length(payload)", (seq,)
                    ).fetchone()
                    freed += int(row[0]) if row else 0
                self._bytes -= freed
                return freed

            self._in_transaction(record)
            self._release_if_empty()
            self._after_write()

    def confirm(self, ranges: Iterable[tuple[int, int]]) -> int:
        """The cloud stored these messages (inclusive ``seq`` ranges): delete them; return how many were here.

        Messages already gone (confirmed twice, evicted) are ignored, and so is a receipt that comes before
        the broker's PUBACK: the message is deleted either way, and the late PUBACK finds nothing to mark.
        """
        spans = [(int(first), int(last)) for first, last in ranges]
        if not spans:
            return 0
        with self._lock:
            seqs = sorted(
                {
                    int(row[0])
                    for first, last in spans
                    for row in self._db.execute(
                        "SELECT seq FROM outbox WHERE seq BETWEEN ? AND ?", (first, last)
                    )
                }
            )
            for start in range(0, len(seqs), DELETE_BATCH):
                chunk = seqs[start : start + DELETE_BATCH]

                def delete(chunk: list[int] = chunk) -> int:
                    marks = ",".join("?" * len(chunk))
                    rows = self._db.execute(
                        f"DELETE FROM outbox WHERE seq IN ({marks}) RETURNING length(payload)", chunk
                    ).fetchall()
                    self._bytes -= sum(int(r[0]) for r in rows)
                    return len(rows)

                # a transaction per chunk: the write-ahead log's budget holds one chunk, not a whole receipt
                self._in_transaction(delete)
                self._after_write()
            if seqs:
                self._release_if_empty()
                self._after_write()
            return len(seqs)

    def resend_unconfirmed(
        self, now: float, wait_s: float, *, max_wait_s: float = MAX_RECEIPT_WAIT_S
    ) -> list[int]:
        """Queue again the delivered messages whose receipt is overdue; return their ``seq``, in order.

        A message acknowledged at ``acked_at`` (the caller's clock) is overdue at ``acked_at + wait``, where
        the wait is ``wait_s`` doubled for every earlier attempt, at most ``max_wait_s``: a cloud that is down
        for hours gets a copy of each message now and then, not one per window.
        """
        with self._lock:

            def mark() -> list[int]:
                rows = self._db.execute(
                    "UPDATE delivered SET resend = 1, attempts = attempts + 1 WHERE resend = 0"
                    " AND acked_at <= ? - min(? * (1 << min(attempts, 30)), ?) RETURNING seq",
                    (now, wait_s, max_wait_s),
                ).fetchall()
                return sorted(int(r[0]) for r in rows)

            due = self._in_transaction(mark)
            if due:
                self._after_write()
            return due

    def resend_delivered(self) -> int:
        """Make every delivered message wait to be published again; return how many."""
        with self._lock:
            count = self._in_transaction(
                lambda: self._db.execute("UPDATE delivered SET resend = 1 WHERE resend = 0").rowcount
            )
            self._after_write()
            return count

    def _release_if_empty(self) -> None:
        # An empty store gives its pages back to the file system (outside a transaction, in one statement).
        if self._bytes == 0 and self._pragma("freelist_count"):
            self._db.executescript("PRAGMA incremental_vacuum")

    def regate(self, apply: Callable[[Body], Body | None]) -> tuple[int, int]:
        """Pass every stored message through ``apply`` (e.g. after consent was withdrawn).

        A changed message waiting to be published is rewritten under its own ``seq``; one ``apply`` refuses
        (None) is deleted. A delivered message is never sent again with other content (the cloud would record
        a conflicting resend), so one that would change is deleted instead. Returns (rewritten, deleted).
        The rewrite is one transaction, so the log may briefly hold a copy of the rewritten messages beyond
        the disk bound's share for it.
        """
        rewritten = deleted = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute(
                    "SELECT seq, topic, payload, seq IN (SELECT seq FROM delivered) FROM outbox ORDER BY seq"
                ).fetchall()
                for seq, topic, payload, delivered in rows:
                    message = decode(str(topic), bytes(payload), max_bytes=_UNBOUNDED)
                    body = apply(message.body)
                    if body is None or (delivered and body != message.body):
                        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                        self._bytes -= len(payload)
                        deleted += 1
                    elif body != message.body:
                        new = encode(
                            self.vehicle_id,
                            int(seq),
                            body,
                            sent_at=message.sent_at,
                            compress=b'"application/zlib+json"' in bytes(payload),
                            max_bytes=self.max_message_bytes,
                        )
                        self._db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (new, seq))
                        self._bytes += len(new) - len(payload)
                        rewritten += 1
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._bytes = self._recount()
                raise
            finally:
                self._after_write()
        return rewritten, deleted

    def get_meta(self, key: str) -> int | None:
        """A small persistent integer kept beside the messages (e.g. the last downlink seq handled)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else None

    def set_meta(self, key: str, value: int) -> None:
        """Store a small persistent integer."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))
            self._after_write()

    def depth(self) -> int:
        """How many messages wait to be published (never acknowledged, or due to be sent again)."""
        with self._lock:
            return int(self._db.execute(f"SELECT count(*) FROM outbox WHERE {_WAITING}").fetchone()[0])

    def delivered(self) -> list[int]:
        """The ``seq`` of every message the broker acknowledged and the cloud has not confirmed, in order."""
        with self._lock:
            return [int(r[0]) for r in self._db.execute("SELECT seq FROM delivered ORDER BY seq")]

    @property
    def stored_bytes(self) -> int:
        """Payload bytes stored (waiting and delivered)."""
        return self._bytes

    def disk_bytes(self) -> int:
        """What the store takes on disk now: database file, write-ahead log and its index (0 in memory)."""
        if not self._files:
            return 0
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(self.path + suffix).st_size
        return total

    def dropped(self) -> dict[str, tuple[int, int]]:
        """Messages and bytes dropped since the store was created, per kind."""
        with self._lock:
            rows = self._db.execute("SELECT kind, messages, bytes FROM dropped").fetchall()
        return {str(k): (int(m), int(b)) for k, m, b in rows}

    def close(self) -> None:
        """Close the database; stored messages stay for the next start."""
        with self._lock:
            self._db.close()
