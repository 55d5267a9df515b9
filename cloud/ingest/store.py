"""Writes validated messages and dead letters to PostgreSQL, exactly once by (vehicle_id, seq).

One call stores one batch in one transaction: the ledger ``ingested_messages`` takes every message with
``ON CONFLICT DO NOTHING RETURNING``, and only messages the ledger did not have before are written to their
tables. A redelivered message therefore changes nothing, whether it comes in the same batch or a later one.

Nothing is lost silently:

- the ledger keeps each message's SHA-256; a message under a stored ``(vehicle_id, seq)`` with other bytes
  is a *conflicting resend*: the first version stays, the second goes to the dead letters (a real redelivery
  is byte-identical: the outbox resends the bytes it stored);
- a trip sent again under a new ``seq`` is a correction: ``trips`` holds the version with the highest
  ``seq`` (last write wins, by the car's own order, not by arrival) and every other version is kept in
  ``trip_versions``; the ledger and the trip row therefore never disagree;
- dead letters keep at most :data:`DEAD_LETTER_PAYLOAD_BYTES` of the payload, with its full size and SHA-256;
  topic and detail are made storable (NUL characters escaped) so that the dead-letter insert cannot fail on
  the very input it records.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

import psycopg
from psycopg.types.json import Jsonb

from cloud.db.telemetry import COLUMNS, COPY_COLUMNS, COPY_TYPES
from edge_agent.protocol import DtcV1, EventsV1, FeedbackV1, Message, StatusV1, TelemetryV1, TripSummaryV1

from .copy_binary import copy_stream
from .latest import fold_latest, upsert_latest

#: how much of a refused payload a dead letter keeps (its full size and SHA-256 are kept too)
DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
_MAX_TOPIC = 512
_MAX_DETAIL = 4000


class IngestReason(StrEnum):
    """Dead-letter reasons the ingest adds to the contract's (``RejectReason``)."""

    CONFLICTING_RESEND = "conflicting_resend"  # a stored (vehicle_id, seq) sent again with other content
    STORE_FAILED = "store_failed"  # valid by the contract, refused by the database or the writer
    DECODE_FAILED = "decode_failed"  # the decoder itself failed (a bug; the message is kept here)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A payload bound for the dead-letter table, with why."""

    topic: str
    reason: str
    detail: str
    payload: bytes


@dataclass(slots=True)
class StoreResult:
    """What one batch did; ``dead_reasons`` counts its dead letters by reason."""

    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    #: messages of cars whose owner was erased, acknowledged and not stored (cloud/ingest/writer.py)
    erased: int = 0
    dead_reasons: dict[str, int] = field(default_factory=dict)
    dropped_samples: dict[str, int] = field(default_factory=dict)
    #: 1 when the batch was refused whole and split to isolate the messages that were refused
    isolations: int = 0
    #: per vehicle, the ``seq`` of its messages this batch took care of (stored, found stored, dead-lettered
    #: or dropped as an erased owner's): what the ingest's receipts tell the car it may forget
    handled: dict[str, list[int]] = field(default_factory=dict)

    def add(self, other: StoreResult) -> None:
        """Fold in another part of the same batch."""
        self.isolations += other.isolations
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.dead_letters += other.dead_letters
        self.erased += other.erased
        for table, mine in (
            (other.dead_reasons, self.dead_reasons),
            (other.dropped_samples, self.dropped_samples),
        ):
            for key, n in table.items():
                mine[key] = mine.get(key, 0) + n


def count_reasons(rejected: Sequence[Rejected]) -> dict[str, int]:
    """How many of ``rejected`` there are per reason."""
    return dict(Counter(r.reason for r in rejected))


def storable_text(text: str, limit: int) -> str:
    """``text`` as PostgreSQL can hold it: NUL and unpaired surrogates escaped, at most ``limit`` chars."""
    cleaned = text.replace("\x00", "\\x00")
    cleaned = cleaned.encode("utf-8", "backslashreplace").decode("utf-8")
    return cleaned[:limit]


