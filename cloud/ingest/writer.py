"""From received payloads to committed rows and dead letters: one batch at a time, one bad message alone.

:class:`BatchWriter` decodes a batch against the contract and stores it in one transaction. Whatever fails for
one message — decoding, validating, storing, creating a partition — sends that message alone to the dead
letters with the reason, and the rest of the batch is stored: a batch the database (or the writer) refuses
is split in halves until each culprit is alone, which costs a few extra transactions per bad message and none
for good batches. A lost database connection (``psycopg.OperationalError``) is not the message's fault: it
propagates, so that the caller retries the batch unacknowledged.

A car whose owner was erased and that keeps sending (its broker identity not yet revoked) is not stored again:
its messages — valid or not — are acknowledged and counted as ``erased``, never written, until the car is
registered to a new owner (an import of ``vehicles`` naming a customer). See :class:`ErasedIds`.

It knows nothing of MQTT (``worker.py`` does), so tests drive it directly on a real database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import psycopg

from cloud.db.dialect import database_dialect
from cloud.db.partitions import ensure_day
from cloud.privacy.ledger import ErasedIds
from edge_agent.protocol import VEHICLE_ID_RE, Message, ProtocolError, claimed_seq, decode
from edge_agent.protocol.bounds import DEFAULT_MAX_CLOCK_SKEW

from .store import (
    IngestReason,
    Rejected,
    StoreResult,
    count_reasons,
    store_batch,
    store_dead_letters_alone,
)

log = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[object, ...]]


class DayPartitions:
    """Creates the day partitions a batch's telemetry needs (plain PostgreSQL), once per day per writer.

    A day is remembered once its partition was created in a batch; if that batch then rolled back, the day's
    rows land in the default partition until ``drivesight cloud db maintain`` moves them: stored either way.
    Only days from ``WINDOW_BEHIND_DAYS`` before today to tomorrow get a partition here, so that a car with
    a wrong clock cannot make one partition per message; rows outside the window wait in the default
    partition for ``maintain``, which creates partitions for days within retention.
    """

    WINDOW_BEHIND_DAYS = 7

    def __init__(self) -> None:
        self.enabled: bool | None = None
        self.known: set[date] = set()

    def __call__(self, conn: Connection, days: set[date]) -> None:
        if self.enabled is None:
            partitioned = conn.execute("SELECT to_regclass('telemetry_default')").fetchone() != (None,)
            self.enabled = partitioned and database_dialect(conn) == "postgres"
        if not self.enabled:
            return
        today = datetime.now(UTC).date()
        low, high = today - timedelta(days=self.WINDOW_BEHIND_DAYS), today + timedelta(days=1)
        for day in sorted({d for d in days if low <= d <= high} - self.known):
            ensure_day(conn, day)
            self.known.add(day)


class BatchWriter:
    """Decodes and stores batches of ``(topic, payload)``; see the module docstring for what fails how."""

    def __init__(
        self, *, max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW, ledger_key: bytes | None = None
    ) -> None:
        self.max_clock_skew = max_clock_skew
        self.partitions = DayPartitions()
        self.erased = ErasedIds(ledger_key)

    def decode(
        self, items: Sequence[tuple[str, bytes]], now: datetime | None = None
    ) -> tuple[list[Message], list[Rejected]]:
        """Decode each payload against the contract; return the valid messages and the refused ones."""
        now = now or datetime.now(UTC)
        messages: list[Message] = []
        rejected: list[Rejected] = []
        for topic, payload in items:
            try:
                messages.append(decode(topic, payload, now=now, max_clock_skew=self.max_clock_skew))
            except ProtocolError as exc:
                rejected.append(Rejected(topic, exc.reason.value, str(exc), payload))
            except Exception as exc:  # a decoder bug must not stop the ingest: keep the message, say why
                log.exception("decoding a message on %r failed", topic)
                detail = f"{type(exc).__name__}: {exc}"
                rejected.append(Rejected(topic, IngestReason.DECODE_FAILED.value, detail, payload))
        return messages, rejected

    def write(
        self, conn: Connection, items: Sequence[tuple[str, bytes]], now: datetime | None = None
    ) -> tuple[StoreResult, list[Message]]:
        """Decode and store one batch; return what it did and the messages that were valid."""
        messages, rejected = self.decode(items, now)
        result = self.store(conn, messages, rejected)
        result.handled = handled_seqs(messages, rejected)
        return result, messages

    def store(self, conn: Connection, messages: list[Message], rejected: list[Rejected]) -> StoreResult:
        """Store decoded messages and refused payloads, isolating whatever the database refuses; drop what
        cars of erased owners send."""
        messages, rejected, erased = self._without_erased(conn, messages, rejected)
        result = self._store(conn, messages, rejected)
        result.erased += erased
        return result

    def _without_erased(
        self, conn: Connection, messages: list[Message], rejected: list[Rejected]
    ) -> tuple[list[Message], list[Rejected], int]:
        """``messages`` and ``rejected`` without those of vehicles the erasure ledger names and that no
        customer owns now (a car resold and registered again is stored), and how many were dropped."""
        with conn.transaction():
            if self.erased.refresh(conn) and not self.erased.usable:
                log.error(
                    "the erasure ledger holds %d entries but the ingest has no DRIVESIGHT_PRIVACY_LEDGER_KEY:"
                    " cars of erased owners that keep sending are stored again",
                    self.erased.entries,
                )
            vehicles = {m.vehicle_id for m in messages} | {v for r in rejected if (v := _vehicle_of(r.topic))}
            named = sorted(v for v in vehicles if self.erased.named("vehicle", v))
            if not named:
                return messages, rejected, 0
            owned = {
                str(row[0])
                for row in conn.execute(
                    "SELECT vehicle_id FROM vehicles WHERE vehicle_id = ANY(%s) AND customer_id IS NOT NULL",
                    (named,),
                )
            }
        gone = set(named) - owned
        kept = [m for m in messages if m.vehicle_id not in gone]
        kept_rejected = [r for r in rejected if _vehicle_of(r.topic) not in gone]
        return kept, kept_rejected, len(messages) - len(kept) + len(rejected) - len(kept_rejected)

    def _store(self, conn: Connection, messages: list[Message], rejected: list[Rejected]) -> StoreResult:
        try:
            return store_batch(conn, messages, rejected, before_telemetry=self.partitions)
        except psycopg.OperationalError:
            raise
        except Exception as exc:
            log.error(
                "a batch of %d was refused (%s: %s); isolating the culprits",
                len(messages),
                type(exc).__name__,
                exc,
            )
            if conn.closed or conn.broken:
                raise psycopg.OperationalError("the connection broke while storing") from exc
            store_dead_letters_alone(conn, rejected)
            reasons = count_reasons(rejected)
            result = StoreResult(dead_letters=len(rejected), dead_reasons=reasons, isolations=1)
            result.add(self._isolate(conn, messages))
            return result

    def _isolate(self, conn: Connection, messages: list[Message]) -> StoreResult:
        """Store a group refused as a whole: halves that fail are split again; a message that fails alone
        is dead-lettered with the error."""
        if len(messages) == 1:
            return self._store_alone(conn, messages[0])
        result = StoreResult()
        middle = len(messages) // 2
        for half in (messages[:middle], messages[middle:]):
            try:
                result.add(store_batch(conn, half, before_telemetry=self.partitions))
            except psycopg.OperationalError:
                raise
            except Exception:
                result.add(self._isolate(conn, half))
        return result

    def _store_alone(self, conn: Connection, message: Message) -> StoreResult:
        try:
            return store_batch(conn, [message], before_telemetry=self.partitions)
        except psycopg.OperationalError:
            raise
        except Exception as exc:
            log.warning("(%s, %d) refused: %s: %s", message.vehicle_id, message.seq, type(exc).__name__, exc)
            reason = IngestReason.STORE_FAILED.value
            detail = f"{type(exc).__name__}: {exc}"
            store_dead_letters_alone(conn, [Rejected(str(message.topic), reason, detail, message.payload)])
            return StoreResult(dead_letters=1, dead_reasons={reason: 1})


def handled_seqs(messages: Sequence[Message], rejected: Sequence[Rejected]) -> dict[str, list[int]]:
    """Per vehicle, the ``seq`` of a stored batch's messages: the valid ones, and the refused ones whose topic
    names a vehicle and whose envelope a ``seq`` (their dead letters keep them)."""
    handled: dict[str, list[int]] = {}
    for m in messages:
        handled.setdefault(m.vehicle_id, []).append(m.seq)
    for r in rejected:
        vehicle = _vehicle_of(r.topic)
        if (
            vehicle is not None
            and VEHICLE_ID_RE.fullmatch(vehicle)
            and (seq := claimed_seq(r.payload)) is not None
        ):
            handled.setdefault(vehicle, []).append(seq)
    return handled


def _vehicle_of(topic: str) -> str | None:
    """The vehicle id segment of a ``ds/v1/{vehicle_id}/...`` topic, valid or not (a refused message on
    an erased car's topic would name the car in the dead letters), or None."""
    parts = topic.split("/", 3)
    return parts[2] if len(parts) >= 3 and parts[0] == "ds" and parts[1] == "v1" and parts[2] else None
