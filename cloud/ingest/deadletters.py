"""Dead letters an operator can work with: list them, look at one, replay them after a fix.

A dead letter keeps the refused payload up to 64 KiB with its full size and SHA-256 (``store.py``). A replay
sends stored payloads through the ingest's normal path — the contract, then :func:`store_batch` — so it is
still exactly once: a payload already stored is reported as such and changes nothing, one the contract still
refuses stays a dead letter with the new reason in ``replay_result``. A truncated payload cannot be replayed.
Each replayed row records when and with what result, in the transaction that stored it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from .store import IngestReason, store_batch
from .writer import BatchWriter

Connection = psycopg.Connection[tuple[object, ...]]

_COLUMNS = (
    "id, received_at, topic, reason, detail, size_bytes, sha256, length(payload), replayed_at, replay_result"
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter; ``payload`` is filled only by :func:`get_dead_letter`."""

    id: int
    received_at: datetime
    topic: str
    reason: str
    detail: str
    size_bytes: int
    sha256: str
    truncated: bool
    replayed_at: datetime | None
    replay_result: str | None
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What one replay did: ``stored``, ``already_stored``, ``refused`` or ``not_replayable``."""

    id: int
    outcome: str
    detail: str


def _row(row: tuple[object, ...], payload: bytes | None = None) -> DeadLetter:
    id_, received_at, topic, reason, detail, size, digest, kept, replayed_at, result = row
    assert isinstance(received_at, datetime) and isinstance(digest, bytes | memoryview)
    return DeadLetter(
        id=int(str(id_)),
        received_at=received_at,
        topic=str(topic),
        reason=str(reason),
        detail=str(detail),
        size_bytes=int(str(size)),
        sha256=bytes(digest).hex(),
        truncated=int(str(kept)) < int(str(size)),
        replayed_at=replayed_at if isinstance(replayed_at, datetime) else None,
        replay_result=None if result is None else str(result),
        payload=payload,
    )


def list_dead_letters(
    conn: Connection, *, reason: str | None = None, since: datetime | None = None, limit: int = 100
) -> list[DeadLetter]:
    """The newest dead letters first, optionally of one reason and received at or after ``since``."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM dead_letters"
        " WHERE (%(reason)s::text IS NULL OR reason = %(reason)s)"
        " AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"reason": reason, "since": since, "limit": limit},
    ).fetchall()
    return [_row(r) for r in rows]


def reason_counts(conn: Connection) -> dict[str, int]:
    """How many dead letters there are per reason, and how many of them a replay has not yet stored."""
    rows = conn.execute(
        "SELECT reason, count(*) FROM dead_letters WHERE replay_result IS DISTINCT FROM 'stored'"
        " GROUP BY reason ORDER BY reason"
    ).fetchall()
    return {str(r[0]): int(str(r[1])) for r in rows}


def get_dead_letter(conn: Connection, dead_letter_id: int) -> DeadLetter | None:
    """One dead letter with its kept payload, or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS}, payload FROM dead_letters WHERE id = %s", (dead_letter_id,)
    ).fetchone()
    if row is None:
        return None
    payload = row[-1]
    assert isinstance(payload, bytes | memoryview)
    return _row(row[:-1], bytes(payload))


def replay(
    conn: Connection,
    *,
    ids: Sequence[int] = (),
    reason: str | None = None,
    now: datetime | None = None,
    limit: int = 10_000,
) -> list[ReplayOutcome]:
    """Replay the dead letters named by ``ids``, or those of ``reason``, that no replay has stored yet."""
    if not ids and reason is None:
        raise ValueError("name dead letters to replay: ids, or a reason")
    rows = conn.execute(
        "SELECT id, topic, payload, size_bytes, sha256 FROM dead_letters"
        " WHERE (id = ANY(%(ids)s) OR %(reason)s::text = reason)"
        " AND replay_result IS DISTINCT FROM 'stored' ORDER BY id LIMIT %(limit)s",
        {"ids": list(ids), "reason": reason, "limit": limit},
    ).fetchall()
    found = {int(str(r[0])) for r in rows}
    outcomes = [
        ReplayOutcome(i, "not_replayable", "no such dead letter, or already stored")
        for i in ids
        if i not in found
    ]
    writer = BatchWriter()
    for id_, topic, payload_value, size, digest in rows:
        dead_letter_id = int(str(id_))
        assert isinstance(payload_value, bytes | memoryview) and isinstance(digest, bytes | memoryview)
        payload = bytes(payload_value)
        if len(payload) < int(str(size)) or hashlib.sha256(payload).digest() != bytes(digest):
            outcome = ReplayOutcome(
                dead_letter_id, "not_replayable", f"payload truncated to {len(payload)} bytes"
            )
        else:
            outcome = _replay_one(conn, writer, dead_letter_id, str(topic), payload, now or datetime.now(UTC))
        outcomes.append(outcome)
    return outcomes


def _replay_one(
    conn: Connection, writer: BatchWriter, dead_letter_id: int, topic: str, payload: bytes, now: datetime
) -> ReplayOutcome:
    messages, rejected = writer.decode([(topic, payload)], now)
    try:
        with conn.transaction():
            if rejected:
                outcome = ReplayOutcome(
                    dead_letter_id, "refused", f"{rejected[0].reason}: {rejected[0].detail}"
                )
            else:
                result = store_batch(conn, messages, before_telemetry=writer.partitions)
                if result.stored:
                    outcome = ReplayOutcome(dead_letter_id, "stored", "stored")
                elif result.dead_reasons.get(IngestReason.CONFLICTING_RESEND.value):
                    outcome = ReplayOutcome(
                        dead_letter_id, "refused", "conflicting_resend: another version is stored"
                    )
                else:
                    outcome = ReplayOutcome(dead_letter_id, "already_stored", "the ledger holds it already")
            said = outcome.outcome if outcome.outcome == "stored" else f"{outcome.outcome}: {outcome.detail}"
            conn.execute(
                "UPDATE dead_letters SET replayed_at = %s, replay_result = %s WHERE id = %s",
                (now, said[:4000], dead_letter_id),
            )
    except psycopg.OperationalError:
        raise
    except psycopg.Error as exc:  # still refused by the database: the dead letter stays as it was
        return ReplayOutcome(dead_letter_id, "refused", f"store_failed: {type(exc).__name__}: {exc}")
    return outcome
