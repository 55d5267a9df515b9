"""Ingest throughput: telemetry through the real broker into PostgreSQL, against raw COPY and a naive worker,
and again with hostile messages mixed in.

Many simulated vehicles publish telemetry batches (one minute at 10 Hz: 600 rows of 10 signals, all within
their plausible ranges, compressed, as the edge sends them) with QoS 1 to a private mosquitto with deploy/'s
queue limits; ``--workers`` ingest processes (``python -m tests.ingest_child``) on a shared subscription store
them. Works on both database dialects (plain PostgreSQL with daily partitions, TimescaleDB with daily chunks).
Runs with and without poison alternate (``--repeat`` of each, every one into a fresh database through a fresh
broker; the medians are reported, the single runs' rates too: one run varies by +-30% on a shared machine).
Printed as one JSON line, all measured in this run:

- ``dialect``: the benchmark database's dialect (``postgres`` or ``timescaledb``);
- ``rows_per_s`` / ``points_per_s``: rows (and non-empty signal values) stored per second, from the first
  publish until the last row is committed;
- ``copy_rows_per_s``: the same rows written by one binary COPY (stream prepared beforehand) into a table of
  the same shape (partitioned by day on PostgreSQL, a hypertable with daily chunks on TimescaleDB, same
  indexes) — what the database itself can take;
- ``naive_rows_per_s``: a worker that decodes each message and INSERTs its rows one by one, committing per
  message (on a sample of the messages), into a table of the same shape;
- ``rows_per_s_with_poison``: the same good messages with ``round(messages * --poison-share)`` hostile
  payloads of issue 11 (``tests.hostile``: those that must be dead-lettered and fit the broker's size limit,
  taken in turn) interleaved at seeded random positions; good rows stored per second from the first publish
  until every good row is stored and every hostile payload has a dead letter. ``poison_messages``,
  ``poison_dead_letters`` (dead-letter rows) and ``poison_drop`` (1 - with poison / without) go with it;
- ``lost`` and ``duplicated`` (and ``*_with_poison``): good rows expected but not stored, and rows stored
  twice, by counting.

    python tests/benchmarks/ingest.py                          # 1,000 messages = 600,000 rows
    python tests/benchmarks/ingest.py --messages 100 --vehicles 20       # smoke size
    python tests/benchmarks/ingest.py --admin-url postgresql://postgres@127.0.0.1:5433/postgres  # TimescaleDB

Targets (issues 5 and 11): ingest >= 0.5 of raw COPY (``share_of_copy``), >= 10x the naive worker
(``vs_naive``), with 1% poison the throughput drops by at most 20% (``poison_drop`` <= 0.2), 0 lost,
0 duplicated (in both runs).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.db.migrate import database_dialect, migrate
from cloud.db.partitions import ensure_day
from cloud.db.telemetry import COLUMNS, COPY_COLUMNS
from cloud.ingest.copy_binary import copy_stream
from edge_agent import signals as vss
from edge_agent.protocol import TelemetryV1, decode, encode, uplink_topic
from edge_agent.protocol import vss as vss_bounds
from tests.helpers import PrivateBroker, deploy_queue_limits, scratch_database
from tests.hostile import hostile_payloads

ROWS_PER_MESSAGE = 600
SIGNALS = (
    vss.SPEED, vss.ACCEL_LONGITUDINAL, vss.ACCEL_LATERAL, vss.YAW_RATE, vss.ENGINE_SPEED, vss.FUEL_LEVEL,
    vss.ODOMETER, vss.LATITUDE, vss.LONGITUDE, vss.BATTERY_VOLTAGE,
)  # fmt: skip
T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


def _plausible(signal: str, noise: np.ndarray) -> list[float]:
    """Samples around 60 (or the middle of the signal's plausible range when 60 is near its edge), all within
    the range: the ingest drops implausible samples, and a message with gaps leaves the COPY path."""
    bounds = vss_bounds.plausible_range(signal)
    spread = min(10.0, (bounds.high - bounds.low) / 10)
    inside = bounds.low + 5 * spread <= 60 <= bounds.high - 5 * spread
    centre = 60.0 if inside else (bounds.low + bounds.high) / 2
    return np.clip(np.round(centre + spread * noise, 3), bounds.low, bounds.high).tolist()


def make_messages(
    vehicles: int, messages: int, seed: int, prefix: str, rows_per_message: int = ROWS_PER_MESSAGE
) -> list[tuple[str, bytes]]:
    """Encoded telemetry messages of ``rows_per_message`` rows each: vehicle i's batches follow each other in
    time."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(messages):
        vehicle = f"{prefix}{k % vehicles:04d}"
        t0 = T0 + timedelta(minutes=k // vehicles)
        base = rng.normal(0, 1, (len(SIGNALS), rows_per_message))
        body = TelemetryV1(
            t0=t0,
            t_ms=list(range(0, rows_per_message * 100, 100)),
            signals={name: _plausible(name, base[i]) for i, name in enumerate(SIGNALS)},
        )
        out.append((uplink_topic(vehicle, "telemetry"), encode(vehicle, k + 1, body, compress=True)))
    return out


def broker_size_limit() -> int | None:
    """The largest payload deploy/'s broker passes: ``max_packet_size`` less room for the packet's header and
    topic (a larger packet gets its sender disconnected and never reaches the ingest)."""
    m = re.search(r"^max_packet_size\s+(\d+)", deploy_queue_limits(), re.MULTILINE)
    return int(m.group(1)) - 1024 if m and int(m.group(1)) else None


def with_poison(
    messages: list[tuple[str, bytes]], share: float, seed: int, vehicles: int, prefix: str
) -> tuple[list[tuple[str, bytes]], int]:
    """``messages`` with ``round(len(messages) * share)`` hostile payloads at seeded random positions.

    The hostile payloads are issue 11's that must be dead-lettered (and that the broker lets through), taken
    in turn, on the benchmark's own vehicles with seqs far above the good ones'."""
    wanted = round(len(messages) * share)
    limit = broker_size_limit()
    now = datetime.now(UTC)
    hostile: list[tuple[str, bytes]] = []
    cycle = 0
    while len(hostile) < wanted:
        vehicle = f"{prefix}{cycle % vehicles:04d}"
        for p in hostile_payloads(vehicle, 1_000_000 + 100 * cycle, now):
            if p.reason is not None and (limit is None or len(p.payload) <= limit):
                hostile.append((p.topic, p.payload))
        cycle += 1
    hostile = hostile[:wanted]
    rng = np.random.default_rng(seed + 1)
    total = len(messages) + len(hostile)
    at = set(rng.choice(total, size=len(hostile), replace=False).tolist())
    good, bad = iter(messages), iter(hostile)
    return [next(bad) if i in at else next(good) for i in range(total)], len(hostile)


def _publish(args: tuple[str, int, list[tuple[str, bytes]]]) -> int:
    host, port, messages = args
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(200)
    client.connect(host, port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()
    return len(infos)


def count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0


def prepare(url: str) -> str:
    """Migrate the database and return its dialect; on plain PostgreSQL the benchmark day's partition exists
    before the clock starts, as in the fleet (TimescaleDB makes its chunks itself)."""
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        dialect = database_dialect(conn)
        if dialect == "postgres":
            ensure_day(conn, T0.date())
    return dialect


def through_the_broker(
    url: str, messages: list[tuple[str, bytes]], workers: int, *, rows: int, dead_letters: int = 0
) -> float:
    """Seconds from the first publish until ``rows`` telemetry rows and ``dead_letters`` dead letters are
    stored, through a fresh private broker with ``workers`` ingest processes."""
    with tempfile.TemporaryDirectory() as tmp:
        broker = PrivateBroker(Path(tmp), deploy_limits=True)
        broker.start()
        try:
            return _through(url, broker, messages, workers, rows, dead_letters)
        finally:
            broker.stop()


def _through(
    url: str, broker: PrivateBroker, messages: list[tuple[str, bytes]], workers: int, rows: int, dead: int
) -> float:
    group = f"bench-{uuid.uuid4().hex[:6]}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.ingest_child", url, broker.url, group, f"{group}-{i}"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        for i in range(workers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "subscribed"
        publishers = min(4, len(messages))
        parts = [
            (broker.url.split("//")[1].split(":")[0], broker.port, messages[i::publishers])
            for i in range(publishers)
        ]
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(publishers) as pool:
            pool.map(_publish, parts)
        with psycopg.connect(url, autocommit=True) as conn:

            def done() -> bool:
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM telemetry), (SELECT count(*) FROM dead_letters)"
                ).fetchone()
                return row is not None and row[0] >= rows and row[1] >= dead

            while not done():
                if time.perf_counter() - start > 600:
                    break
                time.sleep(0.05)
        return time.perf_counter() - start
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def _same_shape(conn: psycopg.Connection[tuple[object, ...]], table: str) -> None:
    """A table shaped like ``telemetry``: partitioned by day with the benchmark day's partition (plain
    PostgreSQL), or a hypertable with daily chunks (TimescaleDB); same indexes."""
    ident = sql.Identifier(table)
    if database_dialect(conn) == "timescaledb":
        conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE telemetry INCLUDING DEFAULTS INCLUDING INDEXES)").format(ident)
        )
        conn.execute(  # the indexes come from telemetry (LIKE): no default ones on top
            "SELECT create_hypertable(%s, 'time', chunk_time_interval => INTERVAL '1 day',"
            " create_default_indexes => false)",
            (table,),
        )
        return
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (LIKE telemetry INCLUDING DEFAULTS INCLUDING INDEXES) PARTITION BY RANGE (time)"
        ).format(ident)
    )
    day = datetime(T0.year, T0.month, T0.day, tzinfo=UTC)
    conn.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(f"{table}_p"), ident, sql.Literal(day), sql.Literal(day + timedelta(days=1))
        )
    )


