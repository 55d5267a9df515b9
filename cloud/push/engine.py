"""The campaign job: a decision for every customer of a running campaign, and the pushes it sends.

One run (``drivesight cloud campaigns launch ID``, repeated by a scheduler while the campaign runs) takes, for
each customer of the audience who has no final decision yet:

1. **Eligibility**, before any group is drawn, so that treated and holdout customers are alike: marketing
   consent now (``no_consent``), and for the push channel a car (``no_vehicle``). Ineligible customers are
   decided again at the next run.
2. **Group**: the global control group no campaign reaches (``global_control``), the campaign's holdout
   (``holdout``), or an arm — by hash, the same on every run (cloud/push/assign.py). Final.
3. **Content** for the treated: the arm's item or the recommender's choice (``no_content`` when nothing
   eligible remains); a fixed item that expired is ``expired`` (final).
4. **Send-time rules**: the car's time zone must be known (``held``: never guessed), the car's local time
   outside the quiet hours (``quiet_hours``), the customer under the caps per local day and week across all
   campaigns (``capped``). These are retried at the next run.
5. **Send**: the decision becomes ``sending`` with a push id derived from the campaign and customer and an
   expiry, committed before anything is published; published QoS 1; ``sent`` once the broker acknowledged.
   A run after a crash publishes ``sending`` rows again under the same push id (the car shows a push id once),
   and never sends a ``sent`` one: running the job again never sends anything twice.

Measurement is intention-to-treat: an arm's rate counts every customer assigned to it, sent or not (capped,
quiet hours), against the holdout drawn from the same eligible customers (cloud/push/results.py).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import tuple_row

from cloud.privacy.consent import allowed_customers
from edge_agent.protocol import PushV1

from . import assign
from .content import RANKERS, Choice, Item, RankContext, Target, eligible_items, load_items
from .spec import CampaignSpec, Caps, LocalHours, audience_sql, parse_spec
from .webhooks import Poster, deliver_due, enqueue, urllib_post

log = logging.getLogger(__name__)

#: decisions no later run changes (``sending`` only becomes ``sent``, when the broker acknowledges or the
#: webhook is delivered, or ``failed``, when a webhook-only push could not be delivered)
FINAL_OR_SENDING = ("sent", "sending", "holdout", "global_control", "expired", "failed")
#: the default share of customers no campaign reaches (DRIVESIGHT_PUSH_GLOBAL_CONTROL_SHARE)
DEFAULT_GLOBAL_CONTROL_SHARE = 0.05


class CampaignError(ValueError):
    """A campaign that cannot run now (unknown, not running, over)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One push to publish: to which car, and the message."""

    customer_id: str
    vehicle_id: str
    push: PushV1


#: publishes pushes; returns the push ids the broker acknowledged
Sender = Callable[[Sequence[Outgoing]], set[str]]


@dataclass(frozen=True, slots=True)
class WebhookChannel:
    """How this installation delivers the webhook channel: its signing secret and the HTTP poster."""

    secret: bytes
    post: Poster = urllib_post


@dataclass(slots=True)
class RunReport:
    """What one run decided, by decision, and what it sent."""

    campaign_id: str
    audience: int = 0
    decided: dict[str, int] = field(default_factory=dict)
    published: int = 0
    acknowledged: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Car:
    vehicle_id: str
    time_zone: str | None
    model: str | None
    region: str | None


@dataclass(slots=True)
class _Decision:
    customer_id: str
    arm: str
    decision: str
    reason: str
    item_id: str | None = None
    score: float | None = None
    vehicle_id: str | None = None
    push_id: str | None = None
    expires_at: datetime | None = None


def load_campaign(conn: psycopg.Connection[Any], campaign_id: str) -> tuple[CampaignSpec, str]:
    """The stored campaign's definition and status."""
    row = conn.execute("SELECT spec, status FROM campaigns WHERE campaign_id = %s", (campaign_id,)).fetchone()
    if row is None:
        raise CampaignError(f"unknown campaign {campaign_id!r}")
    return parse_spec(row[0]), str(row[1])


