"""Hostile and good uplink payloads, shared by the ingest regression and fuzz tests and the ingest benchmark.

``hostile_payloads`` lists what a new user tried against the ingest (issue 11), each with the dead-letter
reason it must get. ``good_payloads`` are valid messages of every uplink kind. ``implausible_values`` checks
that no stored row holds a value the contract would refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from cloud.db.telemetry import COLUMNS
from edge_agent.protocol import (
    DrivingEvent,
    DtcRecord,
    DtcV1,
    EventKind,
    EventsV1,
    FeedbackV1,
    PushAction,
    StatusV1,
    TelemetryV1,
    TripSummaryV1,
    encode,
    uplink_topic,
    vss,
)
from edge_agent.protocol.bounds import TIME_FLOOR


@dataclass(frozen=True, slots=True)
class Payload:
    """A payload on a topic, and the dead-letter reason it must get (None: it must be stored)."""

    name: str
    topic: str
    payload: bytes
    reason: str | None


def _envelope(vehicle: str, seq: object, schema: str, body: object, sent_at: str | None = None) -> bytes:
    sent = sent_at or datetime.now(UTC).isoformat()
    raw = {"schema": schema, "vehicle_id": vehicle, "seq": seq, "sent_at": sent, "body": body}
    return json.dumps(raw, allow_nan=True).encode()


def _telemetry_body(t0: str, t_ms: list[int], values: dict[str, list[object]]) -> dict[str, object]:
    return {"t0": t0, "t_ms": t_ms, "signals": values}


def _trip_body(trip_id: str, start: datetime, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "trip_id": trip_id,
        "started_at": start.isoformat(),
        "ended_at": (start + timedelta(minutes=10)).isoformat(),
        "distance_km": 5.0,
        "duration_s": 600.0,
        "moving_s": 550.0,
        "idle_s": 50.0,
        "max_speed_kmh": 80.0,
        "avg_speed_kmh": 30.0,
        "night_share": 0.0,
        "samples": 6000,
    }
    body.update(overrides)
    return body


def hostile_payloads(vehicle: str, first_seq: int, now: datetime) -> list[Payload]:
    """Issue 11's hostile payloads for ``vehicle`` (seqs from ``first_seq``), each with its reason."""
    t = now - timedelta(hours=1)
    iso = t.isoformat()
    seq = iter(range(first_seq, first_seq + 100))
    telemetry_topic, trip_topic = uplink_topic(vehicle, "telemetry"), uplink_topic(vehicle, "trip")
    status_topic = uplink_topic(vehicle, "status")

    def tele(t0: str, t_ms: list[int], values: list[object], signal: str = vss.SPEED) -> bytes:
        return _envelope(vehicle, next(seq), "telemetry.v1", _telemetry_body(t0, t_ms, {signal: values}))

    return [
        Payload("nested brackets", telemetry_topic, b"[" * 100_000, "malformed"),
        Payload(
            "seq of 5,001 digits",
            trip_topic,
            b'{"schema":"trip.v1","vehicle_id":"' + vehicle.encode() + b'","seq":' + b"9" * 5001 + b"}",
            "malformed",
        ),
        Payload(
            "NUL in an object key",
            status_topic,
            _envelope(
                vehicle,
                next(seq),
                "status.v1",
                {"state": "online", "agent_version": "1", "dropped": {"a\0": 1}},
            ),
            "malformed",
        ),
        Payload(
            "telemetry in year 9999",
            telemetry_topic,
            tele("9999-12-31T23:00:00+00:00", [0], [50.0]),
            "invalid",
        ),
        Payload("t_ms of 1e17", telemetry_topic, tele(iso, [0, 10**17], [1.0, 2.0]), "invalid"),
        Payload("t_ms of 1e19", telemetry_topic, tele(iso, [0, 10**19], [1.0, 2.0]), "invalid"),
        Payload("NaN sample", telemetry_topic, tele(iso, [0], [float("nan")]), "malformed"),
        Payload("Infinity sample", telemetry_topic, tele(iso, [0], [float("inf")]), "malformed"),
        Payload("string for a number", telemetry_topic, tele(iso, [0], ["12"]), "invalid"),
        Payload(
            "trip in year 1",
            trip_topic,
            _envelope(vehicle, next(seq), "trip.v1", _trip_body("Y1", datetime(1, 1, 1, tzinfo=UTC))),
            "invalid",
        ),
        Payload(
            "trip in year 2200",
            trip_topic,
            _envelope(vehicle, next(seq), "trip.v1", _trip_body("Y2200", datetime(2200, 1, 1, tzinfo=UTC))),
            "invalid",
        ),
        Payload(
            "event count of 1e30",
            trip_topic,
            _envelope(
                vehicle, next(seq), "trip.v1", _trip_body("E30", t, event_counts={"harsh_brake": 1e30})
            ),
            "invalid",
        ),
        Payload(
            "sent_at in year 2200",
            status_topic,
            _envelope(
                vehicle,
                next(seq),
                "status.v1",
                {"state": "online", "agent_version": "1"},
                "2200-01-01T00:00:00Z",
            ),
            "invalid",
        ),
        Payload("one megabyte", trip_topic, b"{" + b" " * (1024 * 1024) + b"}", "too_large"),
        Payload(
            "usage kind", uplink_topic(vehicle, "telemetry").rsplit("/", 1)[0] + "/usage", b"{}", "bad_topic"
        ),
        Payload("not JSON", trip_topic, b"\xff\xfe garbage", "malformed"),
        # stored, with the implausible sample dropped (the rest of the row is kept)
        Payload("speed of 1e300", telemetry_topic, tele(iso, [0, 100], [1e300, 50.0]), None),
        Payload("latitude 999", telemetry_topic, tele(iso, [0], [999.0], vss.LATITUDE), None),
    ]


