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
