"""Ingest throughput: telemetry through the real broker into PostgreSQL, against raw COPY and a naive worker.

Many simulated vehicles publish telemetry batches (one minute at 10 Hz: 600 rows of 10 signals, compressed,
as the edge sends them) with QoS 1 to a private mosquitto with deploy/'s queue limits; ``--workers`` ingest
processes on a shared subscription store them. Printed as one JSON line, all measured in this run:

- ``rows_per_s`` / ``points_per_s``: rows (and non-empty signal values) stored per second, from the first
  publish until the last row is committed;
- ``copy_rows_per_s``: the same rows written by one binary COPY (stream prepared beforehand) into a table of
  the same shape (partitioned by day, same index) — what the database itself can take;
- ``naive_rows_per_s``: a worker that decodes each message and INSERTs its rows one by one, committing per
  message (on a sample of the messages);
- ``lost`` and ``duplicated``: rows expected but not stored, and rows stored twice, by counting.

    python tests/benchmarks/ingest.py                          # 1,000 messages = 600,000 rows
    python tests/benchmarks/ingest.py --messages 100           # smoke size

Targets (issue 5): >= 150,000 rows/s, >= 30% of raw COPY, >= 10x the naive worker, 0 lost, 0 duplicated.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.db.migrate import migrate
from cloud.db.partitions import ensure_day
from cloud.db.telemetry import COLUMNS, COPY_COLUMNS
from cloud.ingest.copy_binary import copy_stream
from edge_agent import signals as vss
from edge_agent.protocol import TelemetryV1, decode, encode, uplink_topic
from tests.helpers import PrivateBroker, scratch_database

ROWS_PER_MESSAGE = 600
SIGNALS = (
    vss.SPEED, vss.ACCEL_LONGITUDINAL, vss.ACCEL_LATERAL, vss.YAW_RATE, vss.ENGINE_SPEED, vss.FUEL_LEVEL,
    vss.ODOMETER, vss.LATITUDE, vss.LONGITUDE, vss.BATTERY_VOLTAGE,
)  # fmt: skip
T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


def make_messages(vehicles: int, messages: int, seed: int, prefix: str) -> list[tuple[str, bytes]]:
    """Encoded telemetry messages: vehicle i's batches follow each other in time."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(messages):
        vehicle = f"{prefix}{k % vehicles:04d}"
        t0 = T0 + timedelta(minutes=k // vehicles)
        base = rng.normal(0, 1, (len(SIGNALS), ROWS_PER_MESSAGE))
        body = TelemetryV1(
            t0=t0,
            t_ms=list(range(0, ROWS_PER_MESSAGE * 100, 100)),
            signals={name: np.round(60 + 10 * base[i], 3).tolist() for i, name in enumerate(SIGNALS)},
        )
        out.append((uplink_topic(vehicle, "telemetry"), encode(vehicle, k + 1, body, compress=True)))
    return out


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


def through_the_broker(
    url: str, broker: PrivateBroker, messages: list[tuple[str, bytes]], workers: int
) -> float:
    """Seconds from the first publish until every row is stored, with ``workers`` ingest processes."""
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
        expected = len(messages) * ROWS_PER_MESSAGE
        publishers = min(4, len(messages))
        parts = [
            (broker.url.split("//")[1].split(":")[0], broker.port, messages[i::publishers])
            for i in range(publishers)
        ]
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(publishers) as pool:
            pool.map(_publish, parts)
        while count(url, "SELECT count(*) FROM telemetry") < expected:
            if time.perf_counter() - start > 600:
                break
            time.sleep(0.05)
        return time.perf_counter() - start
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def _same_shape(conn: psycopg.Connection[tuple[object, ...]], table: str) -> None:
    """A table shaped like ``telemetry``: partitioned by day, same index, the benchmark day's partition."""
    ident = sql.Identifier(table)
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


def raw_copy(url: str, messages: list[tuple[str, bytes]]) -> float:
    """Seconds for one binary COPY of the same rows (stream prepared beforehand) into a table shaped like
    ``telemetry``: what the database itself can take."""
    stream, left = copy_stream([decode(t, p) for t, p in messages])
    assert not left
    with psycopg.connect(url) as conn:
        _same_shape(conn, "copy_target")
        conn.commit()
        start = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY copy_target ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--naive-messages", type=int, default=20)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    with scratch_database(args.admin_url, "drivesight_bench") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            ensure_day(conn, T0.date())  # the partition exists before the clock starts, as in the fleet
        messages = make_messages(args.vehicles, args.messages, args.seed, "b")
        rows = len(messages) * ROWS_PER_MESSAGE
        points = sum(len(SIGNALS) * ROWS_PER_MESSAGE for _ in messages)
        with tempfile.TemporaryDirectory() as tmp:
            broker = PrivateBroker(Path(tmp), deploy_limits=True)
            broker.start()
            try:
                elapsed = through_the_broker(url, broker, messages, args.workers)
            finally:
                broker.stop()
        stored = count(url, "SELECT count(*) FROM telemetry")
        distinct = count(url, "SELECT count(*) FROM (SELECT DISTINCT vehicle_id, time FROM telemetry) d")
        copy_s = raw_copy(url, messages)
        naive_s = naive(url, messages[: args.naive_messages])
        rows_per_s = rows / elapsed
        result = {
            "messages": len(messages),
            "rows": rows,
            "workers": args.workers,
            "rows_per_s": round(rows_per_s),
            "points_per_s": round(points / elapsed),
            "copy_rows_per_s": round(rows / copy_s),
            "naive_rows_per_s": round(args.naive_messages * ROWS_PER_MESSAGE / naive_s),
            "share_of_copy": round(rows_per_s / (rows / copy_s), 3),
            "vs_naive": round(rows_per_s / (args.naive_messages * ROWS_PER_MESSAGE / naive_s), 1),
            "lost": rows - distinct,
            "duplicated": stored - distinct,
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
