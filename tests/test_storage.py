"""Telemetry storage: dialect choice, day partitions, retention, the wide row layout."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from cloud.db.migrate import database_dialect, migrate, shipped_migrations
from cloud.db.partitions import drop_expired, ensure_day, ensure_partitions, partition_name
from cloud.db.telemetry import COPY_COLUMNS
from cloud.ingest.store import store_batch
from edge_agent.protocol import TelemetryV1, decode, encode, uplink_topic
from tests.helpers import scratch_database, timescaledb_missing


@pytest.fixture(autouse=True)
def _plain_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the plain-PostgreSQL dialect (partitions, rollup tables) on any server; the
    TimescaleDB side is checked by the parity test, which forces that dialect for its own database."""
    monkeypatch.setenv("DRIVESIGHT_DB_DIALECT", "postgres")


def _telemetry(vehicle: str, seq: int, t0: datetime, n: int = 5) -> object:
    body = TelemetryV1(
        t0=t0,
        t_ms=[i * 1000 for i in range(n)],
        signals={
            "Vehicle.Speed": [50.0 + i for i in range(n)],
            "Vehicle.CurrentLocation.Latitude": [31.2] * n,
            "Vehicle.Body.Horn.IsActive": [1.0 if i == 2 else None for i in range(n)],  # no column: extra
        },
    )
    return decode(uplink_topic(vehicle, "telemetry"), encode(vehicle, seq, body, compress=True))


def test_each_dialect_gets_its_own_variant() -> None:
    plain = {m.version: m.name for m in shipped_migrations("postgres")}
    timescale = {m.version: m.name for m in shipped_migrations("timescaledb")}
    assert plain.keys() == timescale.keys()
    assert plain["0006"] == "0006_telemetry_wide.postgres.sql"
    assert timescale["0006"] == "0006_telemetry_wide.timescaledb.sql"
    assert plain["0001"] == timescale["0001"] == "0001_initial.sql"