def decide(
    conn: psycopg.Connection[Any],
    spec: CampaignSpec,
    now: datetime,
    *,
    global_control_share: float = DEFAULT_GLOBAL_CONTROL_SHARE,
    rankers: dict[str, Any] | None = None,
) -> list[_Decision]:
    """The decisions of this run for every audience customer without a final one (nothing is written)."""
    rankers = rankers if rankers is not None else RANKERS
    cur = conn.cursor(row_factory=tuple_row)
    query, params = audience_sql(spec)
    audience = [str(r[0]) for r in cur.execute(query, params)]
    final = {
        str(r[0])
        for r in cur.execute(
            "SELECT customer_id FROM campaign_decisions WHERE campaign_id = %s AND decision = ANY(%s)",
            (spec.campaign_id, list(FINAL_OR_SENDING)),
        )
    }
    open_ = [c for c in audience if c not in final]
    consenting = allowed_customers(conn, open_, "marketing")
    cars = _cars(conn, open_)
    regions = _regions(conn, open_)
    decisions: list[_Decision] = []
    treated: list[tuple[str, str]] = []  # (customer, arm)
    for customer in open_:
        if customer not in consenting:
            decisions.append(_Decision(customer, "ineligible", "no_consent", "no marketing consent now"))
        elif "push" in spec.channels and customer not in cars:
            decisions.append(_Decision(customer, "ineligible", "no_vehicle", "no car to push to"))
        elif assign.in_global_control(customer, global_control_share):
            decisions.append(
                _Decision(customer, assign.GLOBAL_CONTROL, "global_control", "in the global control group")
            )
        else:
            arm = assign.group(spec.campaign_id, customer, spec.holdout_share, spec.arm_shares())
            if arm == assign.HOLDOUT:
                decisions.append(_Decision(customer, arm, "holdout", "in the campaign's holdout group"))
            else:
                treated.append((customer, arm))
    items = load_items(conn)
    choices = _choose(conn, spec, treated, cars, regions, items, now, rankers)
    sent_before = pushes_sent(conn, [c for c, _ in treated], now)
    for customer, arm in treated:
        decisions.append(
            _send_time(
                spec, customer, arm, choices.get(customer), cars.get(customer), items, sent_before, now
            )
        )
    return decisions


def _send_time(
    spec: CampaignSpec,
    customer: str,
    arm: str,
    choice: Choice | None,
    car: _Car | None,
    items: dict[str, Item],
    sent_before: dict[str, list[datetime]],
    now: datetime,
) -> _Decision:
    """The send-time rules for one treated customer (``sent_before`` gains the send it allows)."""
    fixed = spec.arm(arm).content.item
    if choice is None:
        if fixed is not None and fixed in items and not items[fixed].valid_at(now):
            return _Decision(customer, arm, "expired", f"item {fixed} is not valid now", fixed)
        return _Decision(customer, arm, "no_content", "no catalogue item this customer may get now")
    d = _Decision(customer, arm, "", "", choice.item_id, choice.score, car.vehicle_id if car else None)
    refused = send_time(
        car.vehicle_id if car else None,
        car.time_zone if car else None,
        spec.quiet_hours,
        spec.caps,
        sent_before.setdefault(customer, []),
        now,
    )
    if refused is not None:
        d.decision, d.reason = refused
        return d
    d.decision, d.reason = "sending", "; ".join(choice.reasons) or "chosen"
    d.push_id = assign.push_id(spec.campaign_id, customer)
    d.expires_at = min(now + spec.message_ttl, spec.ends_at)
    return d


