"""The webhook channel against a real HTTP server: signed, retried with backoff, failed after its attempts,
never posted again once delivered."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from cloud.push.webhooks import deliver_due, enqueue, verify

SECRET = b"webhook-secret-0123456789"
T0 = datetime(2026, 12, 2, 4, tzinfo=UTC)


class _Receiver:
    """An HTTP endpoint answering with the statuses it is given, one per request, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pushes(fresh_database: str) -> Iterator[tuple[str, list[str]]]:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO content_items (item_id, kind, title, body) VALUES ('I1', 'offer', 'T', 'B')"
        )
        conn.execute(
            "INSERT INTO campaigns (campaign_id, name, spec, starts_at, ends_at)"
            " VALUES ('hooks', 'h', '{}', %s, %s)",
            (T0, T0 + timedelta(days=1)),
        )
        ids = [f"p{i}" for i in range(3)]
        for i, p in enumerate(ids):
            conn.execute(
                "INSERT INTO campaign_decisions (campaign_id, customer_id, arm, decision, reason, item_id,"
                " push_id) VALUES ('hooks', %s, 'a', 'sending', 'r', 'I1', %s)",
                (f"C{i}", p),
            )
    yield fresh_database, ids


def test_signed_retried_and_never_twice(pushes: tuple[str, list[str]]) -> None:
    url, ids = pushes
    receiver = _Receiver([500, 502])  # the first two posts fail
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            assert enqueue(conn, ids[:1], receiver.url) == 1
            assert enqueue(conn, ids[:1], receiver.url) == 0  # enqueued once
            first = deliver_due(conn, SECRET, now=T0, clock=lambda: 1_800_000_000)
            assert first.retried == 1 and not first.delivered
            # not due again before its backoff (30 s), then 60 s after the second failure
            assert deliver_due(conn, SECRET, now=T0 + timedelta(seconds=10)).retried == 0
            assert deliver_due(conn, SECRET, now=T0 + timedelta(seconds=31)).retried == 1
            assert deliver_due(conn, SECRET, now=T0 + timedelta(seconds=61)).delivered == []
            done = deliver_due(conn, SECRET, now=T0 + timedelta(seconds=92), clock=lambda: 1_800_000_092)
            assert done.delivered == ["p0"]
            assert deliver_due(conn, SECRET, now=T0 + timedelta(days=1)).delivered == []  # never twice
            row = conn.execute("SELECT status, attempts, last_error FROM webhook_deliveries").fetchone()
            assert row == ("delivered", 3, None)
        assert len(receiver.requests) == 3
        headers, body = receiver.requests[-1]
        assert headers["Idempotency-Key"] == "p0" and all(
            h["Idempotency-Key"] == "p0" for h, _ in receiver.requests
        )
        stamp = int(headers["X-Drivesight-Timestamp"])
        assert verify(SECRET, stamp, body, headers["X-Drivesight-Signature"], now=1_800_000_100)
        assert not verify(
            b"another secret...", stamp, body, headers["X-Drivesight-Signature"], now=1_800_000_100
        )
        assert not verify(SECRET, stamp, body + b" ", headers["X-Drivesight-Signature"], now=1_800_000_100)
        assert not verify(SECRET, stamp, body, headers["X-Drivesight-Signature"], now=1_800_000_100 + 3600)
        document = json.loads(body)
        assert document["push_id"] == "p0" and document["customer_id"] == "C0" and document["title"] == "T"
    finally:
        receiver.close()


def test_a_failing_endpoint_fails_after_its_attempts(pushes: tuple[str, list[str]]) -> None:
    url, ids = pushes
    receiver = _Receiver([503] * 10)
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            enqueue(conn, ids[1:2], receiver.url)
            enqueue(conn, ids[2:3], closed)
            at = T0
            failed: list[str] = []
            for _ in range(4):
                failed += deliver_due(conn, SECRET, now=at, max_attempts=3).failed
                at += timedelta(hours=2)
            assert sorted(failed) == ["p1", "p2"]
            rows = dict(conn.execute("SELECT push_id, last_error FROM webhook_deliveries").fetchall())
            assert rows["p1"] == "HTTP 503" and "Connection refused" in rows["p2"]
        assert len(receiver.requests) == 3  # three attempts, then no more
    finally:
        receiver.close()


def test_the_webhook_channel_of_a_campaign(fresh_database: str, vehicle_prefix: str) -> None:
    from cloud.push.campaigns import create, launch
    from cloud.push.engine import CampaignError, WebhookChannel
    from cloud.push.spec import parse_spec
    from tests.test_campaigns import NOON_SHANGHAI, _spec, _world

    _world(fresh_database, vehicle_prefix)
    published: list[str] = []

    def broker(outgoing: list) -> set[str]:  # type: ignore[type-arg]
        published.extend(o.push.push_id for o in outgoing)
        return {o.push.push_id for o in outgoing}

    receiver = _Receiver([500] * 5)  # the endpoint fails at first, then answers 200
    try:
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            only = _spec("hooked", channels=["webhook"], webhook_url=receiver.url)
            create(conn, parse_spec(only), now=NOON_SHANGHAI)
            with pytest.raises(CampaignError, match="DRIVESIGHT_PUSH_WEBHOOK_SECRET"):
                launch(conn, "hooked", broker, now=NOON_SHANGHAI)
            channel = WebhookChannel(SECRET)
            first = launch(conn, "hooked", broker, now=NOON_SHANGHAI, webhook=channel)
            assert published == []  # no car is pushed to on the webhook channel alone
            # five posts failed, the rest delivered: those are sent, the five wait for their retry
            assert first.acknowledged == first.decided["sent"] == len(receiver.requests) - 5
            assert first.decided["sending"] == 5
            later = launch(conn, "hooked", broker, now=NOON_SHANGHAI + timedelta(minutes=5), webhook=channel)
            assert later.acknowledged == 5
            decisions = dict(
                conn.execute(
                    "SELECT decision, count(*) FROM campaign_decisions"
                    " WHERE campaign_id = 'hooked' GROUP BY 1"
                ).fetchall()
            )
            assert decisions["sent"] == first.acknowledged + 5 and "sending" not in decisions
            assert len({h["Idempotency-Key"] for h, _ in receiver.requests}) == decisions["sent"]
            posts = len(receiver.requests)
            launch(conn, "hooked", broker, now=NOON_SHANGHAI + timedelta(hours=1), webhook=channel)
            assert len(receiver.requests) == posts  # nothing posted twice
            channel_of = conn.execute(
                "SELECT DISTINCT channel FROM campaign_decisions WHERE decision = 'sent'"
            ).fetchall()
            assert channel_of == [("webhook",)]
    finally:
        receiver.close()
