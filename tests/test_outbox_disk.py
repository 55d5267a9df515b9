"""The outbox's bound is a bound on disk: database file, write-ahead log and WAL index, measured as files.

Before this bound, an outbox bounded at 1 MiB of payload took 5.8 MB on disk (the log alone grew to 4 MB).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.outbox import Outbox, OutboxFull
from edge_agent.outbox_budget import BoundTooSmall
from edge_agent.protocol import MAX_PAYLOAD_BYTES, StatusV1, TelemetryV1
from tests.outbox_child import T0, event, traffic, trip

MIB = 2**20


def files_on_disk(path: Path) -> int:
    """Bytes of the database file, its -wal and its -shm."""
    return sum(os.path.getsize(f"{path}{s}") for s in ("", "-wal", "-shm") if os.path.exists(f"{path}{s}"))


def test_files_on_disk_stay_within_the_bound_while_filled_far_past_it(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "car1", max_bytes=MIB)
    peak = 0
    kinds: dict[str, int] = {}
    for n, (body, compress) in enumerate(traffic()):
        if n == 3000:
            break
        with contextlib.suppress(OutboxFull):
            box.enqueue(body, compress=compress)
        peak = max(peak, files_on_disk(path))
        kinds[body.KIND] = kinds.get(body.KIND, 0) + 1
    payload = sum(len(p.payload) for p in box.pending(limit=10**6))
    assert kinds["telemetry"] * 2700 > 5 * MIB  # five times the bound was offered
    assert peak <= MIB, f"{peak} bytes on disk for a bound of {MIB}"
    assert box.disk_bytes() == files_on_disk(path)
    # the bound is used, not wasted: a fair share of it holds messages (SQLite's pages are not full)
    assert payload > MIB // 4
    # trips and events outrank telemetry: the oldest telemetry went first
    dropped = box.dropped()
    assert set(dropped) == {"telemetry"}
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_one_transaction_stays_within_the_logs_share_of_the_bound(tmp_path: Path) -> None:
    """A reader holding the log open stops checkpoints, so the log grows by what each commit wrote."""
    path = tmp_path / "o.db"
    box = Outbox(path, "car1", max_bytes=MIB)
    budget = box.budget
    for i in range(400):  # fill it with small rows, so that a large message must evict many of them
        box.enqueue(event(i))
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM outbox").fetchone()
    try:
        big = telemetry_of_size(MAX_PAYLOAD_BYTES - 2048)
        for body, compress in [(big, False), (big, False), (event(9999), False), (trip(1), False)]:
            before = os.path.getsize(f"{path}-wal")
            box.enqueue(body, compress=compress)
            frames = (os.path.getsize(f"{path}-wal") - before) // budget.frame_bytes
            assert 0 < frames <= budget.txn_frames, f"{frames} frames for {body.KIND}"
        before = os.path.getsize(f"{path}-wal")
        confirmed = [p.seq for p in box.pending(limit=64)]
        box.ack(confirmed, retain_at=1.0)
        # a receipt's deletions are a transaction per 64 messages (edge_agent.outbox.DELETE_BATCH)
        assert box.confirm([(confirmed[0], confirmed[-1])]) == 64
        assert (os.path.getsize(f"{path}-wal") - before) // budget.frame_bytes <= budget.txn_frames
    finally:
        reader.execute("COMMIT")
        reader.close()
    box.set_meta("x", 1)  # the next commit truncates the log again
    assert os.path.getsize(f"{path}-wal") <= budget.wal_rest_bytes
    assert files_on_disk(path) <= MIB


def telemetry_of_size(size: int) -> TelemetryV1:
    """An uncompressed telemetry batch of about ``size`` bytes."""
    n = size // 20
    return TelemetryV1(t0=T0, t_ms=list(range(n)), signals={"Vehicle.Speed": [123.456789] * n})


def test_a_lower_bound_at_start_shrinks_the_files(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "car1", max_bytes=4 * MIB)
    for i, (body, compress) in enumerate(traffic()):
        if i == 1500:
            break
        box.enqueue(body, compress=compress)
    box.close()
    assert files_on_disk(path) > 2 * MIB
    again = Outbox(path, "car1", max_bytes=MIB)
    assert files_on_disk(path) <= MIB
    assert set(again.dropped()) == {"telemetry"}  # the lowest priority went first
    assert again.depth() > 0


def test_a_bound_that_cannot_hold_two_messages_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BoundTooSmall, match="needs at least"):
        Outbox(tmp_path / "o.db", "car1", max_bytes=256 * 1024)
    Outbox(tmp_path / "o.db", "car1", max_bytes=256 * 1024, max_message_bytes=4 * 1024).close()


def test_killed_while_filling_past_the_bound_keeps_every_committed_message(tmp_path: Path) -> None:
    """kill -9 during eviction and checkpoints: what was committed is there or was counted as evicted."""
    path = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.outbox_child", "fill", str(path), "car1", str(MIB)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    printed: list[tuple[str, str]] = []
    for line in child.stdout:
        seq, kind = line.split()
        printed.append((seq, kind))
        if len(printed) == 2500:  # well past the bound: evicting and checkpointing all along
            break
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    printed += [tuple(line.split()) for line in child.stdout.read().splitlines()]  # type: ignore[misc]
    box = Outbox(path, "car1", max_bytes=MIB)
    assert files_on_disk(path) <= MIB
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {p.seq: p for p in box.pending(limit=10**6)}
    dropped = box.dropped()
    committed = [(int(s), k) for s, k in printed if s != "dropped"]
    refused = sum(1 for s, _ in printed if s == "dropped")
    for kind in ("telemetry", "events", "trip"):
        mine = [s for s, k in committed if k == kind]
        kept = sorted(s for s in mine if s in stored)
        # within a kind, eviction takes the oldest first: what is left is the newest, with no hole
        assert kept == mine[len(mine) - len(kept) :]
        # every committed message is stored or was counted as dropped (one more may have been committed
        # and counted after the last line the parent read)
        evicted = len(mine) - len(kept)
        counted = dropped.get(kind, (0, 0))[0] - (refused if kind == "telemetry" else 0)
        assert counted - evicted in (0, 1), kind
    assert stored[committed[-1][0]]  # the last acknowledged-to-caller message is there
    assert [s for s in stored if s > committed[-1][0]] in ([], [max(stored)])


def test_status_and_trips_survive_what_telemetry_cannot(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "car1", max_bytes=MIB)
    status = box.enqueue(StatusV1(state="online", agent_version="t"))
    trips = [box.enqueue(trip(i)) for i in range(5)]
    for i, (body, compress) in enumerate(traffic()):
        if i == 1200:
            break
        if body.KIND == "telemetry":
            box.enqueue(body, compress=compress)
    seqs = {p.seq for p in box.pending(limit=10**6)}
    assert status in seqs and set(trips) <= seqs
    assert box.disk_bytes() <= MIB
