"""Retention per stream: the policy file, its rules, and applying it to every stream."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from cloud.db.migrate import database_dialect, migrate
from cloud.db.partitions import ensure_day, partition_name
from cloud.db.retention import DEFAULT_KEEP_DAYS, STREAMS, RetentionError, RetentionPolicy, apply_retention
from cloud.db.rollups import refresh
from cloud.ingest.store import store_batch
from edge_agent.protocol import (
    DrivingEvent,
    DtcRecord,
    DtcV1,
    EventKind,
    EventsV1,
    FeedbackV1,
    PushAction,
    TelemetryV1,
    TripSummaryV1,
    decode,
    encode,
    uplink_topic,
)
from tests.helpers import count, scratch_database, timescaledb_missing

TODAY = date(2027, 3, 1)


@pytest.fixture(autouse=True)
def _plain_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the plain-PostgreSQL dialect (partitions, rollup tables) on any server; the
    TimescaleDB side is checked by the parity test, which forces that dialect for its own database."""
    monkeypatch.setenv("DRIVESIGHT_DB_DIALECT", "postgres")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_policy_file_names_streams_in_days_or_forever(tmp_path: Path) -> None:
    policy = RetentionPolicy.from_file(
        _write(
            tmp_path / "r.toml", '[keep_days]\ntelemetry = 30\ntrips = 365\ntelemetry_hourly = "forever"\n'
        )
    )
    assert policy.keep_days["telemetry"] == 30 and policy.keep_days["trips"] == 365
    assert policy.keep_days["telemetry_hourly"] is None
    assert policy.keep_days["dead_letters"] == DEFAULT_KEEP_DAYS["dead_letters"]  # not named: the default
    assert policy.keep_days.keys() == STREAMS.keys()
    assert policy.cutoff("trips", TODAY) == datetime(2026, 3, 1, tzinfo=UTC)
    assert policy.cutoff("telemetry_hourly", TODAY) is None
    overridden = RetentionPolicy.from_file(tmp_path / "r.toml", telemetry_days=7)
    assert overridden.keep_days["telemetry"] == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[keep_days]\ntelemetri = 3\n", "unknown stream(s) telemetri"),
        ("[keep_days]\ntrips = 0\n", "trips: keep a whole number of days >= 1"),
        ("[keep_days]\ntrips = 1.5\n", "trips = 1.5; use a number of days"),
        ('[keep_days]\ntrips = "always"\n', "trips = 'always'"),
        ("[keep_days]\ntelemetry = 100\ntelemetry_daily = 50\n", "telemetry_daily is kept 50 days but raw"),
        ('[keep_days]\ntelemetry = "forever"\ntelemetry_hourly = 50\n', "raw telemetry forever"),
        ("[keep_days]\ningested_messages = 3\n", "would be stored twice"),
        ("[keepdays]\ntrips = 3\n", "unknown table(s) keepdays"),
        ("[keep_days\n", "not valid TOML"),
    ],
)
def test_bad_policies_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path / "bad.toml", text)
    with pytest.raises(RetentionError, match=r"bad\.toml") as info:
        RetentionPolicy.from_file(path)
    assert message in str(info.value)


def _message(vehicle: str, seq: int, body: object) -> object:
    return decode(uplink_topic(vehicle, body.KIND.value), encode(vehicle, seq, body))  # type: ignore[attr-defined]


def _history_at(at: datetime, seq: int) -> list[object]:
    """A trip, an event, a DTC, a feedback and an hour of telemetry, all at ``at``."""
    trip = TripSummaryV1(
        trip_id=f"T{seq}", started_at=at, ended_at=at + timedelta(minutes=10), distance_km=5.0,
        duration_s=600, moving_s=550, idle_s=50, max_speed_kmh=60, avg_speed_kmh=30, night_share=0,
        samples=6000,
    )  # fmt: skip
    event = DrivingEvent(
        trip_id=f"T{seq}", kind=EventKind.HARSH_BRAKE, start=at, end=at + timedelta(seconds=1), peak=4.0,
        peak_unit="m/s^2",
    )  # fmt: skip
    events = EventsV1(events=[event])
    dtc = DtcV1(codes=[DtcRecord(code="P0301", first_seen=at)])
    feedback = FeedbackV1(push_id="p1", action=PushAction.DELIVERED, at=at)
    telemetry = TelemetryV1(
        t0=at, t_ms=[i * 60_000 for i in range(60)], signals={"Vehicle.Speed": [50.0] * 60}
    )
    return [_message("car1", seq * 10 + i, b) for i, b in enumerate((trip, events, dtc, feedback, telemetry))]