def send_time(
    vehicle_id: str | None,
    time_zone: str | None,
    quiet_hours: LocalHours,
    caps: Caps,
    sends: list[datetime],
    now: datetime,
) -> tuple[str, str] | None:
    """The send-time rules every push to a car keeps (campaigns, service reminders): the car's time zone
    known (``held``), its local time outside ``quiet_hours`` (``quiet_hours``), the customer's ``sends``
    under ``caps`` per local day and week (``capped``). Returns (decision, reason) when the push must wait,
    None when it may go now, and then ``sends`` gains ``now``."""
    zone = _zone(time_zone) if vehicle_id is not None else None
    if zone is None:  # quiet hours are local: without the car's time zone they cannot be kept, so hold
        return "held", (
            f"time zone of {vehicle_id} unknown ({time_zone or 'not set'})"
            if vehicle_id is not None
            else "time zone unknown: the customer has no car"
        )
    local = now.astimezone(zone)
    if quiet_hours.contains(local.time().replace(tzinfo=None)):
        return "quiet_hours", f"local time {local:%H:%M} is within the quiet hours"
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    today = sum(1 for s in sends if s >= day_start)
    week = sum(1 for s in sends if s >= day_start - timedelta(days=6))
    if today >= caps.per_day or week >= caps.per_week:
        return "capped", (
            f"{today} pushes today, {week} in 7 days (caps {caps.per_day}/day, {caps.per_week}/week)"
        )
    sends.append(now)
    return None


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _cars(conn: psycopg.Connection[Any], customers: Sequence[str]) -> dict[str, _Car]:
    """Each customer's car to push to: the one seen most recently."""
    rows = conn.execute(
        "SELECT DISTINCT ON (customer_id) customer_id, vehicle_id, time_zone, model, region FROM vehicles"
        " WHERE customer_id = ANY(%s) ORDER BY customer_id, last_seen DESC NULLS LAST, vehicle_id",
        (list(customers),),
    ).fetchall()
    return {str(r[0]): _Car(str(r[1]), r[2], r[3], r[4]) for r in rows}


def _regions(conn: psycopg.Connection[Any], customers: Sequence[str]) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT customer_id, region FROM customers WHERE customer_id = ANY(%s)", (list(customers),)
    ).fetchall()
    return {str(r[0]): r[1] for r in rows}


def pushes_sent(
    conn: psycopg.Connection[Any], customers: Sequence[str], now: datetime
) -> dict[str, list[datetime]]:
    """Each customer's pushes to a car of the last 8 days, across every campaign and service reminder
    (cloud/service/): the caps count every push a customer gets."""
    sends: dict[str, list[datetime]] = defaultdict(list)
    for customer, at in conn.execute(
        "SELECT customer_id, coalesce(sent_at, decided_at) FROM campaign_decisions"
        " WHERE customer_id = ANY(%(c)s) AND decision IN ('sent', 'sending')"
        " AND coalesce(sent_at, decided_at) > %(since)s"
        " UNION ALL SELECT customer_id, coalesce(sent_at, decided_at) FROM service_reminders"
        " WHERE customer_id = ANY(%(c)s) AND channel = 'push' AND outcome IN ('sent', 'sending')"
        " AND coalesce(sent_at, decided_at) > %(since)s",
        {"c": list(customers), "since": now - timedelta(days=8)},
    ):
        sends[str(customer)].append(at)
    return sends


def _needs_credit(items: dict[str, Item]) -> bool:
    return any(i.min_credit_score is not None for i in items.values())


