"""Dealer notifications of severe faults: posted to the dealer's endpoint, signed and retried as campaign
webhooks are (cloud/push/webhooks.py's ``post_signed`` and ``retry_delay``), with the notification id as the
idempotency key, so a dealer system drops a repeat. The rows are ``service_reminders`` of channel
``dealer_webhook``: ``sending`` until the endpoint took one (``sent``) or refused every attempt (``failed``,
with the last error); remind.py decides which are due (consent, an endpoint).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from cloud.push.webhooks import DEFAULT_MAX_ATTEMPTS, Poster, post_signed, retry_delay, urllib_post

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DealerChannel:
    """How dealers are notified: the webhook signing secret and the HTTP poster."""

    secret: bytes
    post: Poster = urllib_post
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


def deliver_dealer_webhooks(
    conn: psycopg.Connection[Any], channel: DealerChannel, now: datetime
) -> tuple[int, int]:
    """Post every dealer notification due at ``now``, each in its own transaction; return (delivered, failed
    for good)."""
    delivered = failed = 0
    cur = conn.cursor(row_factory=tuple_row)
    while True:
        with conn.transaction():
            row = cur.execute(
                "SELECT reminder_id, push_id, url, attempts, dealer_id, customer_id, vehicle_id, fault_code,"
                " due_at FROM service_reminders WHERE channel = 'dealer_webhook' AND outcome = 'sending'"
                " AND next_attempt_at <= %s ORDER BY next_attempt_at, reminder_id LIMIT 1"
                " FOR UPDATE SKIP LOCKED",
                (now,),
            ).fetchone()
            if row is None:
                return delivered, failed
            reminder, key, url, attempts, dealer, customer, vehicle, code, due_at = row
            body = json.dumps(
                {
                    "kind": "severe_fault", "notification_id": key, "dealer_id": dealer,
                    "customer_id": customer, "vehicle_id": vehicle, "fault_code": code,
                    "first_reported_at": due_at.isoformat(),
                },
                sort_keys=True,
            ).encode()  # fmt: skip
            error = post_signed(channel.post, channel.secret, url, key, body)
            attempts += 1
            if error is None:
                cur.execute(
                    "UPDATE service_reminders SET outcome = 'sent', sent_at = %s, attempts = %s,"
                    " last_error = NULL WHERE reminder_id = %s",
                    (now, attempts, reminder),
                )
                delivered += 1
            elif attempts >= channel.max_attempts:
                cur.execute(
                    "UPDATE service_reminders SET outcome = 'failed', attempts = %s, last_error = %s"
                    " WHERE reminder_id = %s",
                    (attempts, error[:1000], reminder),
                )
                failed += 1
                log.warning("dealer webhook %s failed after %d attempts: %s", key, attempts, error)
            else:
                cur.execute(
                    "UPDATE service_reminders SET attempts = %s, last_error = %s, next_attempt_at = %s"
                    " WHERE reminder_id = %s",
                    (attempts, error[:1000], now + timedelta(seconds=retry_delay(attempts)), reminder),
                )