def test_apply_removes_exactly_what_is_older_than_each_streams_cutoff(fresh_database: str) -> None:
    old = datetime(2026, 12, 1, 8, tzinfo=UTC)  # 90 days before TODAY
    recent = datetime(2027, 2, 20, 8, tzinfo=UTC)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for at in (old, recent):
            ensure_day(conn, at.date())
        store_batch(conn, _history_at(old, 1) + _history_at(recent, 2))  # type: ignore[arg-type]
        refresh(fresh_database)
        conn.execute(  # as if received then (seq 10-14 are the old messages)
            "UPDATE ingested_messages SET received_at = CASE WHEN seq < 20 THEN %s ELSE %s END", (old, recent)
        )
        conn.execute(
            "INSERT INTO dead_letters (received_at, topic, reason, detail, payload, size_bytes, sha256)"
            " VALUES (%s, 't', 'malformed', 'x', '', 0, sha256('')),"
            " (%s, 't', 'malformed', 'x', '', 0, sha256(''))",
            (old, recent),
        )
    policy = RetentionPolicy(
        {"telemetry": 30, "telemetry_hourly": 60, "trips": 60, "driving_events": 60, "dtc_reports": 60,
         "push_feedback": 60, "dead_letters": 60, "ingested_messages": 60}
    )  # fmt: skip
    done = apply_retention(fresh_database, policy, today=TODAY)
    assert done["trips"] == "1 rows deleted" and done["telemetry_daily"] == "kept forever"
    with psycopg.connect(fresh_database) as conn:  # the old day's partition is gone, the recent one kept
        assert conn.execute("SELECT to_regclass(%s)", (partition_name(old.date()),)).fetchone() == (None,)
        assert conn.execute("SELECT to_regclass(%s)", (partition_name(recent.date()),)).fetchone() != (None,)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for table, column in [
            ("trips", "ended_at"), ("driving_events", "started_at"), ("dtc_reports", "first_seen"),
            ("push_feedback", "at"), ("dead_letters", "received_at"), ("ingested_messages", "received_at"),
            ("telemetry", "time"), ("telemetry_hourly", "hour"),
        ]:  # fmt: skip
            assert (
                count(conn, f"SELECT count(*) FROM {table} WHERE {column} < %s", recent - timedelta(days=1))
                == 0
            ), table
            assert (
                count(conn, f"SELECT count(*) FROM {table} WHERE {column} >= %s", recent - timedelta(days=1))
                > 0
            ), table
        assert count(conn, "SELECT count(*) FROM telemetry_daily") == 2  # kept forever: the old day too
        cutoffs = dict(conn.execute("SELECT stream, before FROM retention_cutoffs").fetchall())
        assert cutoffs["telemetry"] == datetime(2027, 1, 30, tzinfo=UTC) and "telemetry_daily" not in cutoffs
        # late telemetry for the expired day: its rollup is kept, not replaced by the late rows alone
        daily = conn.execute("SELECT * FROM telemetry_daily ORDER BY day").fetchall()
        late = TelemetryV1(t0=old + timedelta(hours=2), t_ms=[0], signals={"Vehicle.Speed": [10.0]})
        store_batch(conn, [_message("car1", 99, late)])  # type: ignore[list-item]
    assert refresh(fresh_database) == 0
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT * FROM telemetry_daily ORDER BY day").fetchall() == daily


def test_apply_with_defaults_keeps_recent_data(fresh_database: str) -> None:
    recent = datetime(2027, 2, 20, 8, tzinfo=UTC)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        ensure_day(conn, recent.date())
        store_batch(conn, _history_at(recent, 1))  # type: ignore[arg-type]
    done = apply_retention(fresh_database, RetentionPolicy(), today=TODAY)
    assert done["trips"] == "kept forever" and done["dead_letters"] == "0 rows deleted"
    with psycopg.connect(fresh_database) as conn:
        assert count(conn, "SELECT count(*) FROM telemetry") == 60
        assert count(conn, "SELECT count(*) FROM ingested_messages") == 5


@pytest.mark.parametrize("dialect", ["postgres", "timescaledb"])
def test_rollups_outlive_raw_data_and_late_rows_do_not_shrink_them(
    admin_database_url: str, dialect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention drops the raw rows of an old day; its hourly and daily rollups stay as they were, through
    later refreshes and after late rows arrive for it (the day is flagged instead). Both dialects."""
    if dialect == "timescaledb" and (reason := timescaledb_missing(admin_database_url)):
        pytest.skip(reason)
    monkeypatch.setenv("DRIVESIGHT_DB_DIALECT", dialect)
    today = datetime.now(UTC).date()
    old = datetime(today.year, today.month, today.day, 8, tzinfo=UTC) - timedelta(days=40)
    recent = old + timedelta(days=38)
    with scratch_database(admin_database_url, "drivesight_outlive") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            assert database_dialect(conn) == dialect
            if dialect == "postgres":
                for at in (old, recent):
                    ensure_day(conn, at.date())
            store_batch(conn, _history_at(old, 1) + _history_at(recent, 2))  # type: ignore[arg-type]
        refresh(url)

        def rollups() -> list[list[tuple[object, ...]]]:
            with psycopg.connect(url) as conn:
                return [
                    conn.execute(
                        f"SELECT vehicle_id, {c}, rows, avg_speed_kmh FROM {t} ORDER BY 1, 2"
                    ).fetchall()
                    for t, c in (("telemetry_daily", "day"), ("telemetry_hourly", "hour"))
                ]

        before = rollups()
        assert [len(before[0]), len(before[1])] == [2, 2]  # two days, one hour each (60 rows a minute apart)
        done = apply_retention(url, RetentionPolicy({"telemetry": 30}), today=today)
        assert "dropped" in done["telemetry"] or "policy" in done["telemetry"]
        with psycopg.connect(url) as conn:
            assert (
                count(conn, "SELECT count(*) FROM telemetry WHERE time < %s", recent - timedelta(days=1)) == 0
            )
        refresh(url)
        assert rollups() == before  # raw rows gone, rollups kept
        with psycopg.connect(url, autocommit=True) as conn:
            late = TelemetryV1(t0=old + timedelta(minutes=30), t_ms=[0], signals={"Vehicle.Speed": [10.0]})
            store_batch(conn, [_message("car1", 99, late)])  # type: ignore[list-item]
        refresh(url)
        assert rollups() == before  # one late row does not replace an hour of 60
        with psycopg.connect(url) as conn:
            flagged = conn.execute("SELECT day, times FROM telemetry_late_days").fetchall()
        assert flagged == [(datetime(old.year, old.month, old.day, tzinfo=UTC), 1)]
