"""The daily reminder job: decide for every due car (cloud/service/due.py), record each decision with its
reason, push the reminders to the cars, notify dealers of severe faults.

One run (``drivesight cloud service remind``) at ``now``:

1. **Stops**: an episode that was reminded of and has a booking since its baseline (``service_bookings``,
   booked or done; a cancelled one does not count) or is no longer due (a service visit moved the baseline)
   gets one ``stopped_by_booking`` decision, and nothing more is sent for it.
2. **In-car reminder** (channel ``push``) per due episode: the first attempt at once, then again
   ``renotify_days`` (7 and 14) after the first was sent, while not booked; nothing after the last.
   A reminder is a service message (``PushV1`` with ``marketing=False``): the push engine asks consent only
   of marketing (``marketing`` scope, cloud/push/engine.py) and the car shows service messages whatever its
   profiling switch (edge_agent/consent.py), so no consent scope gates it here either. It keeps the send-time
   rules of campaigns (cloud/push/engine.send_time: time zone known, outside the quiet hours in the car's
   local time, under the caps per local day and week counted over campaigns and reminders together); a
   reminder those rules stop is ``suppressed`` with why (``held``, ``quiet_hours``, ``capped``) and decided
   again at the next run. One that may go is ``sending`` (committed first, with a push id derived from car,
   episode and attempt), published QoS 1 through the downlink, ``sent`` once the broker acknowledged it; a
   ``sending`` one is published again by the next run under the same push id (the car shows a push id once).
   The push carries the customer's dealer's booking link (``dealers.booking_url``, else plans.toml's
   ``booking_url`` with the dealer and car filled in); no dealer: ``suppressed`` ``no_dealer``.
3. **Dealer notification** (channel ``dealer_webhook``) once per severe-fault episode: only when the customer
   allows ``dealer_sharing`` now (cloud/privacy/consent.py; else ``suppressed`` ``no_consent``, decided again
   at the next run), to the dealer's ``webhook_url`` (none: ``no_endpoint``), signed and retried as campaign
   webhooks are (cloud/push/webhooks.py: ``post_signed``, ``retry_delay``), ``sent`` when the endpoint took
   it, ``failed`` after the attempts. Quiet hours are the driver's, not the dealer's: they do not apply.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from cloud.privacy.consent import allowed_customers
from cloud.push.engine import Outgoing, Sender, pushes_sent, send_time
from edge_agent.protocol import PushV1

from .dealers import DealerChannel, deliver_dealer_webhooks
from .due import Car, Due, find_due, load_cars
from .plans import Reminders, ServicePlans

log = logging.getLogger(__name__)

#: the campaign id service pushes carry, so that the car's feedback says where a push came from
SERVICE_CAMPAIGN = "service"
#: outcomes that count as a reminder given (for attempts and re-notification)
_GIVEN = ("sending", "sent")
_TITLES = {
    "due_by_mileage": "Your car is due for service",
    "due_by_time": "Your car is due for its service",
    "fault_code": "Your car needs a workshop visit",
}


@dataclass(slots=True)
class Decision:
    """One reminder decision as recorded in ``service_reminders``."""

    due: Due
    channel: str
    attempt: int
    outcome: str
    why: str
    suppressed_by: str | None = None
    push_id: str | None = None
    url: str | None = None
    expires_at: datetime | None = None
    #: the same suppression as the episode's last recorded decision (same attempt, same rule): not recorded
    #: again, so a car without a dealer or a consent that stays withheld adds no row a day
    repeated: bool = False


@dataclass(slots=True)
class RemindReport:
    """What one run found and did."""

    now: datetime
    cars: int = 0
    due: dict[str, int] = field(default_factory=dict)
    decided: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)  # suppressions as the last run's, not recorded
    published: int = 0
    acknowledged: int = 0
    webhooks_delivered: int = 0
    webhooks_failed: int = 0
    seconds: float = 0.0


def run_reminders(
    conn: psycopg.Connection[Any],
    plans: ServicePlans,
    sender: Sender,
    *,
    now: datetime,
    dealers: DealerChannel | None = None,
    vehicles: Sequence[str] | None = None,
) -> RemindReport:
    """One run of the job at ``now`` (see the module docstring); ``vehicles`` limits it to those cars."""
    started = time.perf_counter()
    report = RemindReport(now)
    with conn.transaction():
        # one run at a time: a second job waits, then finds this one's decisions
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('drivesight.service.remind'))")
        cars = load_cars(conn, now, vehicles)
        due = find_due(conn, plans, now, cars)
        decisions = decide(conn, plans, cars, due, now, dealers_configured=dealers is not None)
        record(conn, [d for d in decisions if not d.repeated], now)
    report.cars = len(cars)
    report.due = dict(Counter(d.reason for d in due))
    for counts, repeated in ((report.decided, False), (report.unchanged, True)):
        kinds = Counter(
            f"{d.channel}:{d.suppressed_by or d.outcome}" for d in decisions if d.repeated == repeated
        )
        counts.update(kinds.most_common())
    outgoing = pending_pushes(conn)
    report.published = len(outgoing)
    acknowledged = sender(outgoing) if outgoing else set()
    if acknowledged:
        conn.execute(
            "UPDATE service_reminders SET outcome = 'sent', sent_at = %s"
            " WHERE push_id = ANY(%s) AND outcome = 'sending' AND channel = 'push'",
            (now, sorted(acknowledged)),
        )
    report.acknowledged = len(acknowledged)
    if dealers is not None:
        report.webhooks_delivered, report.webhooks_failed = deliver_dealer_webhooks(conn, dealers, now)
    report.seconds = time.perf_counter() - started
    return report


def decide(
    conn: psycopg.Connection[Any],
    plans: ServicePlans,
    cars: Sequence[Car],
    due: Sequence[Due],
    now: datetime,
    *,
    dealers_configured: bool = True,
) -> list[Decision]:
    """This run's decisions (nothing is written); a suppression the same as the episode's last recorded
    decision is marked ``repeated``."""
    history = _history(conn, [c.vehicle_id for c in cars])
    booked = _bookings(conn, cars, now)
    decisions: list[Decision] = []
    due_episodes = {(d.car.vehicle_id, d.episode) for d in due}
    # episodes reminded of that a service visit ended (no longer due)
    by_car = {c.vehicle_id: c for c in cars}
    for (vehicle, channel, episode), past in sorted(history.items()):
        if (
            channel == "push"
            and not past.stopped
            and (vehicle, episode) not in due_episodes
            and vehicle in by_car
        ):
            car = by_car[vehicle]
            ended = Due(car, past.reason, episode, past.due_at, "", past.fault_code)
            why = f"no longer due: service visit {car.visit_id} on {car.baseline_day}"
            decisions.append(Decision(ended, "push", past.given + 1, "stopped_by_booking", why))
    customers = sorted({d.car.customer_id for d in due})
    sends = pushes_sent(conn, customers, now)
    sharing = allowed_customers(conn, customers, "dealer_sharing")
    reminders = plans.reminders
    for d in sorted(due, key=lambda x: (x.due_at, x.car.vehicle_id, x.episode)):
        car = d.car
        h = history.get((car.vehicle_id, "push", d.episode))
        given = h.given if h else 0
        booking = booked.get(car.vehicle_id)
        if h is not None and h.stopped:
            continue
        if booking is not None and booking[1].date() >= car.baseline_day:
            if h is not None:  # reminded of before: the stop is a decision; never reminded: nothing to stop
                why = f"booking {booking[0]} made {booking[1]:%Y-%m-%d %H:%M} UTC"
                decisions.append(Decision(d, "push", given + 1, "stopped_by_booking", why))
        elif h is not None and h.pending:
            pass  # decided and not acknowledged yet: published again below, not decided again
        elif given < reminders.attempts and (
            h is None
            or h.first_sent is None
            or now >= h.first_sent + timedelta(days=reminders.renotify_days[given - 1])
        ):
            decisions.append(_push_decision(d, given + 1, reminders, sends, now))
        if d.reason == "fault_code":
            w = history.get((car.vehicle_id, "dealer_webhook", d.episode))
            if w is None or (not w.given and not w.failed):
                decisions.append(_dealer_decision(d, car.customer_id in sharing, dealers_configured))
    for decision in decisions:
        before = history.get((decision.due.car.vehicle_id, decision.channel, decision.due.episode))
        decision.repeated = (
            decision.outcome == "suppressed"
            and before is not None
            and before.last == ("suppressed", decision.suppressed_by, decision.attempt)
        )
    return decisions


def _push_decision(
    d: Due, attempt: int, reminders: Reminders, sends: dict[str, list[datetime]], now: datetime
) -> Decision:
    car = d.car
    if car.dealer_id is None:
        return Decision(d, "push", attempt, "suppressed", "the car has no dealer to book with", "no_dealer")
    refused = send_time(
        car.vehicle_id,
        car.time_zone,
        reminders.quiet_hours,
        reminders.caps,
        sends.setdefault(car.customer_id, []),
        now,
    )
    if refused is not None:
        return Decision(d, "push", attempt, "suppressed", refused[1], refused[0])
    url = car.booking_url or reminders.booking_url.format(dealer_id=car.dealer_id, vehicle_id=car.vehicle_id)
    return Decision(
        d,
        "push",
        attempt,
        "sending",
        f"attempt {attempt} of {reminders.attempts}: {d.why}",
        push_id=_push_id(car.vehicle_id, d.episode, attempt),
        url=url,
        expires_at=now + timedelta(hours=reminders.message_ttl_hours),
    )


def _dealer_decision(d: Due, allowed: bool, configured: bool) -> Decision:
    car = d.car
    if not allowed:
        why = f"customer {car.customer_id} does not allow dealer_sharing now"
        return Decision(d, "dealer_webhook", 1, "suppressed", why, "no_consent")
    if car.dealer_id is None or car.webhook_url is None:
        why = f"dealer {car.dealer_id} has no webhook_url" if car.dealer_id else "the car has no dealer"
        return Decision(d, "dealer_webhook", 1, "suppressed", why, "no_endpoint")
    if not configured:
        why = "no webhook signing secret configured (DRIVESIGHT_PUSH_WEBHOOK_SECRET_FILE)"
        return Decision(d, "dealer_webhook", 1, "suppressed", why, "no_endpoint")
    why = f"dealer {car.dealer_id} told of {d.fault_code}: {d.why}"
    key = "svcw-" + _push_id(car.vehicle_id, d.episode, 1)[4:]
    return Decision(d, "dealer_webhook", 1, "sending", why, push_id=key, url=car.webhook_url)


def _push_id(vehicle: str, episode: str, attempt: int) -> str:
    """The same on every run for this car, episode and attempt (a re-published push is shown once)."""
    digest = hashlib.sha256(f"{vehicle}\x00{episode}\x00{attempt}".encode()).hexdigest()[:24]
    return f"svc-{digest}"


@dataclass(slots=True)
class _History:
    reason: str
    due_at: datetime
    fault_code: str | None
    given: int = 0
    pending: bool = False
    stopped: bool = False
    failed: bool = False
    first_sent: datetime | None = None
    last: tuple[str, str | None, int] | None = None  # the newest decision: outcome, suppressed_by, attempt


def _history(conn: psycopg.Connection[Any], vehicles: Sequence[str]) -> dict[tuple[str, str, str], _History]:
    """Per (car, channel, episode): reminders given, whether one awaits the broker, stopped, first sent."""
    out: dict[tuple[str, str, str], _History] = {}
    for vehicle, channel, episode, reason, due_at, code, outcome, at, by, attempt in conn.cursor(
        row_factory=tuple_row
    ).execute(
        "SELECT vehicle_id, channel, episode, reason, due_at, fault_code, outcome,"
        " coalesce(sent_at, decided_at), suppressed_by, attempt FROM service_reminders"
        " WHERE vehicle_id = ANY(%s) ORDER BY reminder_id",
        (list(vehicles),),
    ):
        h = out.setdefault((str(vehicle), str(channel), str(episode)), _History(reason, due_at, code))
        h.last = (str(outcome), None if by is None else str(by), int(attempt))
        if outcome in _GIVEN:
            h.given += 1
            h.first_sent = h.first_sent or at
        h.pending |= outcome == "sending"
        h.stopped |= outcome == "stopped_by_booking"
        h.failed |= outcome == "failed"
    return out


def _bookings(
    conn: psycopg.Connection[Any], cars: Sequence[Car], now: datetime
) -> dict[str, tuple[str, datetime]]:
    """Each car's latest booking (booked or done) made by ``now``: (booking id, booked at)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (vehicle_id) vehicle_id, booking_id, booked_at FROM service_bookings"
        " WHERE vehicle_id = ANY(%s) AND status <> 'cancelled' AND booked_at <= %s"
        " ORDER BY vehicle_id, booked_at DESC, booking_id",
        ([c.vehicle_id for c in cars], now),
    ).fetchall()
    return {str(v): (str(b), at) for v, b, at in rows}