def test_rows_land_in_their_day_and_the_default_is_drained(fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        assert database_dialect(conn) == "postgres"
        early = datetime(2025, 3, 10, 23, 59, 58, tzinfo=UTC)  # crosses midnight: two days
        store_batch(conn, [_telemetry("car1", 1, early)])  # no partition for those days yet: default
        assert conn.execute("SELECT count(*) FROM telemetry_default").fetchone() == (5,)
        assert ensure_day(conn, date(2025, 3, 10)) and ensure_day(conn, date(2025, 3, 11))
        assert not ensure_day(conn, date(2025, 3, 10))  # already there
        assert conn.execute("SELECT count(*) FROM telemetry_default").fetchone() == (0,)
        per_partition = dict(
            conn.execute("SELECT tableoid::regclass::text, count(*) FROM telemetry GROUP BY 1").fetchall()
        )
        assert per_partition == {partition_name(date(2025, 3, 10)): 2, partition_name(date(2025, 3, 11)): 3}
        rows = conn.execute("SELECT speed_kmh, lat, extra FROM telemetry ORDER BY time").fetchall()
        assert [r[0] for r in rows] == [50.0, 51.0, 52.0, 53.0, 54.0]
        assert rows[0][1] == pytest.approx(31.2)
        assert [r[2] for r in rows] == [None, None, {"Vehicle.Body.Horn.IsActive": 1.0}, None, None]


def test_partitions_are_made_ahead_and_dropped_by_retention(fresh_database: str) -> None:
    today = date(2027, 1, 15)  # not the real today, around which migrate() already made partitions
    created = ensure_partitions(fresh_database, today=today)
    assert (
        partition_name(today + timedelta(days=7)) in created
        and partition_name(today - timedelta(days=2)) in created
    )
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        store_batch(conn, [_telemetry("car1", 1, datetime(2027, 1, 14, 8, tzinfo=UTC))])
    dropped = drop_expired(fresh_database, keep_days=1, today=today)
    assert partition_name(today - timedelta(days=2)) in dropped
    assert partition_name(today - timedelta(days=1)) not in dropped
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (5,)  # yesterday is kept
    assert drop_expired(fresh_database, keep_days=0, today=today) == [
        partition_name(today - timedelta(days=1))
    ]


def test_timescaledb_dialect_gives_the_same_results(
    admin_database_url: str, fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = timescaledb_missing(admin_database_url)
    if reason:
        pytest.skip(reason)
    from cloud.db.rollups import refresh

    with scratch_database(admin_database_url, "drivesight_ts") as timescale:
        monkeypatch.setenv("DRIVESIGHT_DB_DIALECT", "timescaledb")
        migrate(timescale)
        day1 = datetime(2026, 11, 2, 8, tzinfo=UTC)
        batches = [
            [_wide("car1", 1, day1, 50.0), _wide("car2", 1, day1, 100.0)],
            [
                _wide("car1", 2, day1 + timedelta(days=1), 70.0),
                _wide("car1", 3, day1 + timedelta(hours=3), 90.0),
            ],
        ]
        results = []
        for url in (fresh_database, timescale):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, model) VALUES"
                    " ('car1', now(), now(), 'DS-SUV'), ('car2', now(), now(), 'DS-EV5')"
                )
                for batch in batches:
                    store_batch(conn, batch)
            refresh(url)
            with psycopg.connect(url) as conn:
                hypertables = conn.execute(
                    "SELECT to_regclass('timescaledb_information.hypertables')"
                ).fetchone()
                results.append(
                    (
                        conn.execute(ROLLUP).fetchall(),
                        conn.execute(
                            "SELECT day, model, vehicles, rows, round(avg_speed_kmh::numeric, 6)"
                            " FROM model_daily ORDER BY day, model"
                        ).fetchall(),
                        conn.execute(FULL_RECOMPUTE).fetchall(),
                        conn.execute(HOURLY).fetchall(),
                        conn.execute(
                            "SELECT vehicle_id, time, speed_kmh, odometer_km FROM telemetry_latest ORDER BY 1"
                        ).fetchall(),
                        hypertables != (None,),
                    )
                )
        plain, ts = results
        assert ts[-1] and not plain[-1]  # really two dialects
        assert plain[:-1] == ts[:-1] and len(plain[0]) == 3 and len(plain[3]) == 4
        with psycopg.connect(timescale) as conn:
            assert database_dialect(conn) == "timescaledb"
            names = conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall()
            assert ("telemetry",) in names


def test_numpy_copy_stream_stores_what_the_row_path_stores(fresh_database: str) -> None:
    from cloud.ingest.copy_binary import copy_stream
    from cloud.ingest.store import _store_telemetry_rows

    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    full = {
        "Vehicle.Speed": [50.25, 0.0, 130.5],
        "Vehicle.TraveledDistance": [12345.678901, 12345.679, 12345.7],
        "Vehicle.CurrentLocation.Latitude": [31.23456789, -89.9, 0.0],
        "Vehicle.LowVoltageBattery.CurrentVoltage": [14.2, 14.1, 13.9],
    }  # fmt: skip
    messages = [
        decode(
            uplink_topic(v, "telemetry"), encode(v, 1, TelemetryV1(t0=t0, t_ms=[0, 100, 2500], signals=full))
        )
        for v in ("car-a", "a-much-longer-vehicle-identifier-0001")
    ]
    stream, left = copy_stream(messages)
    assert left == []
    columns = "time, vehicle_id, speed_kmh, odometer_km, lat, battery_v, engine_rpm, extra"
    with psycopg.connect(fresh_database) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY telemetry ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(stream)
            fast = conn.execute(f"SELECT {columns} FROM telemetry ORDER BY vehicle_id, time").fetchall()
            conn.execute("DELETE FROM telemetry")
            _store_telemetry_rows(cur, messages)
            slow = conn.execute(f"SELECT {columns} FROM telemetry ORDER BY vehicle_id, time").fetchall()
        conn.rollback()
    assert fast == slow and len(fast) == 6
    assert fast[0][0] == t0 and fast[2][0] == t0 + timedelta(milliseconds=2500)
    assert fast[0][3] == 12345.678901 and fast[0][6] is None  # float8 exact; an absent signal is NULL
    _, gaps = copy_stream([_telemetry("car-b", 2, t0)])  # a None in a column, a signal without a column
    assert len(gaps) == 1