def credit_scores(conn: psycopg.Connection[Any], customers: Sequence[str]) -> dict[str, float]:
    """Each of ``customers``' newest credit score (those without one are left out)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (customer_id) customer_id, score FROM credit_scores WHERE customer_id = ANY(%s)"
        " ORDER BY customer_id, scored_at DESC",
        (list(customers),),
    ).fetchall()
    return {str(c): float(s) for c, s in rows}


def _choose(
    conn: psycopg.Connection[Any],
    spec: CampaignSpec,
    treated: Sequence[tuple[str, str]],
    cars: dict[str, _Car],
    regions: dict[str, str | None],
    items: dict[str, Item],
    now: datetime,
    rankers: dict[str, Any],
) -> dict[str, Choice]:
    """The content of every treated customer that has any."""
    converted = _converted(conn, [c for c, _ in treated])
    scores = credit_scores(conn, [c for c, _ in treated]) if _needs_credit(items) else {}
    by_arm: dict[str, list[Target]] = defaultdict(list)
    for customer, arm in treated:
        car = cars.get(customer)
        by_arm[arm].append(
            Target(
                customer,
                car.model if car else None,
                (car.region if car and car.region else None) or regions.get(customer),
                frozenset(converted.get(customer, ())),
                scores.get(customer),
            )
        )
    chosen: dict[str, Choice] = {}
    context = RankContext(conn, spec.campaign_id, now)  # one per run: arms share what rankers read
    for arm, targets in by_arm.items():
        content = spec.arm(arm).content
        if content.item is not None:
            item = items.get(content.item)
            if item is None or not item.valid_at(now):
                continue
            for t in targets:
                if item.item_id not in t.converted and item.credit_allows(t.credit_score):
                    chosen[t.customer_id] = Choice(
                        item.item_id, 1.0, (f"the campaign's item {item.item_id}",)
                    )
            continue
        ranker = rankers.get(content.recommended or "")
        if ranker is None:
            raise CampaignError(f"arm {arm!r}: recommender {content.recommended!r} is not available")
        candidates = eligible_items(targets, items, now)
        chosen.update(ranker(context, targets, candidates))
    return chosen


def _converted(conn: psycopg.Connection[Any], customers: Sequence[str]) -> dict[str, set[str]]:
    """Items each customer converted on: CRM conversions and conversions reported from the car."""
    found: dict[str, set[str]] = defaultdict(set)
    for customer, item in conn.execute(
        "SELECT customer_id, item_id FROM conversions WHERE customer_id = ANY(%(c)s)"
        " UNION SELECT d.customer_id, d.item_id FROM campaign_decisions d JOIN push_feedback f"
        " ON f.push_id = d.push_id AND f.action = 'converted' WHERE d.customer_id = ANY(%(c)s)",
        {"c": list(customers)},
    ):
        found[str(customer)].add(str(item))
    return found


def record(
    conn: psycopg.Connection[Any], campaign_id: str, decisions: Sequence[_Decision], now: datetime
) -> None:
    """Store the run's decisions (one statement through a staging table); a final decision never changes."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS decision_staging (LIKE campaign_decisions INCLUDING DEFAULTS)"
            " ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            "COPY decision_staging (campaign_id, customer_id, arm, decision, reason, item_id, score,"
            " vehicle_id, push_id, expires_at, channel) FROM STDIN"
        ) as copy:
            for d in decisions:
                copy.write_row(
                    (
                        campaign_id,
                        d.customer_id,
                        d.arm,
                        d.decision,
                        d.reason,
                        d.item_id,
                        d.score,
                        d.vehicle_id,
                        d.push_id,
                        d.expires_at,
                        None,
                    )
                )
        cur.execute(
            "INSERT INTO campaign_decisions (campaign_id, customer_id, arm, decision, reason, item_id, score,"
            " vehicle_id, push_id, decided_at, expires_at)"
            " SELECT campaign_id, customer_id, arm, decision, reason, item_id, score, vehicle_id, push_id,"
            " %s, expires_at FROM decision_staging"
            " ON CONFLICT (campaign_id, customer_id) DO UPDATE SET arm = excluded.arm,"
            " decision = excluded.decision, reason = excluded.reason, item_id = excluded.item_id,"
            " score = excluded.score, vehicle_id = excluded.vehicle_id, push_id = excluded.push_id,"
            " expires_at = excluded.expires_at"  # decided_at stays the assignment's: attribution starts there
            " WHERE campaign_decisions.decision <> ALL(%s)",
            (now, list(FINAL_OR_SENDING)),
        )


def pending(conn: psycopg.Connection[Any], spec: CampaignSpec) -> list[Outgoing]:
    """The campaign's pushes decided but not acknowledged by the broker (this run's and a crashed run's)."""
    items = load_items(conn)
    rows = conn.execute(
        "SELECT customer_id, vehicle_id, push_id, item_id, expires_at FROM campaign_decisions"
        " WHERE campaign_id = %s AND decision = 'sending' ORDER BY customer_id",
        (spec.campaign_id,),
    ).fetchall()
    out = []
    for customer, vehicle, push, item_id, expires in rows:
        item = items[item_id]
        body = PushV1(
            push_id=push,
            campaign_id=spec.campaign_id,
            title=item.title[:120],
            text=item.body[:1000],
            url=item.url,
            marketing=True,
            expires_at=expires,
        )
        out.append(Outgoing(str(customer), str(vehicle), body))
    return out


