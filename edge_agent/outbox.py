"""Durable, bounded outbox: messages wait in SQLite (WAL) until the broker acknowledged them.

Each message gets its ``seq`` in the same transaction that stores it, so a ``seq`` is never reused, even
after a crash, and a message republished after a restart carries the ``seq`` it had: the cloud stores it
once. A new store seeds ``seq`` from the wall clock in microseconds, so that a vehicle whose outbox file was
lost keeps counting above everything it sent before (the cloud would otherwise drop its new messages as
duplicates). Rows are deleted only when the uplink reports the broker's PUBACK. Commits are synced to disk
(``synchronous=FULL``) except raw telemetry's, which survive a killed process but not necessarily a power cut.

The store is bounded by ``max_bytes`` of payload. When a new message does not fit, the oldest messages of the
lowest priority go first — raw telemetry, then status, usage and feedback, and trips, events and DTCs last —
but never a message of higher priority than the new one: if only such messages remain, the new message is
the one dropped. Every drop is counted per kind, persistently, so the car can report what it lost. A disk
that fills up before the bound is treated the same way.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .protocol import Body, UplinkKind, decode, encode, uplink_topic

log = logging.getLogger(__name__)

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
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored message, ready to publish."""

    seq: int
    topic: str
    payload: bytes


class OutboxFull(RuntimeError):
    """A message could not be stored: everything in the outbox outranks it."""


class Outbox:
    """A vehicle's durable queue of encoded messages, ordered by ``seq``. Thread-safe."""

    def __init__(
        self,
        path: str | Path,
        vehicle_id: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vehicle_id = vehicle_id
        self.path = str(path)
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # must precede the first table so that deleted pages can be returned to the file system
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed message survives power loss, not only a killed process.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('next_seq', ?)", (int(clock() * 1e6),)
            )
            row = self._db.execute("SELECT coalesce(sum(length(payload)), 0) FROM outbox").fetchone()
            self._bytes = int(row[0])
            self._next_seq = int(
                self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
            )

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

    def _evict(self, needed: int, priority: int) -> bool:
        """Delete oldest lowest-priority messages (priority <= ``priority``) until ``needed`` bytes fit."""
        while self._bytes + needed > self.max_bytes:
            row = self._db.execute(
                "SELECT seq, kind, length(payload) FROM outbox WHERE priority <= ?"
                " ORDER BY priority, seq LIMIT 1",
                (priority,),
            ).fetchone()
            if row is None:
                return False
            seq, kind, size = int(row[0]), str(row[1]), int(row[2])
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._count_drop(kind, size)
            self._bytes -= size
        return True

    def _in_transaction(self, work: Callable[[], int]) -> int:
        next_seq = self._next_seq
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._next_seq = next_seq  # the rolled-back seq was never stored: take it again
            raise
        return result

    # public API --------------------------------------------------------------------------------------
    def reserve_seq(self) -> int:
        """Take a ``seq`` for a message that is not stored here (the MQTT last will)."""
        with self._lock:
            return self._in_transaction(self._take_seq)

    def enqueue(self, body: Body, *, compress: bool = False) -> int:
        """Encode ``body`` with the next ``seq`` and store it durably; return the ``seq``.

        Raises :class:`OutboxFull` (after counting the drop) when every stored message outranks it.
        """
        kind = UplinkKind(body.KIND)
        priority = PRIORITY[kind]

        def store() -> int:
            seq = self._take_seq()
            payload = encode(self.vehicle_id, seq, body, compress=compress)
            if not self._evict(len(payload), priority):
                self._count_drop(kind.value, len(payload))
                return -1
            self._db.execute(
                "INSERT INTO outbox(seq, kind, priority, topic, payload, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (seq, kind.value, priority, uplink_topic(self.vehicle_id, kind), payload, self._clock()),
            )
            self._bytes += len(payload)
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
                # The disk filled before our bound: shrink the bound to what is stored and try once more.
                log.error("outbox disk full at %d bytes; lowering the bound and evicting", self._bytes)
                self._bytes = self._recount()
                self.max_bytes = max(self._bytes // 2, 1)
                seq = self._in_transaction(store)
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")
        if seq < 0:
            raise OutboxFull(f"outbox full ({self.max_bytes} bytes) of messages that outrank {kind.value}")
        return seq

    def _recount(self) -> int:
        row = self._db.execute("SELECT coalesce(sum(length(payload)), 0) FROM outbox").fetchone()
        return int(row[0])

    def pending(self, *, after_seq: int = -1, limit: int = 100) -> list[OutboxItem]:
        """Up to ``limit`` stored messages with ``seq > after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxItem(int(s), str(t), bytes(p)) for s, t, p in rows]

    def ack(self, seqs: Iterable[int]) -> None:
        """Forget messages the broker has acknowledged (ones already evicted are ignored)."""
        batch = [(s,) for s in seqs]
        if not batch:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            freed = 0
            for (seq,) in batch:
                row = self._db.execute(
                    "DELETE FROM outbox WHERE seq = ? RETURNING length(payload)", (seq,)
                ).fetchone()
                freed += int(row[0]) if row else 0
            self._db.execute("COMMIT")
            self._bytes -= freed
            if self._bytes == 0:
                self._db.execute("PRAGMA incremental_vacuum")

    def regate(self, apply: Callable[[Body], Body | None]) -> tuple[int, int]:
        """Pass every waiting message through ``apply`` (e.g. after consent was withdrawn).

        A changed message is rewritten under its own ``seq``; one ``apply`` refuses (None) is deleted.
        Returns (rewritten, deleted).
        """
        rewritten = deleted = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute("SELECT seq, topic, payload FROM outbox ORDER BY seq").fetchall()
                for seq, topic, payload in rows:
                    message = decode(str(topic), bytes(payload), max_bytes=1 << 30)
                    body = apply(message.body)
                    if body is None:
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
                            max_bytes=1 << 30,
                        )
                        self._db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (new, seq))
                        self._bytes += len(new) - len(payload)
                        rewritten += 1
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._bytes = self._recount()
                raise
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

    def depth(self) -> int:
        """How many messages wait to be acknowledged."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    @property
    def stored_bytes(self) -> int:
        """Payload bytes waiting."""
        return self._bytes

    def dropped(self) -> dict[str, tuple[int, int]]:
        """Messages and bytes dropped since the store was created, per kind."""
        with self._lock:
            rows = self._db.execute("SELECT kind, messages, bytes FROM dropped").fetchall()
        return {str(k): (int(m), int(b)) for k, m, b in rows}

    def close(self) -> None:
        """Close the database; stored messages stay for the next start."""
        with self._lock:
            self._db.close()