def _wide(vehicle: str, seq: int, t0: datetime, speed: float, n: int = 60) -> object:
    body = TelemetryV1(
        t0=t0,
        t_ms=[i * 1000 for i in range(n)],
        signals={
            "Vehicle.Speed": [speed] * n,
            "Vehicle.TraveledDistance": [1000 + i * speed / 3600 for i in range(n)],
        },
    )
    return decode(uplink_topic(vehicle, "telemetry"), encode(vehicle, seq, body))


FULL_RECOMPUTE = """
SELECT vehicle_id, date_bin('1 day', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day, count(*),
       round(avg(speed_kmh)::numeric, 6), max(speed_kmh),
       round((max(odometer_km) - min(odometer_km))::numeric, 6)
FROM telemetry GROUP BY 1, 2 ORDER BY 1, 2
"""
ROLLUP = """
SELECT vehicle_id, day, rows, round(avg_speed_kmh::numeric, 6), max_speed_kmh, round(distance_km::numeric, 6)
FROM telemetry_daily ORDER BY 1, 2
"""


def test_incremental_rollup_equals_a_full_recompute(fresh_database: str) -> None:
    from cloud.db.rollups import refresh

    day1 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    day2 = day1 + timedelta(days=1)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("INSERT INTO vehicles (vehicle_id, first_seen, last_seen, model) VALUES"
                     " ('car1', now(), now(), 'DS-SUV'), ('car2', now(), now(), 'DS-SUV')")  # fmt: skip
        store_batch(conn, [_wide("car1", 1, day1, 50.0), _wide("car2", 1, day1, 100.0)])
        assert refresh(fresh_database) == 1
        assert conn.execute(ROLLUP).fetchall() == conn.execute(FULL_RECOMPUTE).fetchall()
        store_batch(conn, [_wide("car1", 2, day2, 70.0)])
        store_batch(conn, [_wide("car1", 3, day1 + timedelta(hours=3), 90.0)])  # late data for a done day
        assert refresh(fresh_database) == 2  # exactly the two touched days
        assert refresh(fresh_database) == 0
        rollup = conn.execute(ROLLUP).fetchall()
        assert rollup == conn.execute(FULL_RECOMPUTE).fetchall() and len(rollup) == 3
        model = conn.execute(
            "SELECT model, vehicles, rows, round(avg_speed_kmh::numeric, 3) FROM model_daily WHERE day = %s",
            (datetime(2026, 11, 2, tzinfo=UTC),),
        ).fetchone()
        assert model == ("DS-SUV", 2, 180, pytest.approx(80.0))  # (60*50 + 60*90 + 60*100) / 180


def test_consent_history_keeps_every_reported_choice(fresh_database: str) -> None:
    from edge_agent.protocol import ConsentState, StatusV1

    t = datetime(2026, 11, 2, 8, tzinfo=UTC)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for seq, profiling in ((1, True), (2, False)):
            body = StatusV1(
                state="online", agent_version="1", consent=ConsentState(telemetry=True, profiling=profiling)
            )
            message = decode(
                uplink_topic("car1", "status"), encode("car1", seq, body, sent_at=t + timedelta(hours=seq))
            )
            store_batch(conn, [message])
        rows = conn.execute(
            "SELECT telemetry, location, profiling FROM consent_history ORDER BY at"
        ).fetchall()
        assert rows == [(True, False, True), (True, False, False)]


HOURLY_RECOMPUTE = """
SELECT vehicle_id, date_bin('1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'), count(*),
       round(avg(speed_kmh)::numeric, 6), max(speed_kmh),
       round((max(odometer_km) - min(odometer_km))::numeric, 6)
FROM telemetry GROUP BY 1, 2 ORDER BY 1, 2
"""
HOURLY = """
SELECT vehicle_id, hour, rows, round(avg_speed_kmh::numeric, 6), max_speed_kmh, round(distance_km::numeric, 6)
FROM telemetry_hourly ORDER BY 1, 2
"""