def run_campaign(
    conn: psycopg.Connection[Any],
    campaign_id: str,
    sender: Sender,
    *,
    now: datetime | None = None,
    global_control_share: float = DEFAULT_GLOBAL_CONTROL_SHARE,
    rankers: dict[str, Any] | None = None,
    webhook: WebhookChannel | None = None,
) -> RunReport:
    """One run of a running campaign: decide, record, publish (and post webhooks), mark what the broker
    acknowledged (or the endpoint took)."""
    import time

    started = time.perf_counter()
    now = now or datetime.now(UTC)
    spec, status = load_campaign(conn, campaign_id)
    if status != "running":
        raise CampaignError(f"campaign {campaign_id!r} is {status}, not running: launch it first")
    if "webhook" in spec.channels and webhook is None:
        raise CampaignError(
            f"campaign {campaign_id!r} has the webhook channel: set DRIVESIGHT_PUSH_WEBHOOK_SECRET_FILE (its"
            " signing secret) to run it"
        )
    report = RunReport(campaign_id)
    if now >= spec.ends_at:
        conn.execute(
            "UPDATE campaigns SET status = 'finished', updated_at = now() WHERE campaign_id = %s",
            (campaign_id,),
        )
        log.info("campaign %s ended at %s: finished", campaign_id, spec.ends_at.isoformat())
    elif now >= spec.starts_at:
        with conn.transaction():
            # one run at a time per campaign: a second scheduler waits, then finds the decisions made
            conn.execute("SELECT 1 FROM campaigns WHERE campaign_id = %s FOR UPDATE", (campaign_id,))
            decisions = decide(conn, spec, now, global_control_share=global_control_share, rankers=rankers)
            record(conn, campaign_id, decisions, now)
        report.audience = len(decisions)
        for d in decisions:
            report.decided[d.decision] = report.decided.get(d.decision, 0) + 1
    else:
        decisions = []
    outgoing = pending(conn, spec) if "push" in spec.channels else []
    report.published = len(outgoing)
    acknowledged = sender(outgoing) if outgoing else set()
    if webhook is not None and "webhook" in spec.channels:
        acknowledged |= _webhooks(conn, spec, webhook, now, decides_sent="push" not in spec.channels)
    # this run's sends as the broker took them: sent, or still sending (the next run publishes them again)
    mine = {d.push_id for d in decisions if d.decision == "sending"}
    if mine:
        report.decided["sent"] = len(mine & acknowledged)
        report.decided["sending"] = len(mine - acknowledged)
        if not report.decided["sending"]:
            del report.decided["sending"]
    if acknowledged:
        conn.execute(
            "UPDATE campaign_decisions SET decision = 'sent', sent_at = %s, channel = %s"
            " WHERE campaign_id = %s AND push_id = ANY(%s) AND decision = 'sending'",
            (now, "+".join(spec.channels), campaign_id, sorted(acknowledged)),
        )
    report.acknowledged = len(acknowledged)
    report.seconds = time.perf_counter() - started
    return report


def _webhooks(
    conn: psycopg.Connection[Any],
    spec: CampaignSpec,
    channel: WebhookChannel,
    now: datetime,
    *,
    decides_sent: bool,
) -> set[str]:
    """Queue a webhook per push decided (once), post what is due, and return the push ids delivered now when
    the webhook is the campaign's only channel (its delivery is then the send; a delivery that failed for good
    fails the decision). With the push channel too, the broker's acknowledgement decides and the webhook only
    informs."""
    assert spec.webhook_url is not None  # the spec requires it with the channel
    sending = [
        str(r[0])
        for r in conn.execute(
            "SELECT push_id FROM campaign_decisions WHERE campaign_id = %s AND push_id IS NOT NULL"
            " AND decision IN ('sending', 'sent')",
            (spec.campaign_id,),
        )
    ]
    enqueue(conn, sending, spec.webhook_url)
    deliver_due(conn, channel.secret, now=now, post=channel.post)
    if not decides_sent:
        return set()
    rows = conn.execute(
        "SELECT w.push_id, w.status, w.last_error FROM webhook_deliveries w JOIN campaign_decisions d"
        " USING (push_id) WHERE d.campaign_id = %s AND d.decision = 'sending' AND w.status <> 'pending'",
        (spec.campaign_id,),
    ).fetchall()
    failed = [(str(p), f"webhook failed: {e}") for p, status, e in rows if status == "failed"]
    for push, reason in failed:
        conn.execute(
            "UPDATE campaign_decisions SET decision = 'failed', reason = %s WHERE push_id = %s",
            (reason[:500], push),
        )
    return {str(p) for p, status, _ in rows if status == "delivered"}