def good_payloads(vehicle: str, first_seq: int, now: datetime) -> list[Payload]:
    """One valid message of every uplink kind for ``vehicle``, seqs from ``first_seq``."""
    t = now - timedelta(hours=2)
    trip = TripSummaryV1(
        trip_id=f"T{first_seq}", started_at=t, ended_at=t + timedelta(minutes=10), distance_km=5.0,
        duration_s=600, moving_s=550, idle_s=50, max_speed_kmh=80, avg_speed_kmh=30, night_share=0,
        event_counts={EventKind.HARSH_BRAKE: 1}, samples=6000,
    )  # fmt: skip
    event = DrivingEvent(
        kind=EventKind.HARSH_BRAKE, trip_id=trip.trip_id, start=t, end=t + timedelta(seconds=1), peak=-5.0,
        peak_unit="m/s^2",
    )  # fmt: skip
    bodies = [
        trip,
        EventsV1(events=[event]),
        TelemetryV1(
            t0=t, t_ms=[0, 100, 200], signals={vss.SPEED: [10.0, 11.0, 12.0], vss.LATITUDE: [48.1] * 3}
        ),
        DtcV1(codes=[DtcRecord(code="P0301", first_seen=t)]),
        StatusV1(state="online", agent_version="1.0"),
        FeedbackV1(push_id="p1", action=PushAction.OPENED, at=t),
    ]
    return [
        Payload(f"good {b.SCHEMA}", uplink_topic(vehicle, b.KIND), encode(vehicle, first_seq + i, b), None)
        for i, b in enumerate(bodies)
    ]


def implausible_values(conn: psycopg.Connection[tuple[object, ...]], vehicle_like: str) -> list[str]:
    """Every stored value of matching vehicles that the contract would refuse: empty when all is plausible."""
    problems: list[str] = []
    ceiling = datetime.now(UTC) + timedelta(days=1)
    for signal, (column, _kind) in COLUMNS.items():
        bounds = vss.plausible_range(signal)
        row = conn.execute(
            f"SELECT count(*) FROM telemetry WHERE vehicle_id LIKE %s AND ({column} < %s OR {column} > %s"
            f" OR {column} = 'NaN'::float8 OR {column} IN ('Infinity', '-Infinity'))",
            (vehicle_like, bounds.low, bounds.high),
        ).fetchone()
        if row and row[0]:
            problems.append(f"telemetry.{column}: {row[0]} rows outside [{bounds.low}, {bounds.high}]")
    for table, column in (
        ("telemetry", "time"), ("trips", "started_at"), ("trips", "ended_at"),
        ("driving_events", "started_at"), ("dtc_reports", "first_seen"), ("push_feedback", "at"),
        ("ingested_messages", "sent_at"),
        ("telemetry_latest", "time"), ("vehicles", "last_seen"),
    ):  # fmt: skip
        row = conn.execute(
            f"SELECT count(*) FROM {table} WHERE vehicle_id LIKE %s AND ({column} < %s OR {column} > %s)",
            (vehicle_like, TIME_FLOOR, ceiling),
        ).fetchone()
        if row and row[0]:
            problems.append(f"{table}.{column}: {row[0]} rows outside [{TIME_FLOOR:%Y}, now + 1 day]")
    row = conn.execute(
        "SELECT count(*) FROM trips, jsonb_each_text(event_counts) e WHERE vehicle_id LIKE %s"
        " AND e.value::numeric > 1000000000",
        (vehicle_like,),
    ).fetchone()
    if row and row[0]:
        problems.append(f"trips.event_counts: {row[0]} counts over 1e9")
    return problems
