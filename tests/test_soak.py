"""The fault soak's own bookkeeping (tests/benchmarks/soak.py): what it calls lost, undelivered, duplicated
and unexpected, why it says a message went missing, and its link cut. The soak itself runs in CI at smoke
size from .ci/run (about a minute: too long for the suite)."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.benchmarks.soak import Fault, LinkCut, Produced, Stored, Timeline, account, cause_of

T = datetime(2026, 11, 2, tzinfo=UTC)


def _telemetry(seq: int, times: list[int], *, acked_at: float | None = None) -> Produced:
    return Produced(
        "car", seq, "telemetry", 1.0, [("car", t) for t in times], acked_at=acked_at, last_acked_at=acked_at
    )


def test_account_tells_lost_from_undelivered_and_counts_duplicates_and_strays() -> None:
    produced = [
        _telemetry(1, [10, 20], acked_at=2.0),  # stored, one sample twice
        _telemetry(2, [30], acked_at=3.0),  # acknowledged, then gone: lost
        _telemetry(3, [40]),  # still in the car's outbox: undelivered
        Produced("car", 4, "status", 1.0, [("car", 4)]),  # stored
    ]
    stored = Stored(
        ledger={("car", 1): ("telemetry.v1", T), ("car", 4): ("status.v1", T)},
        units={
            "telemetry": Counter({("car", 10): 2, ("car", 20): 1, ("car", 99): 1}),
            "status": Counter({("car", 4): 1}),
        },
        dead_letters={},
        dropped_samples=0,
    )
    result = account(produced, stored, {("car", 3)}, Timeline([], [], []))
    assert result["streams"]["telemetry"] == {
        "messages": 3, "messages_stored": 1, "produced": 4, "stored": 2, "rows": 4,
        "lost": 1, "undelivered": 1, "duplicated": 1, "unexpected": 1,
    }  # fmt: skip
    assert result["streams"]["status"]["lost"] == 0
    assert (result["lost"], result["undelivered"], result["duplicated"], result["unexpected"]) == (1, 1, 1, 1)
    assert (result["lost_messages"], result["undelivered_messages"]) == (1, 1)
    assert [e["seq"] for e in result["lost_examples"]] == [2]
    assert list(result["lost_by_cause"]) == ["telemetry: acked by the broker, no fault after it"]


def test_cause_names_a_restarted_broker_that_had_no_subscriber_yet() -> None:
    kill = Fault(9.0, T, "broker_kill", "#1 (last persisted never)")
    timeline = Timeline([kill], broker_up=[(11.2, "broker_kill #1")], subscribed=[3.0, 13.0])
    early = cause_of(_telemetry(1, [1], acked_at=12.5), timeline)
    assert (
        early[0]
        == "acked by the broker restarted after broker_kill #1 before any ingest worker subscribed again"
    )
    assert early[1] == (
        "acked 1.30 s after the broker's restart; an ingest worker subscribed 1.80 s after it;"
        " the broker's log has 0 PUBLISHes from this car before that SUBSCRIBE"
    )
    tie = cause_of(_telemetry(5, [5], acked_at=13.02), timeline)[0]
    assert tie == "acked by the broker restarted after broker_kill #1 as an ingest worker subscribed again"
    # the broker's log order says this car's PUBLISHes came before the SUBSCRIBE, whatever the clocks say
    logged = Timeline(
        [kill], [(11.2, "broker_kill #1")], [3.0, 13.0], unrouted=[Counter(), Counter({"car": 2})]
    )
    assert cause_of(_telemetry(6, [6], acked_at=13.2), logged)[0] == early[0]
    assert (
        cause_of(_telemetry(7, [7], acked_at=13.2), timeline)[0] == "acked by the broker, no fault after it"
    )
    # acknowledged once the ingest was back: the next fault is named, or none
    assert (
        cause_of(_telemetry(2, [2], acked_at=15.0), timeline)[0] == "acked by the broker, no fault after it"
    )
    assert (
        cause_of(_telemetry(3, [3], acked_at=8.0), timeline)[0] == "acked by the broker, then broker_kill #1"
    )
    assert cause_of(_telemetry(4, [4]), timeline)[0] == "never acked, then broker_kill #1"
    down = Timeline([kill], [], [], outages=[(7.0, 9.5, "ingest worker 1 was down")])
    assert cause_of(_telemetry(8, [8], acked_at=8.0), down)[0] == (
        "acked by the broker while ingest worker 1 was down, then broker_kill #1"
    )


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    """A loopback listener standing in for the broker."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    yield server
    server.close()


def test_link_cut_drops_the_connection_and_refuses_until_restored(upstream: socket.socket) -> None:
    link = LinkCut(upstream.getsockname()[1])
    link.restore()
    car = socket.create_connection(("127.0.0.1", link.port), timeout=5)
    broker, _ = upstream.accept()
    car.sendall(b"CONNECT")
    assert broker.recv(16) == b"CONNECT"
    link.cut()
    car.settimeout(5)
    assert car.recv(16) == b""  # the car sees its connection end
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", link.port), timeout=5)
    link.restore()
    again = socket.create_connection(("127.0.0.1", link.port), timeout=5)
    broker_again, _ = upstream.accept()
    again.sendall(b"PING")
    assert broker_again.recv(16) == b"PING"
    link.cut()
    for s in (car, broker, again, broker_again):
        s.close()
