"""Vehicle processes for the crash tests, and the realistic traffic they (and the disk-bound tests) store.

Run as ``python -m tests.outbox_child MODE DB VEHICLE ARG``:

- ``produce DB VEHICLE BROKER_URL`` enqueues events and publishes until killed, printing each ``seq`` once its
  message is committed to the outbox;
- ``flush DB VEHICLE BROKER_URL`` drains the outbox and prints what is left (0);
- ``fill DB VEHICLE MAX_BYTES`` enqueues :func:`traffic` into an outbox bounded at MAX_BYTES with no broker,
  printing ``seq kind`` once each message is committed (``dropped kind`` when it was refused), until killed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np

from edge_agent.outbox import Outbox, OutboxFull
from edge_agent.protocol import (
    Body,
    BrokerAddress,
    DrivingEvent,
    EventKind,
    EventsV1,
    TelemetryV1,
    TripSummaryV1,
)
from edge_agent.uplink import MqttUplink

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def telemetry(rng: np.random.Generator, minute: int, signals: int = 8) -> TelemetryV1:
    """A one-minute batch at 1 Hz of noisy signals, as the agent sends (about 2.7 KB compressed)."""
    n = 60
    names = [
        ("Vehicle.Speed", rng.uniform(0, 130, n), 2),
        ("Vehicle.Acceleration.Longitudinal", rng.normal(0, 1, n), 3),
        ("Vehicle.Acceleration.Lateral", rng.normal(0, 1, n), 3),
        ("Vehicle.Powertrain.CombustionEngine.Speed", rng.uniform(700, 4000, n), 1),
        ("Vehicle.Powertrain.FuelSystem.RelativeLevel", rng.uniform(10, 90, n), 2),
        ("Vehicle.TraveledDistance", np.cumsum(rng.uniform(0, 0.03, n)) + 12000, 3),
        ("Vehicle.CurrentLocation.Latitude", 48 + rng.normal(0, 0.01, n), 5),
        ("Vehicle.CurrentLocation.Longitude", 11 + rng.normal(0, 0.01, n), 5),
    ][:signals]
    return TelemetryV1(
        t0=T0 + timedelta(minutes=minute),
        t_ms=[k * 1000 for k in range(n)],
        signals={name: np.round(values, digits).tolist() for name, values, digits in names},
    )


def event(i: int, trip: str = "T1") -> EventsV1:
    """One harsh-brake event (about 290 bytes)."""
    start = T0 + timedelta(seconds=i)
    return EventsV1(events=[DrivingEvent(kind=EventKind.HARSH_BRAKE, trip_id=trip, start=start, end=start,
                                         peak=-4.0, peak_unit="m/s^2")])  # fmt: skip


def trip(i: int) -> TripSummaryV1:
    """A trip summary (about 400 bytes)."""
    t = T0 + timedelta(hours=i)
    return TripSummaryV1(
        trip_id=f"T{i}", started_at=t, ended_at=t + timedelta(minutes=20), distance_km=12.5, duration_s=1200,
        moving_s=1100, idle_s=100, max_speed_kmh=96, avg_speed_kmh=37.5, night_share=0, samples=12000,
    )  # fmt: skip


def traffic(seed: int = 1) -> Iterator[tuple[Body, bool]]:
    """A car's uplink, endlessly: (body, compress) — telemetry each minute, events, a trip each 20 minutes."""
    rng = np.random.default_rng(seed)
    minute = 0
    while True:
        yield telemetry(rng, minute), True
        if minute % 3 == 0:
            yield event(minute, trip=f"T{minute // 20}"), False
        if minute % 20 == 19:
            yield trip(minute // 20), False
        minute += 1


def main(mode: str, db: str, vehicle_id: str, arg: str) -> int:
    if mode == "fill":
        box = Outbox(db, vehicle_id, max_bytes=int(arg))
        for body, compress in traffic():
            try:
                print(box.enqueue(body, compress=compress), body.KIND, flush=True)
            except OutboxFull:
                print("dropped", body.KIND, flush=True)
    outbox = Outbox(db, vehicle_id)
    uplink = MqttUplink(outbox, BrokerAddress.parse(arg), inflight=16)
    uplink.start()
    if mode == "flush":
        ok = uplink.flush(timeout=60)
        uplink.stop()
        print(outbox.depth(), flush=True)
        return 0 if ok else 1
    i = 0
    while True:
        seq = outbox.enqueue(event(i))
        print(seq, flush=True)
        uplink.notify()
        i += 1
        time.sleep(0.002)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