def record(conn: psycopg.Connection[Any], decisions: Sequence[Decision], now: datetime) -> None:
    """Append the decisions (one row each) in the caller's transaction."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO service_reminders (customer_id, vehicle_id, dealer_id, channel, reason, fault_code,"
            " episode, due_at, attempt, outcome, suppressed_by, why, push_id, url, decided_at, expires_at,"
            " next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    d.due.car.customer_id,
                    d.due.car.vehicle_id,
                    d.due.car.dealer_id,
                    d.channel,
                    d.due.reason,
                    d.due.fault_code,
                    d.due.episode,
                    d.due.due_at,
                    d.attempt,
                    d.outcome,
                    d.suppressed_by,
                    d.why[:1000],
                    d.push_id,
                    d.url,
                    now,
                    d.expires_at,
                    now if d.channel == "dealer_webhook" and d.outcome == "sending" else None,
                )
                for d in decisions
            ],
        )


def pending_pushes(conn: psycopg.Connection[Any]) -> list[Outgoing]:
    """Reminder pushes decided but not acknowledged by the broker yet (this run's and an earlier run's)."""
    rows = conn.execute(
        "SELECT customer_id, vehicle_id, push_id, reason, fault_code, url, expires_at FROM service_reminders"
        " WHERE channel = 'push' AND outcome = 'sending' ORDER BY reminder_id"
    ).fetchall()
    out = []
    for customer, vehicle, push_id, reason, code, url, expires in rows:
        text = (
            f"Fault {code} was reported by your car. Please book a workshop visit with your dealer."
            if reason == "fault_code"
            else "Your car is due for its scheduled service. Book a visit with your dealer."
        )
        body = PushV1(
            push_id=push_id,
            campaign_id=SERVICE_CAMPAIGN,
            title=_TITLES[str(reason)],
            text=text,
            url=url,
            marketing=False,
            expires_at=expires,
        )
        out.append(Outgoing(str(customer), str(vehicle), body))
    return out
