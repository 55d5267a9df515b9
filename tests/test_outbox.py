"""The durable outbox: seq survives restarts and never repeats."""

from __future__ import annotations

from edge_agent.outbox import Outbox
from edge_agent.protocol import StatusV1, decode


def _status() -> StatusV1:
    return StatusV1(state="online", agent_version="t")


def test_seq_is_strictly_increasing_and_survives_restart(tmp_path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "car1", clock=lambda: 1000.0)
    seqs = [box.enqueue(_status()) for _ in range(3)]
    reserved = box.reserve_seq()
    box.ack(seqs[:2])
    box.close()
    again = Outbox(path, "car1", clock=lambda: 1.0)  # clock going backwards must not matter
    later = again.enqueue(_status())
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert seqs[0] == 1000 * 10**6  # a new store starts at the clock in microseconds
    assert later == reserved + 1
    pending = again.pending()
    assert [p.seq for p in pending] == [seqs[2], later]
    assert [decode(p.topic, p.payload).seq for p in pending] == [seqs[2], later]


def test_pending_pages_in_seq_order(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db", "car1")
    seqs = [box.enqueue(_status()) for _ in range(10)]
    first = box.pending(limit=4)
    rest = box.pending(after_seq=first[-1].seq, limit=100)
    assert [p.seq for p in first + rest] == seqs
    box.ack(seqs)
    assert box.depth() == 0


def _telemetry(n: int = 300):  # clearly larger than a trip summary
    from datetime import UTC, datetime

    from edge_agent.protocol import TelemetryV1

    return TelemetryV1(
        t0=datetime(2026, 1, 1, tzinfo=UTC), t_ms=list(range(n)), signals={"Vehicle.Speed": [1.0] * n}
    )


def _trip(i: int):
    from datetime import UTC, datetime, timedelta

    from edge_agent.protocol import TripSummaryV1

    t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i)
    return TripSummaryV1(
        trip_id=f"T{i}", started_at=t, ended_at=t, distance_km=1, duration_s=1, moving_s=1, idle_s=0,
        max_speed_kmh=1, avg_speed_kmh=1, night_share=0, samples=1,
    )  # fmt: skip


def test_full_outbox_evicts_telemetry_first_then_oldest(tmp_path) -> None:
    import pytest

    from edge_agent.outbox import OutboxFull

    probe = Outbox(tmp_path / "probe.db", "car1")
    probe.enqueue(_trip(0))
    probe.enqueue(_telemetry())
    trip_size, tele_size = (len(p.payload) for p in probe.pending())
    box = Outbox(tmp_path / "o.db", "car1", max_bytes=3 * trip_size + 2 * tele_size + 10)
    # eviction order: telemetry before trips, oldest first within a priority
    order = [box.enqueue(_telemetry()), box.enqueue(_telemetry())]
    trips_evicted = False
    for i in range(12):
        order.append(box.enqueue(_trip(i)))
        present = [p.seq for p in box.pending(limit=100)]
        assert present == order[len(order) - len(present) :]  # always what is left after evicting in order
        assert box.stored_bytes <= box.max_bytes
        trips_evicted = len(present) < len(order) - 2
    assert trips_evicted  # once the telemetry was gone, the oldest trips went
    full = [p.seq for p in box.pending(limit=100)]
    with pytest.raises(OutboxFull):
        box.enqueue(_telemetry())  # telemetry never pushes out a trip: it is dropped itself
    assert [p.seq for p in box.pending(limit=100)] == full
    box.close()
    reopened = Outbox(tmp_path / "o.db", "car1", max_bytes=box.max_bytes)
    dropped = reopened.dropped()
    assert dropped["telemetry"][0] == 3  # two evicted, one refused; counts survive a restart
    assert dropped["trip"][0] == 12 - len(full)
    assert reopened.stored_bytes == box.stored_bytes


def test_killed_mid_stream_then_restarted_loses_and_duplicates_nothing(
    tmp_path, database_url: str, db, broker, ingest_group, vehicle_prefix: str
) -> None:
    import signal
    import subprocess
    import sys

    from cloud.ingest.worker import IngestWorker
    from tests.helpers import count, wait_until

    vehicle = vehicle_prefix + "crash"
    outbox_db = str(tmp_path / "crash.db")
    worker = IngestWorker(
        database_url, broker, group=ingest_group, client_id=f"crash-{vehicle}", persistent=False
    )
    worker.start()
    try:
        cmd = [sys.executable, "-m", "tests.outbox_child"]
        producer = subprocess.Popen(
            [*cmd, "produce", outbox_db, vehicle, broker.url()], stdout=subprocess.PIPE, text=True
        )
        assert producer.stdout is not None
        printed = []
        for line in producer.stdout:
            printed.append(int(line))
            if len(printed) == 300:
                break
        producer.send_signal(signal.SIGKILL)  # no chance to flush, close or say goodbye
        producer.wait(10)
        # the broker publishes the dead session's last will: the cloud marks the car offline
        status = "SELECT status FROM vehicles WHERE vehicle_id = %s"
        assert wait_until(lambda: db.execute(status, (vehicle,)).fetchone() == ("offline",), timeout=30)
        rest = producer.stdout.read()
        printed += [int(x) for x in rest.split()]
        flusher = subprocess.run(
            [*cmd, "flush", outbox_db, vehicle, broker.url()], capture_output=True, text=True, timeout=120
        )
        assert flusher.returncode == 0, flusher.stderr
        assert flusher.stdout.strip() == "0"  # the outbox is empty: everything was acknowledged
        ledger = "SELECT seq FROM ingested_messages WHERE vehicle_id = %s AND schema = 'events.v1'"
        assert wait_until(lambda: len(db.execute(ledger, (vehicle,)).fetchall()) >= len(printed), timeout=30)
        stored = sorted(int(r[0]) for r in db.execute(ledger, (vehicle,)).fetchall())
        # every committed message arrived; at most one more (committed, killed before printing it)
        assert set(printed) <= set(stored)
        assert len(stored) - len(printed) in (0, 1)
        assert count(db, "SELECT count(*) FROM driving_events WHERE vehicle_id = %s", vehicle) == len(stored)
    finally:
        worker.stop()
