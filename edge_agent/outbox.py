"""Durable outbox: messages wait in SQLite (WAL) until the broker acknowledged them.

Each message gets its ``seq`` in the same transaction that stores it, so a ``seq`` is never reused, even
after a crash, and a message republished after a restart carries the ``seq`` it had: the cloud stores it
once. A new store seeds ``seq`` from the wall clock in microseconds, so that a vehicle whose outbox file was
lost keeps counting above everything it sent before (the cloud would otherwise drop its new messages as
duplicates). Rows are deleted only when the uplink reports the broker's PUBACK.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .protocol import Body, encode, uplink_topic

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored message, ready to publish."""

    seq: int
    topic: str
    payload: bytes


class Outbox:
    """A vehicle's durable queue of encoded messages, ordered by ``seq``. Thread-safe."""

    def __init__(self, path: str | Path, vehicle_id: str, *, clock: Callable[[], float] = time.time) -> None:
        self.vehicle_id = vehicle_id
        self.path = str(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed message survives power loss, not only a killed process.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('next_seq', ?)", (int(clock() * 1e6),)
            )

    def _take_seq(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        seq = int(row[0])
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
        return seq

    def reserve_seq(self) -> int:
        """Take a ``seq`` for a message that is not stored here (the MQTT last will)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._take_seq()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return seq

    def enqueue(self, body: Body, *, compress: bool = False) -> int:
        """Encode ``body`` with the next ``seq`` and store it durably; return the ``seq``."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._take_seq()
                payload = encode(self.vehicle_id, seq, body, compress=compress)
                self._db.execute(
                    "INSERT INTO outbox(seq, topic, payload, created_at) VALUES (?, ?, ?, ?)",
                    (seq, uplink_topic(self.vehicle_id, body.KIND.value), payload, self._clock()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return seq

    def pending(self, *, after_seq: int = -1, limit: int = 100) -> list[OutboxItem]:
        """Up to ``limit`` stored messages with ``seq > after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxItem(int(s), str(t), bytes(p)) for s, t, p in rows]

    def ack(self, seqs: Iterable[int]) -> None:
        """Forget messages the broker has acknowledged."""
        batch = [(s,) for s in seqs]
        if not batch:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", batch)
            self._db.execute("COMMIT")

    def depth(self) -> int:
        """How many messages wait to be acknowledged."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        """Close the database; stored messages stay for the next start."""
        with self._lock:
            self._db.close()
