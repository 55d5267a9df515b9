"""The dealer's webhook: each assignment of a lead to a dealer with a ``webhook_url`` is posted there, signed
and retried as campaign webhooks are (cloud/push/webhooks.py: ``post_signed``, ``retry_delay``; the headers
``X-Drivesight-Timestamp`` and ``X-Drivesight-Signature`` let the dealer's system check origin and freshness),
with ``lead-<assignment id>`` as the idempotency key, so a repeat is dropped.

:func:`enqueue` adds a delivery for every open assignment not queued yet (run after routing and escalation);
:func:`deliver` posts those due, each in its own transaction (``FOR UPDATE SKIP LOCKED``). The body is the
lead as the dealer API shows it, with the assignment's rule, why and first-contact deadline.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cloud.push.webhooks import DEFAULT_MAX_ATTEMPTS, Poster, post_signed, retry_delay, urllib_post

from .read import COLUMNS

log = logging.getLogger(__name__)


def enqueue(conn: psycopg.Connection[Any], now: datetime) -> int:
    """Queue the webhook of every open assignment to a dealer with a ``webhook_url``; how many were new."""
    cur = conn.execute(
        "INSERT INTO lead_webhooks (assignment_id, url, next_attempt_at)"
        " SELECT a.assignment_id, d.webhook_url, %s FROM lead_assignments a JOIN dealers d USING (dealer_id)"
        " WHERE a.ended_at IS NULL AND d.webhook_url IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM lead_webhooks w WHERE w.assignment_id = a.assignment_id)",
        (now,),
    )
    return cur.rowcount


def deliver(
    conn: psycopg.Connection[Any],
    secret: bytes,
    *,
    now: datetime,
    post: Poster = urllib_post,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> tuple[int, int]:
    """Post every lead webhook due at ``now``; (delivered, failed for good)."""
    delivered = failed = 0
    # the lead as the dealer API shows it; dealer and times from the assignment being posted
    lead_columns = ", ".join(
        f"l.{c.strip()}" for c in COLUMNS.split(",") if c.strip() not in ("dealer_id", "assigned_at")
    )
    cur = conn.cursor(row_factory=dict_row)
    while True:
        with conn.transaction():
            # an assignment that ended before its post went out (escalated, undone) is no longer that
            # dealer's to see: cancelled, never posted
            cur.execute(
                "UPDATE lead_webhooks w SET outcome = 'cancelled' FROM lead_assignments a"
                " WHERE a.assignment_id = w.assignment_id AND w.outcome = 'sending'"
                " AND a.ended_at IS NOT NULL"
            )
            row = cur.execute(
                f"SELECT w.assignment_id, w.url, w.attempts, a.dealer_id, a.assigned_at, a.rule, a.why,"
                f" a.contact_due_at AS due,"
                f" {lead_columns} FROM lead_webhooks w JOIN lead_assignments a USING (assignment_id)"
                " JOIN leads l ON l.lead_id = a.lead_id"
                " WHERE w.outcome = 'sending' AND w.next_attempt_at <= %s AND a.ended_at IS NULL"
                " AND l.dealer_id = a.dealer_id"
                " ORDER BY w.next_attempt_at, w.assignment_id LIMIT 1 FOR UPDATE OF w SKIP LOCKED",
                (now,),
            ).fetchone()
            if row is None:
                return delivered, failed
            assignment, url, attempts = row.pop("assignment_id"), row.pop("url"), row.pop("attempts")
            body = json.dumps({"kind": "lead_assigned", "assignment_id": assignment, **row}, default=str)
            key = f"lead-{assignment}"
            error = post_signed(post, secret, url, key, body.encode())
            attempts += 1
            if error is None:
                delivered += 1
                cur.execute(
                    "UPDATE lead_webhooks SET outcome = 'sent', sent_at = %s, attempts = %s,"
                    " last_error = NULL"
                    " WHERE assignment_id = %s",
                    (now, attempts, assignment),
                )
                continue
            gave_up = attempts >= max_attempts
            failed += gave_up
            if gave_up:
                log.warning("lead webhook %s failed after %d attempts: %s", key, attempts, error)
            cur.execute(
                "UPDATE lead_webhooks SET outcome = CASE WHEN %s THEN 'failed' ELSE 'sending' END,"
                " attempts = %s, last_error = %s, next_attempt_at = %s WHERE assignment_id = %s",
                (gave_up, attempts, error[:1000], now + timedelta(seconds=retry_delay(attempts)), assignment),
            )