def _dead_letter_row(r: Rejected, *, ascii_only: bool = False) -> tuple[object, ...]:
    topic, detail = (ascii(r.topic), ascii(r.detail)) if ascii_only else (r.topic, r.detail)
    return (
        storable_text(topic, _MAX_TOPIC),
        storable_text(r.reason, 64),
        storable_text(detail, _MAX_DETAIL),
        r.payload[:DEAD_LETTER_PAYLOAD_BYTES],
        len(r.payload),
        hashlib.sha256(r.payload).digest(),
    )


_INSERT_DEAD = (
    "INSERT INTO dead_letters (topic, reason, detail, payload, size_bytes, sha256)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


def store_dead_letters(cur: psycopg.Cursor[tuple[object, ...]], rejected: Sequence[Rejected]) -> None:
    """Insert refused payloads with their reason: bounded payload, full size and SHA-256, storable text."""
    if rejected:
        cur.executemany(_INSERT_DEAD, [_dead_letter_row(r) for r in rejected])


def store_dead_letters_alone(
    conn: psycopg.Connection[tuple[object, ...]], rejected: Sequence[Rejected]
) -> None:
    """Dead letters in their own transaction; one whose insert still fails is stored as an ASCII-only copy
    (topic and detail as Python escapes, payload as received). Database outages propagate (retry upstream)."""
    if not rejected:
        return
    try:
        with conn.transaction(), conn.cursor() as cur:
            store_dead_letters(cur, rejected)
        return
    except psycopg.OperationalError:
        raise
    except psycopg.Error:
        pass
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_INSERT_DEAD, [_dead_letter_row(r, ascii_only=True) for r in rejected])


def _digest(m: Message) -> bytes:
    return hashlib.sha256(m.payload).digest()


def _claim(
    cur: psycopg.Cursor[tuple[object, ...]], messages: Sequence[Message]
) -> tuple[list[Message], list[Message]]:
    """Record messages in the ledger; return those it did not hold yet (once each), and the conflicting
    resends: messages under a key the ledger (or this batch) holds with a different digest."""
    unique: dict[tuple[str, int], Message] = {}
    digests: dict[tuple[str, int], bytes] = {}
    conflicts: list[Message] = []
    for m in messages:
        key = (m.vehicle_id, m.seq)
        digest = _digest(m)
        if key not in unique:
            unique[key], digests[key] = m, digest
        elif digests[key] != digest:
            conflicts.append(m)
    if not unique:
        return [], conflicts
    keys = sorted(unique)  # a fixed lock order, so that concurrent workers cannot deadlock
    cur.execute(
        "INSERT INTO ingested_messages (vehicle_id, seq, schema, sent_at, digest, dropped)"
        " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::timestamptz[], %s::bytea[],"
        " %s::jsonb[])"
        " ON CONFLICT DO NOTHING RETURNING vehicle_id, seq",
        (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [unique[k].schema for k in keys],
            [unique[k].sent_at for k in keys],
            [digests[k] for k in keys],
            [Jsonb(unique[k].dropped) if unique[k].dropped else None for k in keys],
        ),
    )
    fresh = {(str(v), int(s)) for v, s in cur.fetchall()}  # type: ignore[call-overload]
    known = [k for k in keys if k not in fresh]
    if known:
        cur.execute(
            "SELECT l.vehicle_id, l.seq, l.digest FROM ingested_messages l"
            " JOIN unnest(%s::text[], %s::bigint[]) AS k (vehicle_id, seq) USING (vehicle_id, seq)",
            ([k[0] for k in known], [k[1] for k in known]),
        )
        stored = {(str(v), int(s)): d for v, s, d in cur.fetchall()}  # type: ignore[call-overload]
        for k in known:
            # a ledger row from before digests were kept (NULL) cannot tell: counted as a duplicate
            kept = stored.get(k)
            if isinstance(kept, bytes | memoryview) and bytes(kept) != digests[k]:
                conflicts.append(unique[k])
    return [unique[k] for k in keys if k in fresh], conflicts


