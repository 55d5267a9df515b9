"""Follow-up: what a dealer did with a lead, and what happens when nobody called in time.

A dealer moves its leads along the funnel (``contacted`` -> ``appointment`` -> ``test_drive`` -> ``order``; a
step may be skipped) or ends them as ``lost`` with a reason, through the API with its dealer-bound key
(:func:`set_status`). Each step is a ``lead_events`` row (when, which key, a note). A lead in ``order`` or
``lost`` is closed: nothing moves it any more. The first step of any kind is the first contact
(``first_contact_at``), which the deadline and the KPIs look at.

:func:`escalate` (run it every few minutes) ends each assignment whose first-contact deadline passed with no
contact (``escalated``), and routes the lead again, never to a dealer it was escalated from.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

import psycopg
from psycopg.rows import tuple_row

from .pipeline import NO_ROOM, REROUTE_COLUMNS, place_again
from .routing import RoutingConfig
from .webhooks import enqueue as enqueue_webhooks

#: the funnel, in order
STEPS = ("contacted", "appointment", "test_drive", "order")
Status = Literal["contacted", "appointment", "test_drive", "order", "lost"]
LostReason = Literal["no_answer", "not_interested", "bought_elsewhere", "price", "financing", "other"]
LOST_REASONS: tuple[str, ...] = get_args(LostReason)
CLOSED = ("order", "lost")


class FollowUpError(ValueError):
    """A status change that cannot be made; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class StatusChange:
    """The lead after a change."""

    lead_id: int
    status: str
    previous: str
    at: datetime
    first_contact_at: datetime | None


def set_status(
    conn: psycopg.Connection[Any],
    lead_id: int,
    dealer_id: str,
    status: Status,
    *,
    at: datetime,
    key_id: int | None,
    note: str | None = None,
    lost_reason: str | None = None,
) -> StatusChange:
    """Move ``dealer_id``'s lead ``lead_id`` to ``status`` at ``at`` (one transaction).

    404 when the lead is not this dealer's now (another dealer's lead is indistinguishable from none), 409
    when it is closed or the step goes backwards, 422 for a lost lead without a known reason."""
    if status == "lost" and lost_reason not in LOST_REASONS:
        raise FollowUpError(f"a lost lead needs lost_reason, one of {', '.join(LOST_REASONS)}", 422)
    if status != "lost" and lost_reason is not None:
        raise FollowUpError("lost_reason is for status lost only", 422)
    cur = conn.cursor(row_factory=tuple_row)  # whatever rows the caller's connection makes (the API: dicts)
    with conn.transaction():
        row = cur.execute(
            "SELECT status, assigned_at, first_contact_at, contact_due_at,"
            " (SELECT max(e.at) FROM lead_events e WHERE e.lead_id = l.lead_id AND e.dealer_id = l.dealer_id)"
            " FROM leads l WHERE lead_id = %s AND dealer_id = %s FOR UPDATE",
            (lead_id, dealer_id),
        ).fetchone()
        if row is None:
            raise FollowUpError(f"no lead {lead_id} of dealer {dealer_id}", 404)
        previous, assigned_at, first, due, last = str(row[0]), row[1], row[2], row[3], row[4]
        if last is not None and at < last:
            raise FollowUpError(f"{at.isoformat()} is before this lead's last step ({last.isoformat()})", 422)
        # giving up on a lead nobody answered is for after its first-contact deadline: before it, keep trying
        # (else a lead could be closed unseen, and never be escalated to a dealer who would call)
        if status == "lost" and lost_reason == "no_answer" and previous == "assigned" and due and at < due:
            raise FollowUpError(
                f"lead {lead_id}: keep trying until its first-contact deadline ({due.isoformat()})", 409
            )
        if previous in CLOSED:
            raise FollowUpError(f"lead {lead_id} is closed ({previous})", 409)
        if status != "lost" and previous in STEPS and STEPS.index(status) <= STEPS.index(previous):
            raise FollowUpError(
                f"lead {lead_id} is at {previous} already: {status} is not a step forward", 409
            )
        if assigned_at is not None and at < assigned_at:
            raise FollowUpError(
                f"{at.isoformat()} is before the lead was assigned ({assigned_at.isoformat()})", 422
            )
        if status != "lost" or lost_reason != "no_answer":  # nobody answered: not a contact
            first = first or at
        cur.execute(
            "UPDATE leads SET status = %s, status_reason = %s, first_contact_at = %s, updated_at = now()"
            " WHERE lead_id = %s",
            (status, lost_reason, first, lead_id),
        )
        cur.execute(
            "INSERT INTO lead_events (lead_id, dealer_id, status, at, key_id, note)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (lead_id, dealer_id, status, at, key_id, note),
        )
    return StatusChange(lead_id, status, previous, at, first)


@dataclass(slots=True)
class EscalationReport:
    """What one :func:`escalate` run did."""

    escalated: int = 0
    reassigned: dict[str, int] = field(default_factory=dict)  # by rule
    unassigned: int = 0


def escalate(conn: psycopg.Connection[Any], routing: RoutingConfig, *, now: datetime) -> EscalationReport:
    """End every assignment whose first-contact deadline passed before ``now`` without a contact, and route
    those leads again to a dealer they were not escalated from (``unassigned`` when there is none)."""
    report = EscalationReport()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('drivesight-leads'))")
        late = conn.execute(
            f"SELECT {REROUTE_COLUMNS}, dealer_id FROM leads"
            " WHERE status = 'assigned' AND contact_due_at < %s ORDER BY contact_due_at, lead_id FOR UPDATE",
            (now,),
        ).fetchall()
        if not late:
            return report
        ids = [int(r[0]) for r in late]
        tried: dict[int, set[str]] = {}
        for lead_id, dealer in conn.execute(
            "SELECT lead_id, dealer_id FROM lead_assignments WHERE lead_id = ANY(%s)", (ids,)
        ):
            tried.setdefault(int(lead_id), set()).add(str(dealer))
        conn.execute(
            "UPDATE lead_assignments SET ended_at = %s, end_reason = 'escalated'"
            " WHERE lead_id = ANY(%s) AND ended_at IS NULL",
            (now, ids),
        )
        conn.cursor().executemany(
            "INSERT INTO lead_events (lead_id, dealer_id, status, at, note)"
            " VALUES (%s, %s, 'escalated', %s, %s)",
            [(int(r[0]), r[-1], now, "first-contact deadline passed without a contact") for r in late],
        )
        report.escalated = len(late)
        placed = place_again(conn, routing, [r[:-1] for r in late], now=now, why="escalated", exclude=tried)
        # no other dealer has room: the lead waits for room like a new one (route_waiting takes it, never back
        # to a dealer it was escalated from); a person who may no longer be called was set aside already
        stranded = [lead_id for lead_id, p, why in placed if p is None and why == NO_ROOM]
        report.unassigned = sum(1 for _id, p, _why in placed if p is None)
        conn.execute(
            "UPDATE leads SET status = 'unassigned', dealer_id = NULL, assigned_at = NULL,"
            " contact_due_at = NULL, status_reason = %s, updated_at = %s WHERE lead_id = ANY(%s)",
            (NO_ROOM, now, stranded),
        )
        rules = Counter(p.rule for _id, p, _why in placed if p is not None)
        enqueue_webhooks(conn, now)
        report.reassigned = dict(rules.most_common())
    return report
