"""The durable outbox: seq survives restarts and never repeats."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge_agent.outbox import Outbox
from edge_agent.protocol import Body, BrokerAddress, StatusV1, TelemetryV1, TripSummaryV1, decode


def _status() -> StatusV1:
    return StatusV1(state="online", agent_version="t")


def test_seq_is_strictly_increasing_and_survives_restart(tmp_path: Path) -> None:
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


def test_pending_pages_in_seq_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "car1")
    seqs = [box.enqueue(_status()) for _ in range(10)]
    first = box.pending(limit=4)
    rest = box.pending(after_seq=first[-1].seq, limit=100)
    assert [p.seq for p in first + rest] == seqs
    box.ack(seqs)
    assert box.depth() == 0


def _telemetry(n: int = 300) -> TelemetryV1:  # clearly larger than a trip summary
    from datetime import UTC, datetime

    return TelemetryV1(
        t0=datetime(2026, 1, 1, tzinfo=UTC), t_ms=list(range(n)), signals={"Vehicle.Speed": [1.0] * n}
    )


def _trip(i: int) -> TripSummaryV1:
    from datetime import UTC, datetime, timedelta

    t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i)
    return TripSummaryV1(
        trip_id=f"T{i}", started_at=t, ended_at=t, distance_km=1, duration_s=1, moving_s=1, idle_s=0,
        max_speed_kmh=1, avg_speed_kmh=1, night_share=0, samples=1,
    )  # fmt: skip


def test_full_outbox_evicts_telemetry_first_then_oldest(tmp_path: Path) -> None:
    from edge_agent.outbox import OutboxFull

    # a bound a few hundred trips fill; telemetry larger than a trip, so that a trip's room cannot take it
    box = Outbox(tmp_path / "o.db", "car1", max_bytes=320 * 1024, max_message_bytes=16384)
    # eviction order: telemetry before trips, oldest first within a priority
    order = [box.enqueue(_telemetry(1000)), box.enqueue(_telemetry(1000))]
    trips_evicted = False
    for i in range(400):
        order.append(box.enqueue(_trip(i)))
        present = [p.seq for p in box.pending(limit=1000)]
        assert present == order[len(order) - len(present) :]  # always what is left after evicting in order
        assert box.disk_bytes() <= box.max_bytes
        trips_evicted = len(present) < len(order) - 2
    assert trips_evicted  # once the telemetry was gone, the oldest trips went
    full = [p.seq for p in box.pending(limit=1000)]
    with pytest.raises(OutboxFull):
        box.enqueue(_telemetry(1000))  # telemetry never pushes out a trip: it is dropped itself
    assert [p.seq for p in box.pending(limit=1000)] == full
    box.close()
    reopened = Outbox(tmp_path / "o.db", "car1", max_bytes=box.max_bytes, max_message_bytes=16384)
    dropped = reopened.dropped()
    assert dropped["telemetry"][0] == 3  # two evicted, one refused; counts survive a restart
    assert dropped["trip"][0] == 400 - len(full)
    assert reopened.stored_bytes == box.stored_bytes


def test_a_message_over_the_limit_is_refused_and_an_indivisible_one_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edge_agent.agent import EdgeAgent
    from edge_agent.outbox import MessageTooLarge

    box = Outbox(tmp_path / "o.db", "car1", max_message_bytes=500)
    with pytest.raises(MessageTooLarge) as err:
        box.enqueue(_trip(1))
    assert err.value.size > 500 and err.value.limit == 500
    assert box.depth() == 0 and box.dropped() == {}  # the caller decides: split, or drop and count
    agent = EdgeAgent(box)
    with caplog.at_level("ERROR"):
        agent.send(_trip(2))  # a trip summary cannot be split
    assert box.depth() == 0
    assert box.dropped()["trip"][0] == 1
    assert "cannot be split" in caplog.text and "limit is 500" in caplog.text
    reused = box.enqueue(_status())  # the refused messages' seqs were rolled back and are taken again
    assert reused == box.enqueue(_status()) - 1


def test_a_lower_message_limit_at_start_drops_what_is_stored_above_it(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "car1")
    big = box.enqueue(_telemetry(3000))
    small = box.enqueue(_status())
    size = len(box.pending()[0].payload)
    box.close()
    again = Outbox(tmp_path / "o.db", "car1", max_message_bytes=size - 1)
    assert [p.seq for p in again.pending()] == [small]
    assert again.dropped() == {"telemetry": (1, size)}
    assert big not in [p.seq for p in again.pending()]


def test_delivered_messages_stay_until_the_clouds_receipt_and_are_resent_after_a_reconnect(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path / "o.db", "car1")
    seqs = [box.enqueue(_status()) for _ in range(4)]
    box.ack(seqs[:3], retain_at=100.0)
    assert [p.seq for p in box.pending()] == [seqs[3]]
    assert box.depth() == 1 and box.delivered() == seqs[:3]
    stored = box.stored_bytes
    assert box.resend_delivered() == 3  # a reconnect: all three are published again, in seq order
    assert [p.seq for p in box.pending()] == seqs
    box.ack(seqs[:3], retain_at=200.0)
    # the receipt names the first two (and a seq this store never had): only they go
    assert box.confirm([(seqs[0], seqs[1]), (seqs[3] + 100, seqs[3] + 100)]) == 2
    assert box.delivered() == seqs[2:3] and box.stored_bytes < stored
    assert box.confirm([(seqs[0], seqs[0])]) == 0  # a receipt twice: nothing left to delete
    box.close()
    again = Outbox(tmp_path / "o.db", "car1")  # a restarted process resends what was not confirmed
    assert [p.seq for p in again.pending()] == seqs[2:]
    assert again.confirm([(seqs[3], seqs[3])]) == 1  # confirmed before its PUBACK: gone all the same
    again.ack([seqs[3]], retain_at=300.0)  # the late PUBACK finds nothing to mark
    assert again.delivered() == seqs[2:3] and [p.seq for p in again.pending()] == seqs[2:3]
    assert again.dropped() == {}


def test_a_missing_receipt_resends_after_a_window_that_doubles_with_each_attempt(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "car1")
    seq = box.enqueue(_status())
    box.ack([seq], retain_at=100.0)
    assert box.resend_unconfirmed(159.0, 60.0) == []  # within the window
    assert box.resend_unconfirmed(160.0, 60.0) == [seq]
    assert box.depth() == 1 and box.resend_unconfirmed(1e9, 60.0) == []  # queued already: counted once
    box.ack([seq], retain_at=200.0)  # published again and acknowledged again
    assert box.resend_unconfirmed(319.0, 60.0) == []  # second attempt: 120 s
    assert box.resend_unconfirmed(320.0, 60.0) == [seq]
    box.ack([seq], retain_at=400.0)
    assert box.resend_unconfirmed(400.0 + 239.0, 60.0) == []  # third: 240 s
    box.ack([seq], retain_at=1000.0)
    box.resend_unconfirmed(1240.0, 60.0)
    for _ in range(10):  # however many attempts, never longer than the cap
        box.ack([seq], retain_at=0.0)
        assert box.resend_unconfirmed(100.0, 60.0, max_wait_s=100.0) == [seq]
    assert box.confirm([(seq, seq)]) == 1 and box.stored_bytes == 0


def test_a_store_from_before_receipts_is_upgraded_and_keeps_its_delivered_messages(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "car1")
    seqs = [box.enqueue(_status()) for _ in range(2)]
    box.ack(seqs[:1], retain_at=5.0)
    box.close()
    with sqlite3.connect(path) as db:  # the delivered table as it was before receipts (no attempts)
        db.executescript(
            "CREATE TABLE old AS SELECT seq, acked_at, resend FROM delivered; DROP TABLE delivered;"
            " CREATE TABLE delivered (seq INTEGER PRIMARY KEY, acked_at REAL NOT NULL,"
            " resend INTEGER NOT NULL);"
            " INSERT INTO delivered SELECT * FROM old; DROP TABLE old;"
        )
    again = Outbox(path, "car1")
    assert [p.seq for p in again.pending()] == seqs  # the delivered one is resent after the restart
    again.ack(seqs[:1], retain_at=10.0)
    assert again.resend_unconfirmed(70.0, 60.0) == seqs[:1]


def test_delivered_messages_are_evicted_first_and_not_counted_as_drops(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "car1", max_bytes=256 * 1024, max_message_bytes=4096)
    delivered = [box.enqueue(_telemetry()) for _ in range(10)]
    box.ack(delivered, retain_at=1.0)
    trips: list[int] = []
    while box.delivered():
        trips.append(box.enqueue(_trip(len(trips))))
        assert box.disk_bytes() <= box.max_bytes
        # delivered telemetry makes room for trips: nothing undelivered goes while some of it is left
        assert not box.delivered() or box.dropped() == {}
    assert box.evicted_delivered == 10
    lost = box.dropped().get("trip", (0, 0))[0]
    assert [p.seq for p in box.pending(limit=1000)] == trips[lost:]


def test_regate_never_resends_a_delivered_message_with_other_content(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "car1")
    sent = box.enqueue(_telemetry())
    waiting = box.enqueue(_telemetry())
    box.ack([sent], retain_at=1.0)
    box.resend_delivered()

    def fewer(body: Body) -> Body:
        if isinstance(body, TelemetryV1):
            return TelemetryV1(
                t0=body.t0, t_ms=body.t_ms[:10], signals={k: v[:10] for k, v in body.signals.items()}
            )
        return body

    assert box.regate(fewer) == (1, 1)  # the waiting one rewritten, the delivered one forgotten
    assert [p.seq for p in box.pending()] == [waiting]


def test_killed_mid_stream_then_restarted_loses_and_duplicates_nothing(
    tmp_path: Path,
    database_url: str,
    db: Any,
    broker: BrokerAddress,
    ingest_group: str | None,
    vehicle_prefix: str,
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