def _upsert_vehicles(cur: psycopg.Cursor[tuple[object, ...]], messages: Sequence[Message]) -> None:
    seen: dict[str, tuple[datetime, datetime]] = {}
    for m in messages:
        lo, hi = seen.get(m.vehicle_id, (m.sent_at, m.sent_at))
        seen[m.vehicle_id] = (min(lo, m.sent_at), max(hi, m.sent_at))
    ids = sorted(seen)
    cur.execute(
        "INSERT INTO vehicles (vehicle_id, first_seen, last_seen)"
        " SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[])"
        " ON CONFLICT (vehicle_id) DO UPDATE SET"
        "  first_seen = least(vehicles.first_seen, excluded.first_seen),"
        "  last_seen = greatest(vehicles.last_seen, excluded.last_seen)",
        (ids, [seen[i][0] for i in ids], [seen[i][1] for i in ids]),
    )


def _store_trips(cur: psycopg.Cursor[tuple[object, ...]], messages: Sequence[Message]) -> None:
    rows = []
    for m in messages:
        b = m.body
        assert isinstance(b, TripSummaryV1)
        rows.append(
            (
                m.vehicle_id, b.trip_id, m.seq, b.started_at, b.ended_at, b.distance_km, b.duration_s,
                b.moving_s, b.idle_s, b.max_speed_kmh, b.avg_speed_kmh, b.night_share,
                Jsonb({k.value: v for k, v in b.event_counts.items()}),
                b.start_location.lat if b.start_location else None,
                b.start_location.lon if b.start_location else None,
                b.end_location.lat if b.end_location else None,
                b.end_location.lon if b.end_location else None,
                b.odometer_km, b.fuel_used_pct, b.soc_used_pct, b.samples, b.fuel_used_l, b.energy_used_kwh,
                b.safety_score, b.eco_score,
                Jsonb({k: u.model_dump() for k, u in b.feature_usage.items()}), list(b.dtcs),
                b.driving_style, Jsonb(b.driving_style_probabilities), Jsonb(b.model_versions),
            )
        )  # fmt: skip
    # Corrections: per (vehicle, trip), the highest seq is the current version, all others are history.
    # In seq order, each row either replaces the current one (which moves to trip_versions first) or, older
    # than it, goes to trip_versions itself.
    for row in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
        vehicle_id, trip_id, seq = row[0], row[1], row[2]
        cur.execute(
            "INSERT INTO trip_versions (vehicle_id, trip_id, seq, version)"
            " SELECT vehicle_id, trip_id, seq, to_jsonb(t) FROM trips t"
            " WHERE vehicle_id = %s AND trip_id = %s AND seq < %s"
            " ON CONFLICT DO NOTHING",
            (vehicle_id, trip_id, seq),
        )
        cur.execute(_UPSERT_TRIP, row)
        if cur.rowcount == 0:  # an older version than the stored one: history only
            cur.execute(
                f"INSERT INTO trip_versions (vehicle_id, trip_id, seq, version)"
                f" SELECT %s, %s, %s, to_jsonb(x) FROM (SELECT {_PLACEHOLDERS}) x ({_TRIP_COLUMNS})"
                " ON CONFLICT DO NOTHING",
                (vehicle_id, trip_id, seq, *row),
            )


_TRIP_COLUMNS = (
    "vehicle_id, trip_id, seq, started_at, ended_at, distance_km, duration_s, moving_s, idle_s,"
    " max_speed_kmh, avg_speed_kmh, night_share, event_counts, start_lat, start_lon, end_lat, end_lon,"
    " odometer_km, fuel_used_pct, soc_used_pct, samples, fuel_used_l, energy_used_kwh, safety_score,"
    " eco_score, feature_usage, dtcs, driving_style, driving_style_probabilities, model_versions"
)
_PLACEHOLDERS = ", ".join(["%s"] * 30)
_UPSERT_TRIP = (
    f"INSERT INTO trips ({_TRIP_COLUMNS}) VALUES ({_PLACEHOLDERS})"
    " ON CONFLICT (vehicle_id, trip_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}"
        for c in (c.strip() for c in _TRIP_COLUMNS.split(","))
        if c not in ("vehicle_id", "trip_id")
    )
    + " WHERE trips.seq < excluded.seq"
)


