"""The webhook channel: a campaign's push delivered to an HTTP endpoint (a CRM, an app backend), signed,
retried with backoff, never delivered twice.

Each push to deliver is a row of ``webhook_deliveries`` (keyed by push id, so enqueuing twice is a no-op).
:func:`deliver_due` takes the rows due now (``FOR UPDATE SKIP LOCKED``: several workers never post the same
row at once), POSTs each and records the outcome:

- the body is JSON (``push_id``, ``campaign_id``, ``customer_id``, ``item_id``, ``title``, ``text``, ``url``,
  ``expires_at``); the headers carry ``Idempotency-Key: <push id>``, ``X-Drivesight-Timestamp`` (Unix
  seconds) and ``X-Drivesight-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the
  campaign webhook secret>``, so a receiver can check origin and freshness and drop a replay;
- a 2xx answer marks the row delivered (it is never posted again); anything else — another status, a
  timeout, a refused connection — counts an attempt and schedules the next one ``BACKOFF_S * 2**attempts``
  later (at most ``MAX_BACKOFF_S``); after ``max_attempts`` the row is failed, with the last error.

A receiver that processed a post but whose answer was lost gets it again with the same idempotency key:
that is the one repeat at-least-once delivery cannot avoid, and the key is there to drop it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

log = logging.getLogger(__name__)

BACKOFF_S = 30.0
MAX_BACKOFF_S = 3600.0
DEFAULT_MAX_ATTEMPTS = 6
TIMEOUT_S = 10.0

#: posts (url, body, headers) and returns the HTTP status; raises OSError when nothing was answered
Poster = Callable[[str, bytes, dict[str, str]], int]


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Drivesight-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(
    secret: bytes, timestamp: int, body: bytes, header: str, *, now: float, tolerance_s: float = 300
) -> bool:
    """What a receiver does: the signature matches and the timestamp is within ``tolerance_s`` of ``now``."""
    fresh = abs(now - timestamp) <= tolerance_s
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), header)


def urllib_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST with the standard library (no redirects followed: a webhook answers where it was set up)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def enqueue(conn: psycopg.Connection[Any], push_ids: list[str], url: str) -> int:
    """Add a pending delivery per push id (one already there is left as it is); return how many were new."""
    cur = conn.execute(
        "INSERT INTO webhook_deliveries (push_id, url) SELECT unnest(%s::text[]), %s ON CONFLICT DO NOTHING",
        (push_ids, url),
    )
    return cur.rowcount


def post_signed(
    post: Poster, secret: bytes, url: str, key: str, body: bytes, clock: Callable[[], float] = time.time
) -> str | None:
    """POST ``body`` to ``url`` signed and with ``Idempotency-Key: key``; None when the endpoint took it
    (2xx), else the error (another status, or nothing answered)."""
    stamp = int(clock())
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        "X-Drivesight-Timestamp": str(stamp),
        "X-Drivesight-Signature": signature(secret, stamp, body),
    }
    try:
        status = post(url, body, headers)
    except OSError as exc:  # refused, timed out, unreachable: nothing answered
        return f"{type(exc).__name__}: {exc}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def retry_delay(attempts: int) -> float:
    """Seconds to wait after ``attempts`` failed attempts: ``BACKOFF_S`` doubled per attempt, at most
    ``MAX_BACKOFF_S``."""
    return float(min(BACKOFF_S * 2 ** (attempts - 1), MAX_BACKOFF_S))


@dataclass(slots=True)
class DeliveryReport:
    """What one :func:`deliver_due` call did."""

    delivered: list[str] = field(default_factory=list)
    retried: int = 0
    failed: list[str] = field(default_factory=list)


def deliver_due(
    conn: psycopg.Connection[Any],
    secret: bytes,
    *,
    now: datetime,
    post: Poster = urllib_post,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    limit: int = 1000,
    clock: Callable[[], float] = time.time,
) -> DeliveryReport:
    """Post every delivery due at ``now`` (at most ``limit``), each in its own transaction."""
    report = DeliveryReport()
    cur = conn.cursor(row_factory=tuple_row)
    for _ in range(limit):
        with conn.transaction():
            row = cur.execute(
                "SELECT w.push_id, w.url, w.attempts, d.campaign_id, d.customer_id, d.item_id, d.expires_at,"
                " i.title, i.body, i.url FROM webhook_deliveries w"
                " JOIN campaign_decisions d USING (push_id)"
                " LEFT JOIN content_items i ON i.item_id = d.item_id"
                " WHERE w.status = 'pending' AND w.next_attempt_at <= %s"
                " ORDER BY w.next_attempt_at, w.push_id LIMIT 1 FOR UPDATE OF w SKIP LOCKED",
                (now,),
            ).fetchone()
            if row is None:
                break
            push_id, url, attempts, campaign, customer, item, expires, title, text, link = row
            body = json.dumps(
                {
                    "push_id": push_id, "campaign_id": campaign, "customer_id": customer, "item_id": item,
                    "title": title, "text": text, "url": link,
                    "expires_at": expires.isoformat() if expires else None,
                },
                sort_keys=True,
            ).encode()  # fmt: skip
            error = post_signed(post, secret, url, push_id, body, clock)
            attempts += 1
            if error is None:
                cur.execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = %s, delivered_at = %s,"
                    " last_error = NULL WHERE push_id = %s",
                    (attempts, now, push_id),
                )
                report.delivered.append(push_id)
            elif attempts >= max_attempts:
                cur.execute(
                    "UPDATE webhook_deliveries SET status = 'failed', attempts = %s, last_error = %s"
                    " WHERE push_id = %s",
                    (attempts, error[:1000], push_id),
                )
                report.failed.append(push_id)
                log.warning("webhook for %s failed after %d attempts: %s", push_id, attempts, error)
            else:
                delay = retry_delay(attempts)
                cur.execute(
                    "UPDATE webhook_deliveries SET attempts = %s, last_error = %s, next_attempt_at = %s"
                    " WHERE push_id = %s",
                    (attempts, error[:1000], now + timedelta(seconds=delay), push_id),
                )
                report.retried += 1
    return report