def raw_copy(url: str, messages: list[tuple[str, bytes]], table: str = "copy_target") -> float:
    """Seconds for one binary COPY of the same rows (stream prepared beforehand) into a new table shaped
    like ``telemetry``: what the database itself can take."""
    stream, left = copy_stream([decode(t, p) for t, p in messages])
    assert not left
    with psycopg.connect(url) as conn:
        _same_shape(conn, table)
        conn.commit()
        start = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY {table} ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(stream)
        conn.commit()
        return time.perf_counter() - start


def naive(url: str, messages: list[tuple[str, bytes]]) -> float:
    """Seconds for a per-message worker: decode, INSERT row by row, commit each message."""
    names = [c for c, _t in COLUMNS.values()]
    slots = list(COLUMNS)
    insert = sql.SQL("INSERT INTO naive_target (time, vehicle_id, {}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join([sql.Placeholder()] * (len(names) + 2)),
    )
    with psycopg.connect(url) as conn:
        _same_shape(conn, "naive_target")
        conn.commit()
        start = time.perf_counter()
        for topic, payload in messages:
            m = decode(topic, payload)
            b = m.body
            assert isinstance(b, TelemetryV1)
            for i, ms in enumerate(b.t_ms):
                values = [b.signals[s][i] if s in b.signals else None for s in slots]
                conn.execute(insert, (b.t0 + timedelta(milliseconds=ms), m.vehicle_id, *values))
            conn.commit()
        return time.perf_counter() - start


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run through the broker into a fresh database."""

    seconds: float
    stored: int  # telemetry rows
    distinct: int  # distinct (vehicle, time) telemetry rows
    dead_letters: int


def timed_run(admin_url: str, messages: list[tuple[str, bytes]], workers: int, rows: int, dead: int) -> Run:
    """``messages`` through a fresh broker into a fresh database: timed until ``rows`` telemetry rows and
    ``dead`` dead letters are stored."""
    with scratch_database(admin_url, "drivesight_bench") as url:
        prepare(url)
        seconds = through_the_broker(url, messages, workers, rows=rows, dead_letters=dead)
        return Run(
            seconds,
            count(url, "SELECT count(*) FROM telemetry"),
            count(url, "SELECT count(*) FROM (SELECT DISTINCT vehicle_id, time FROM telemetry) d"),
            count(url, "SELECT count(*) FROM dead_letters"),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--naive-messages", type=int, default=20)
    parser.add_argument("--poison-share", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3, help="runs with and without poison, alternating")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--rows-per-message",
        type=int,
        default=ROWS_PER_MESSAGE,
        help="600: a 10 Hz minute; 60: the edge's default batch (1 s period, 60 s batches)",
    )
    args = parser.parse_args()
    per_message = args.rows_per_message
    messages = make_messages(args.vehicles, args.messages, args.seed, "b", per_message)
    rows = len(messages) * per_message
    points = sum(len(SIGNALS) * per_message for _ in messages)
    poisoned, poison = with_poison(messages, args.poison_share, args.seed, args.vehicles, "b")
    clean: list[Run] = []
    dirty: list[Run] = []
    for _ in range(args.repeat):
        clean.append(timed_run(args.admin_url, messages, args.workers, rows, 0))
        dirty.append(timed_run(args.admin_url, poisoned, args.workers, rows, poison))
    with scratch_database(args.admin_url, "drivesight_bench") as url:
        dialect = prepare(url)
        # the median of as many COPYs as ingest runs: the denominator is as noisy as the numerator
        copy_s = statistics.median(raw_copy(url, messages, f"copy_target_{i}") for i in range(args.repeat))
        naive_s = naive(url, messages[: args.naive_messages])
    elapsed = statistics.median(r.seconds for r in clean)
    rows_per_s = rows / elapsed
    copy_rows_per_s = rows / copy_s
    naive_rows_per_s = args.naive_messages * per_message / naive_s
    with_poison_rows_per_s = rows / statistics.median(r.seconds for r in dirty)
    result = {
        "dialect": dialect,
        "messages": len(messages),
        "rows": rows,
        "rows_per_message": per_message,
        "workers": args.workers,
        "repeat": args.repeat,
        "rows_per_s": round(rows_per_s),
        "points_per_s": round(points / elapsed),
        "copy_rows_per_s": round(copy_rows_per_s),
        "naive_rows_per_s": round(naive_rows_per_s),
        "share_of_copy": round(rows_per_s / copy_rows_per_s, 3),
        "vs_naive": round(rows_per_s / naive_rows_per_s, 1),
        "lost": max(rows - r.distinct for r in clean),
        "duplicated": max(r.stored - r.distinct for r in clean),
        "poison_share": args.poison_share,
        "poison_messages": poison,
        "poison_dead_letters": min(r.dead_letters for r in dirty),
        "rows_per_s_with_poison": round(with_poison_rows_per_s),
        "poison_drop": round(1 - with_poison_rows_per_s / rows_per_s, 3),
        "lost_with_poison": max(rows - r.distinct for r in dirty),
        "duplicated_with_poison": max(r.stored - r.distinct for r in dirty),
        "rows_per_s_runs": [round(rows / r.seconds) for r in clean],
        "rows_per_s_with_poison_runs": [round(rows / r.seconds) for r in dirty],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