def _store_events(cur: psycopg.Cursor[tuple[object, ...]], messages: Sequence[Message]) -> None:
    rows = []
    for m in messages:
        assert isinstance(m.body, EventsV1)
        for idx, e in enumerate(m.body.events):
            rows.append(
                (
                    m.vehicle_id, m.seq, idx, e.trip_id, e.kind.value, e.start, e.end, e.peak, e.peak_unit,
                    e.location.lat if e.location else None, e.location.lon if e.location else None,
                )
            )  # fmt: skip
    if rows:
        with cur.copy(
            "COPY driving_events (vehicle_id, seq, idx, trip_id, kind, started_at, ended_at, peak, peak_unit,"
            " lat, lon) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)


def _store_telemetry(cur: psycopg.Cursor[tuple[object, ...]], messages: Sequence[Message]) -> None:
    """One wide row per (vehicle, time) by binary COPY: a stream built in numpy for complete messages (the
    common case), row by row for messages with gaps or signals that go to ``extra``."""
    statement = f"COPY telemetry ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    # the days these rows fall on must be recomputed in the daily rollup (cloud/db/rollups.py)
    days = sorted(datetime(d.year, d.month, d.day, tzinfo=UTC) for d in telemetry_days(messages))
    cur.execute(
        "INSERT INTO telemetry_daily_dirty (day) SELECT unnest(%s::timestamptz[]) ON CONFLICT DO NOTHING",
        (days,),
    )
    stream, left = copy_stream(messages)
    if len(left) < len(messages):
        with cur.copy(statement) as copy:
            copy.write(stream)
    if left:
        _store_telemetry_rows(cur, left)


def _store_telemetry_rows(cur: psycopg.Cursor[tuple[object, ...]], messages: Sequence[Message]) -> None:
    with cur.copy(f"COPY telemetry ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(COPY_TYPES))
        width = len(COLUMNS)
        for m in messages:
            b = m.body
            assert isinstance(b, TelemetryV1)
            n = len(b.t_ms)
            columns: list[list[float | None]] = [[None] * n] * width
            others: dict[str, list[float | None]] = {}
            for signal, values in b.signals.items():
                slot = _SLOT.get(signal)
                if slot is None:
                    others[signal] = values
                else:
                    columns[slot] = values
            for i, ms in enumerate(b.t_ms):
                extra = {k: v[i] for k, v in others.items() if v[i] is not None} if others else None
                copy.write_row(
                    (
                        b.t0 + timedelta(milliseconds=ms),
                        m.vehicle_id,
                        *(c[i] for c in columns),
                        Jsonb(extra) if extra else None,
                    )
                )


_SLOT = {signal: i for i, signal in enumerate(COLUMNS)}


def telemetry_days(messages: Sequence[Message]) -> set[date]:
    """The UTC days the telemetry in ``messages`` falls on."""
    days: set[date] = set()
    for m in messages:
        b = m.body
        if isinstance(b, TelemetryV1):
            days.add(b.t0.astimezone(UTC).date())
            days.add((b.t0 + timedelta(milliseconds=b.t_ms[-1])).astimezone(UTC).date())
    return days


def _store_dtcs(cur: psycopg.Cursor[tuple[object, ...]], messages: Sequence[Message]) -> None:
    rows = []
    for m in messages:
        assert isinstance(m.body, DtcV1)
        rows += [
            (m.vehicle_id, m.seq, i, r.code, r.first_seen, r.trip_id) for i, r in enumerate(m.body.codes)
        ]
    cur.executemany(
        "INSERT INTO dtc_reports (vehicle_id, seq, idx, code, first_seen, trip_id)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        rows,
    )


def _store_status(cur: psycopg.Cursor[tuple[object, ...]], messages: Sequence[Message]) -> None:
    """Keep each vehicle's newest status by seq; a last will ends only the boot session it belongs to."""
    wills = [m for m in messages if isinstance(m.body, StatusV1) and m.body.last_will]
    latest: dict[str, Message] = {}
    for m in messages:
        if m in wills:
            continue
        if m.vehicle_id not in latest or m.seq > latest[m.vehicle_id].seq:
            latest[m.vehicle_id] = m
    for vehicle_id in sorted(latest):
        m = latest[vehicle_id]
        body = m.body
        assert isinstance(body, StatusV1)
        consent = Jsonb(body.consent.model_dump(mode="json")) if body.consent is not None else None
        cur.execute(
            "UPDATE vehicles SET status = %s, status_seq = %s, status_at = %s, agent_version = %s,"
            " boot_id = %s,"
            " consent = coalesce(%s, consent),"
            " consent_at = CASE WHEN %s::jsonb IS NULL THEN consent_at ELSE %s END,"
            " outbox_dropped = %s, models = %s, model_update = coalesce(%s, model_update)"
            " WHERE vehicle_id = %s AND (status_seq IS NULL OR status_seq < %s)",
            (body.state, m.seq, m.sent_at, body.agent_version, body.boot_id, consent, consent, m.sent_at,
             Jsonb(body.dropped), Jsonb(body.models), body.model_update, vehicle_id, m.seq),
        )  # fmt: skip
    history = [
        (m.vehicle_id, m.sent_at, m.body.consent.telemetry, m.body.consent.location, m.body.consent.profiling)
        for m in messages
        if isinstance(m.body, StatusV1) and m.body.consent is not None
    ]
    if history:
        cur.executemany(
            "INSERT INTO consent_history (vehicle_id, at, telemetry, location, profiling)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            history,
        )
    for m in sorted(wills, key=lambda w: w.seq):
        assert isinstance(m.body, StatusV1)
        cur.execute(
            "UPDATE vehicles SET status = 'offline', status_at = %s WHERE vehicle_id = %s AND boot_id = %s",
            (m.sent_at, m.vehicle_id, m.body.boot_id),
        )


def _store_feedback(cur: psycopg.Cursor[tuple[object, ...]], messages: Sequence[Message]) -> None:
    rows = []
    for m in messages:
        b = m.body
        assert isinstance(b, FeedbackV1)
        rows.append((m.vehicle_id, m.seq, b.push_id, b.campaign_id, b.action.value, b.at))
    cur.executemany(
        "INSERT INTO push_feedback (vehicle_id, seq, push_id, campaign_id, action, at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        rows,
    )


_WRITERS = {
    TripSummaryV1.SCHEMA: _store_trips,
    EventsV1.SCHEMA: _store_events,
    TelemetryV1.SCHEMA: _store_telemetry,
    StatusV1.SCHEMA: _store_status,
    DtcV1.SCHEMA: _store_dtcs,
    FeedbackV1.SCHEMA: _store_feedback,
}


def store_batch(
    conn: psycopg.Connection[tuple[object, ...]],
    messages: Sequence[Message],
    rejected: Sequence[Rejected] = (),
    *,
    before_telemetry: Callable[[psycopg.Connection[tuple[object, ...]], set[date]], None] | None = None,
) -> StoreResult:
    """Store a batch in one transaction; messages already in the ledger are counted as duplicates.

    ``before_telemetry`` sees the batch's telemetry days first (the worker creates their partitions).
    """
    with conn.transaction(), conn.cursor() as cur:
        fresh, conflicts = _claim(cur, messages)
        rejected = [
            *rejected,
            *(
                Rejected(
                    str(m.topic),
                    IngestReason.CONFLICTING_RESEND.value,
                    f"({m.vehicle_id}, {m.seq}) is stored with other content; the first version is kept",
                    m.payload,
                )
                for m in conflicts
            ),
        ]
        if fresh and before_telemetry is not None:
            days = telemetry_days(fresh)
            if days:
                before_telemetry(conn, days)
        if fresh:
            _upsert_vehicles(cur, fresh)
            by_schema: dict[str, list[Message]] = {}
            for m in fresh:
                by_schema.setdefault(m.schema, []).append(m)
            for schema, group in by_schema.items():
                _WRITERS[schema](cur, group)
        store_dead_letters(cur, rejected)
        if fresh:  # last: its row locks are contended between workers (see cloud/ingest/latest.py)
            upsert_latest(cur, fold_latest(fresh))
    dropped: Counter[str] = Counter()
    for m in fresh:
        dropped.update(m.dropped)
    return StoreResult(
        stored=len(fresh),
        duplicates=len(messages) - len(fresh) - len(conflicts),
        dead_letters=len(rejected),
        dead_reasons=count_reasons(rejected),
        dropped_samples=dict(dropped),
    )