def test_hourly_downsampling_equals_a_full_recompute(fresh_database: str) -> None:
    from cloud.db.rollups import refresh

    day1 = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        store_batch(conn, [_wide("car1", 1, day1, 50.0, n=3600), _wide("car2", 1, day1, 100.0)])
        refresh(fresh_database)
        store_batch(conn, [_wide("car1", 2, day1 + timedelta(hours=5), 70.0)])
        store_batch(conn, [_wide("car1", 3, day1 + timedelta(minutes=10), 90.0)])  # late, into a done hour
        assert refresh(fresh_database) == 1
        hourly = conn.execute(HOURLY).fetchall()
        assert hourly == conn.execute(HOURLY_RECOMPUTE).fetchall()
        # car1's first message spans 08:30-09:30 (two hours), plus 13:30; car2 one hour
        assert [(r[0], r[1].hour, r[2]) for r in hourly] == [
            ("car1", 8, 1800 + 60), ("car1", 9, 1800), ("car1", 13, 60), ("car2", 8, 60)
        ]  # fmt: skip


def _signals(vehicle: str, seq: int, t0: datetime, signals: dict[str, list[float | None]]) -> object:
    n = len(next(iter(signals.values())))
    body = TelemetryV1(t0=t0, t_ms=[i * 1000 for i in range(n)], signals=signals)
    return decode(uplink_topic(vehicle, "telemetry"), encode(vehicle, seq, body))


def test_latest_values_per_vehicle_merge_newest_first(fresh_database: str) -> None:
    t = datetime(2026, 11, 2, 8, tzinfo=UTC)
    latest = "SELECT time, speed_kmh, lat, soc_pct, extra FROM telemetry_latest WHERE vehicle_id = %s"
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        speed, lat, soc = (
            "Vehicle.Speed",
            "Vehicle.CurrentLocation.Latitude",
            "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed",
        )
        store_batch(
            conn,
            [
                _signals("car1", 2, t + timedelta(minutes=1), {speed: [60.0, None]}),
                _signals("car1", 1, t, {speed: [40.0, 50.0], lat: [31.0, 31.5]}),
                _signals("car2", 1, t, {speed: [10.0, 11.0]}),
            ],
        )
        # in one batch: newest time; speed from the newer message's last sample; latitude from the older one
        assert conn.execute(latest, ("car1",)).fetchone() == (
            t + timedelta(minutes=1, seconds=1),
            60.0,
            31.5,
            None,
            None,
        )
        store_batch(  # late: older than what is stored; fills only what is missing
            conn,
            [_signals("car1", 3, t - timedelta(hours=1), {speed: [1.0], soc: [80.0]})],
        )
        assert conn.execute(latest, ("car1",)).fetchone() == (
            t + timedelta(minutes=1, seconds=1),
            60.0,
            31.5,
            80.0,
            None,
        )
        store_batch(conn, [_telemetry("car1", 4, t + timedelta(hours=1))])  # newer, with an extra signal
        row = conn.execute(latest, ("car1",)).fetchone()
        assert row == (
            t + timedelta(hours=1, seconds=4),
            54.0,
            pytest.approx(31.2),
            80.0,
            {"Vehicle.Body.Horn.IsActive": 1.0},
        )
        assert conn.execute(latest, ("car2",)).fetchone() == (
            t + timedelta(seconds=1),
            11.0,
            None,
            None,
            None,
        )
        before = conn.execute("SELECT * FROM telemetry_latest ORDER BY vehicle_id").fetchall()
        store_batch(conn, [_signals("car2", 1, t, {"Vehicle.Speed": [99.0]})])  # a redelivery changes nothing
        assert conn.execute("SELECT * FROM telemetry_latest ORDER BY vehicle_id").fetchall() == before
