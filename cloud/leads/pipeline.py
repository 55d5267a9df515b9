"""Leads in the database: capture, then one processing run that cleans, finds duplicates, rates and routes.

:func:`capture` stores raw leads (``status = 'new'``); the same ``(source, external_id)`` twice is one lead.
:func:`process` takes every new lead, one run at a time per database:

1. **clean** (cloud/leads/clean.py): junk is ``rejected`` with the reason;
2. **duplicates** (cloud/leads/dedupe.py) against the known customers and the open leads of the last
   ``DUPLICATE_WINDOW_DAYS``: a lead that is another open lead's person is ``duplicate`` (pointing at it), one
   that is a known customer is linked to them (``customer_id``) and stays a lead, unless that customer has an
   open lead already (then it is that lead's duplicate: one person, one dealer, one conversation). Every merge
   is kept in ``lead_merges`` and can be undone (:func:`undo_merge`); an undone pair is not merged again;
3. **rating** (cloud/leads/rate.py) with the signals the database has: the customer's newest upgrade-intent
   probability (cloud/upgrade/), a service lead's due service;
4. **routing** (cloud/leads/routing.py) of the leads the person may be called about: not when the lead says
   the person did not agree (``consent_contact`` false), and for leads the system made itself (campaign,
   car, upgrade, service) only when the customer allows ``dealer_sharing`` now (cloud/privacy/consent.py); a
   lead no rule places, or not allowed, is ``unassigned`` with the reason. Each assignment is a
   ``lead_assignments`` row with its rule, why, and the first-contact deadline of the lead's grade.

:func:`escalate` ends the assignments whose deadline passed without a contact and routes those leads again
to another dealer.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
import psycopg
from psycopg.rows import tuple_row

from .clean import clean, name_key, normalise_name
from .dedupe import find_duplicates
from .model import Lead, Match, Person, RawLead, Rejection
from .rate import RatingSettings, rate
from .routing import DealerProfile, Placement, RoutableLead, RoutingConfig, route, smoothed_conversion
from .webhooks import enqueue as enqueue_webhooks

#: how far back an open lead is a candidate duplicate of a new one
DUPLICATE_WINDOW_DAYS = 90
#: statuses of a lead still in play (a dealer may still turn it into a sale)
OPEN = ("unassigned", "assigned", "contacted", "appointment", "test_drive")
#: why a lead waits: every dealer its rules allow was at capacity (it is routed again by the next runs)
NO_ROOM = "no routing rule has a dealer with room"
#: how long an assignment has before it counts in its dealer's conversion (orders take days)
SETTLE_DAYS = 7
#: how long a lead waits for room before it is left to the lead desk (``unassigned`` as it is)
WAIT_DAYS = 14
#: a lead a new one may be a duplicate of: with a dealer, or waiting for one (not one that may not be called:
#: a new lead of that person, say with the consent the old one lacked, must not vanish into it)
IN_PLAY = (
    "(status IN ('assigned', 'contacted', 'appointment', 'test_drive')"
    f" OR (status = 'unassigned' AND status_reason = '{NO_ROOM}'))"
)
#: sources whose leads the system made from what it knows (no form the person filled in)
SYSTEM_SOURCES = ("campaign", "car", "upgrade", "service")


class LeadError(RuntimeError):
    """A run that cannot start (another holds the lock) or an unknown lead or merge."""


@dataclass(frozen=True, slots=True)
class CaptureReport:
    """What :func:`capture` stored."""

    captured: int
    already: int  # the same source and external id was captured before


def capture(conn: psycopg.Connection[Any], raws: Sequence[RawLead]) -> CaptureReport:
    """Store ``raws`` as new leads (one transaction); a lead whose ``(source, external_id)`` is stored
    already is not stored again."""
    inserted = 0
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE lead_in (LIKE leads INCLUDING DEFAULTS) ON COMMIT DROP")
        columns = (
            "source", "external_id", "channel", "activity", "created_at", "name", "phone", "email", "city",
            "region", "model_interest", "intent", "message", "customer_id", "vehicle_id", "consent_contact",
            "raw",
        )  # fmt: skip
        with cur.copy(f"COPY lead_in ({', '.join(columns)}) FROM STDIN") as copy:
            for r in raws:
                copy.write_row(
                    (
                        r.source, r.external_id, r.channel, r.activity, r.created_at, r.name, r.phone,
                        r.email, r.city, r.region, r.model_interest, r.intent, r.message, r.customer_id,
                        r.vehicle_id, r.consent_contact, json.dumps(_raw_json(r)),
                    )
                )  # fmt: skip
        # a customer id the source named must exist (an erased or unknown one is kept in raw only)
        cur.execute(
            "UPDATE lead_in l SET customer_id = NULL WHERE customer_id IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = l.customer_id)"
        )
        cur.execute(
            f"INSERT INTO leads ({', '.join(columns)})"
            f" SELECT DISTINCT ON (source, coalesce(external_id, lead_id::text)) {', '.join(columns)}"
            " FROM lead_in ORDER BY source, coalesce(external_id, lead_id::text), created_at"
            " ON CONFLICT (source, external_id) DO NOTHING"
        )
        inserted = cur.rowcount
    return CaptureReport(inserted, len(raws) - inserted)


def _raw_json(r: RawLead) -> dict[str, Any]:
    out = asdict(r)
    out["created_at"] = r.created_at.isoformat()
    return out


def _raw_lead(data: dict[str, Any]) -> RawLead:
    data = dict(data)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    return RawLead(**data)


@dataclass(slots=True)
class ProcessReport:
    """What one :func:`process` run did."""

    leads: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # by reason (its first words)
    duplicates: int = 0
    linked_to_customers: int = 0  # found to be a known customer the source did not name
    grades: dict[str, int] = field(default_factory=dict)
    assigned: dict[str, int] = field(default_factory=dict)  # by rule
    unassigned: dict[str, int] = field(default_factory=dict)  # by reason
    waiting_assigned: int = 0  # earlier leads that waited for room and got a dealer in this run
    webhooks_queued: int = 0  # assignments to post to their dealer's webhook (cloud/leads/webhooks.py)
    seconds: dict[str, float] = field(default_factory=dict)


def _e164(digits: str | None) -> str | None:
    """A customer's stored phone (digits, country code 86 dropped) as E.164, or None."""
    if not digits:
        return None
    try:
        number = phonenumbers.parse(digits if len(digits) <= 11 else "+" + digits, "CN")
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def known_people(conn: psycopg.Connection[Any], since: datetime) -> list[Person]:
    """The known customers and the open leads since ``since`` (as ``lead:<id>``), for duplicate finding."""
    people = []
    cur = conn.cursor(row_factory=tuple_row)
    for customer, name, phone, email, city in cur.execute(
        "SELECT customer_id, name, phone, email, city FROM customers"
        " WHERE phone IS NOT NULL OR email IS NOT NULL"
    ):
        shown = normalise_name(name)
        people.append(Person(str(customer), shown, _e164(phone), email, city, name_key(shown)))
    for lead_id, name, phone, email, city, key in cur.execute(
        f"SELECT lead_id, name, phone, email, city, name_key FROM leads WHERE {IN_PLAY} AND created_at >= %s",
        (since,),
    ):
        people.append(Person(f"lead:{lead_id}", name, phone, email, city, key))
    return people


def process(
    conn: psycopg.Connection[Any],
    routing: RoutingConfig,
    *,
    now: datetime,
    rating: RatingSettings | None = None,
    default_region: str = "CN",
    progress: Callable[[str], None] = lambda _m: None,
) -> ProcessReport:
    """Clean, deduplicate, rate and route every new lead (see the module docstring); one transaction."""
    report = ProcessReport()
    with conn.transaction():
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(hashtext('drivesight-leads'))").fetchone()
        if not locked or not locked[0]:
            raise LeadError("another leads run holds the lock on this database; try again when it ends")
        started = time.perf_counter()
        rows = conn.execute(
            "SELECT lead_id, raw FROM leads WHERE status = 'new' ORDER BY created_at, lead_id"
        ).fetchall()
        ids = [int(r[0]) for r in rows]
        report.leads = len(ids)
        progress(f"{len(ids)} new leads")
        if not ids:
            report.waiting_assigned = route_waiting(conn, routing, now=now)
            report.webhooks_queued = enqueue_webhooks(conn, now)
            return report
        cleaned: list[tuple[int, Lead]] = []
        rejected: list[tuple[int, Rejection]] = []
        for lead_id, (_id, raw) in zip(ids, rows, strict=True):
            result = clean(_raw_lead(raw), default_region=default_region, now=now)
            if isinstance(result, Lead):
                cleaned.append((lead_id, result))
            else:
                rejected.append((lead_id, result))
        report.seconds["clean"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        people = known_people(conn, now - timedelta(days=DUPLICATE_WINDOW_DAYS))
        undone = _undone(conn)
        matches = _allowed(undone, find_duplicates([lead for _id, lead in cleaned], people), cleaned)
        report.seconds["dedupe"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        outcome = _resolve(conn, cleaned, matches, undone)
        report.duplicates = sum(1 for o in outcome.values() if o.duplicate_of is not None)
        report.linked_to_customers = sum(1 for o in outcome.values() if o.merged_customer)
        signals = _signals(conn, {o.customer_id for o in outcome.values() if o.customer_id})
        # the leads that waited for room go first: they have waited longest, and their deadline runs
        report.waiting_assigned = route_waiting(conn, routing, now=now)
        placements = _route_all(conn, routing, cleaned, outcome, signals, rating, now, report)
        report.seconds["rate_route"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        _write(conn, rejected, cleaned, outcome, placements, now)
        report.seconds["write"] = round(time.perf_counter() - started, 3)
        report.webhooks_queued = enqueue_webhooks(conn, now)
        report.rejected = dict(Counter(_reason_kind(r.reason) for _id, r in rejected).most_common())
    return report


def _reason_kind(reason: str) -> str:
    """A rejection reason without its particulars (the value quoted, the domain named), for counting."""
    kind = reason.split(":")[0].split(" '")[0].split(' "')[0]
    return re.sub(r" domain \S+$", " domain", kind)[:60]


def _undone(conn: psycopg.Connection[Any]) -> set[tuple[int, str]]:
    """The (lead, other) pairs a person said are not the same (undone merges): ``lead:<id>`` or a customer."""
    return {
        (int(lead), str(other))
        for lead, other in conn.execute(
            "SELECT lead_id, coalesce('lead:' || into_lead::text, customer_id) FROM lead_merges"
            " WHERE undone_at IS NOT NULL"
        )
    }


def _allowed(
    undone: set[tuple[int, str]], matches: list[Match], cleaned: list[tuple[int, Lead]]
) -> list[Match]:
    """``matches`` without the pairs a person undid before."""
    if not undone:
        return matches
    out = []
    for m in matches:
        other = f"lead:{cleaned[m.other][0]}" if isinstance(m.other, int) else m.other
        if (cleaned[m.index][0], other) not in undone:
            out.append(m)
    return out


@dataclass(slots=True)
class _Outcome:
    customer_id: str | None
    duplicate_of: int | None = None
    merge_rule: str | None = None
    merge_score: float = 0.0
    merged_customer: bool = False


def _resolve(
    conn: psycopg.Connection[Any],
    cleaned: list[tuple[int, Lead]],
    matches: list[Match],
    undone: set[tuple[int, str]],
) -> dict[int, _Outcome]:
    """Per new lead id: its customer, and the lead it duplicates (if any), with the merge's rule."""
    out = {lead_id: _Outcome(lead.raw.customer_id) for lead_id, lead in cleaned}
    for m in matches:
        lead_id = cleaned[m.index][0]
        o = out[lead_id]
        o.merge_rule, o.merge_score = m.rule, m.score
        if isinstance(m.other, int):
            o.duplicate_of = cleaned[m.other][0]
        elif m.other.startswith("lead:"):
            o.duplicate_of = int(m.other.removeprefix("lead:"))
        elif m.other != lead_customer(cleaned[m.index][1]):  # the source naming the customer is no merge
            o.customer_id, o.merged_customer = m.other, True
    # one person, one open lead: a new lead of a customer with an open lead (stored, or earlier in this
    # batch) is that lead's duplicate
    customers = sorted({o.customer_id for o in out.values() if o.customer_id and o.duplicate_of is None})
    open_lead = {
        str(c): int(lead)
        for c, lead in conn.execute(
            "SELECT DISTINCT ON (customer_id) customer_id, lead_id FROM leads"
            f" WHERE customer_id = ANY(%s) AND {IN_PLAY} ORDER BY customer_id, created_at, lead_id",
            (customers,),
        )
    }
    for lead_id, _lead in cleaned:
        o = out[lead_id]
        if o.customer_id is None or o.duplicate_of is not None:
            continue
        first = open_lead.setdefault(o.customer_id, lead_id)
        if first != lead_id and (lead_id, f"lead:{first}") not in undone:
            o.duplicate_of = first
            o.merge_rule, o.merge_score = o.merge_rule or "same_customer", o.merge_score or 1.0
    return out


def lead_customer(lead: Lead) -> str | None:
    """The customer the lead's source named (None: it named none)."""
    return lead.raw.customer_id


def _signals(conn: psycopg.Connection[Any], customers: set[str]) -> dict[str, dict[str, float]]:
    """Per customer, the rating signals the database holds (the newest upgrade-intent probability)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for customer, p in conn.execute(
        "SELECT DISTINCT ON (customer_id) customer_id, probability FROM upgrade_scores"
        " WHERE customer_id = ANY(%s) ORDER BY customer_id, day DESC",
        (sorted(customers),),
    ):
        out[str(customer)]["upgrade_probability"] = float(p)
    return out


@dataclass(frozen=True, slots=True)
class _Placed:
    grade: str
    score: float
    reasons: tuple[str, ...]
    dealer_id: str | None
    rule: str | None
    why: str
    due_at: datetime | None


def dealer_profiles(conn: psycopg.Connection[Any]) -> dict[str, DealerProfile]:
    """Every dealer as routing sees it."""
    return {
        str(d): DealerProfile(str(d), region, str(role), capacity, frozenset(models or ()))
        for d, region, role, capacity, models in conn.execute(
            "SELECT dealer_id, region, role, capacity_per_day, models FROM dealers ORDER BY dealer_id"
        )
    }


def loads_and_conversion(
    conn: psycopg.Connection[Any], routing: RoutingConfig, dealers: Sequence[str], now: datetime
) -> tuple[Counter[str], dict[str, float]]:
    """Leads assigned to each dealer on ``now``'s day (UTC), and each one's smoothed conversion (routing's
    inputs)."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    load: Counter[str] = Counter(
        {
            str(d): int(n)
            for d, n in conn.execute(
                "SELECT dealer_id, count(*) FROM lead_assignments"
                " WHERE assigned_at >= %s AND assigned_at < %s GROUP BY dealer_id",
                (day, day + timedelta(days=1)),
            )
        }
    )
    # every assignment counts for its dealer, one escalated away too (a dealer that lets leads lapse does not
    # look better for it), and only once it had SETTLE_DAYS to turn into an order
    assigned: dict[str, int] = {}
    orders: dict[str, int] = {}
    for d, n, o in conn.execute(
        "SELECT a.dealer_id, count(*),"
        " count(*) FILTER (WHERE l.status = 'order' AND l.dealer_id = a.dealer_id)"
        " FROM lead_assignments a JOIN leads l USING (lead_id)"
        " WHERE a.assigned_at >= %s AND a.assigned_at < %s GROUP BY a.dealer_id",
        (now - timedelta(days=routing.conversion_days), now - timedelta(days=SETTLE_DAYS)),
    ):
        assigned[str(d)], orders[str(d)] = int(n), int(o)
    return load, smoothed_conversion(assigned, orders, dealers, routing.conversion_prior)


def owner_dealers(conn: psycopg.Connection[Any], customers: Sequence[str]) -> dict[str, str]:
    """Each of ``customers``' dealer: the dealer of their newest car that has one."""
    return {
        str(c): str(d)
        for c, d in conn.execute(
            "SELECT DISTINCT ON (customer_id) customer_id, dealer_id FROM vehicles"
            " WHERE customer_id = ANY(%s) AND dealer_id IS NOT NULL ORDER BY customer_id, first_seen DESC",
            (list(customers),),
        )
    }


def _route_all(
    conn: psycopg.Connection[Any],
    routing: RoutingConfig,
    cleaned: list[tuple[int, Lead]],
    outcome: dict[int, _Outcome],
    signals: dict[str, dict[str, float]],
    rating: RatingSettings | None,
    now: datetime,
    report: ProcessReport,
) -> dict[int, _Placed]:
    dealers = dealer_profiles(conn)
    load, conversion = loads_and_conversion(conn, routing, list(dealers), now)
    customers = sorted({o.customer_id for o in outcome.values() if o.customer_id})
    sharing = _sharing(conn, customers)
    owner_dealer = owner_dealers(conn, customers)
    grades: Counter[str] = Counter()
    assigned: Counter[str] = Counter()
    unassigned: Counter[str] = Counter()
    placed: dict[int, _Placed] = {}
    for lead_id, lead in cleaned:
        o = outcome[lead_id]
        if o.duplicate_of is not None:
            continue
        own = dict(signals.get(o.customer_id or "", {}))
        if lead.raw.source == "service":
            own["service_due"] = 1.0
        r = rate(lead, now=now, signals=own, settings=rating)
        grades[r.grade] += 1
        refusal = _not_to_be_called(lead, o, sharing)
        placement = None
        if refusal is None:
            placement = route(
                RoutableLead(
                    lead.raw.source, lead.raw.channel, r.grade, lead.raw.intent, lead.region,
                    lead.model_interest, owner_dealer.get(o.customer_id or ""),
                ),
                dealers, routing, load_today=load, conversion=conversion,
            )  # fmt: skip
            refusal = None if placement is not None else NO_ROOM
        if placement is None:
            unassigned[refusal or ""] += 1
            placed[lead_id] = _Placed(r.grade, r.score, r.reasons, None, None, refusal or "", None)
            continue
        load[placement.dealer_id] += 1
        assigned[placement.rule] += 1
        hours = getattr(routing.deadlines, r.grade)
        placed[lead_id] = _Placed(
            r.grade, r.score, r.reasons, placement.dealer_id, placement.rule, placement.why,
            now + timedelta(hours=hours),
        )  # fmt: skip
    report.grades = dict(sorted(grades.items()))
    report.assigned = dict(assigned.most_common())
    report.unassigned = dict(unassigned.most_common())
    return placed


def _sharing(conn: psycopg.Connection[Any], customers: Sequence[str]) -> set[str]:
    """The ones among ``customers`` who allow ``dealer_sharing`` now."""
    return {
        str(c)
        for (c,) in conn.execute(
            "SELECT customer_id FROM consent_current WHERE scope = 'dealer_sharing' AND granted"
            " AND customer_id = ANY(%s)",
            (list(customers),),
        )
    }


def _may_not_call(
    source: str, consent_contact: bool | None, customer: str | None, sharing: set[str]
) -> str | None:
    """Why the person may not be called about this lead now (None: they may)."""
    if consent_contact is False:
        return "the person did not agree to be contacted"
    # a lead the system made from what it knows (no form filled in) needs the customer's standing consent to
    # be passed to a dealer, unless the person agreed to be contacted about this very lead (a campaign's
    # "call me back" button)
    if (
        source in SYSTEM_SOURCES
        and consent_contact is not True
        and (customer is None or customer not in sharing)
    ):
        return "a lead the system made: the customer does not allow dealer_sharing now"
    return None


def _not_to_be_called(lead: Lead, o: _Outcome, sharing: set[str]) -> str | None:
    """Why this lead's person may not be called about it (None: they may)."""
    if not lead.contactable:
        return "no valid phone or e-mail"
    return _may_not_call(lead.raw.source, lead.raw.consent_contact, o.customer_id, sharing)


def _write(
    conn: psycopg.Connection[Any],
    rejected: list[tuple[int, Rejection]],
    cleaned: list[tuple[int, Lead]],
    outcome: dict[int, _Outcome],
    placed: dict[int, _Placed],
    now: datetime,
) -> None:
    """Every decision of the run: the leads' new state, the merges, the assignments (COPY, then UPDATE)."""
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE lead_out (lead_id bigint, status text, status_reason text, name text,"
            " phone text, email text, city text, region text, model_interest text, customer_id text,"
            " contactable boolean,"
            " name_key text, notes text[], grade text, score real, reasons jsonb, duplicate_of bigint,"
            " dealer_id text, contact_due_at timestamptz) ON COMMIT DROP"
        )
        with cur.copy("COPY lead_out FROM STDIN") as copy:
            for lead_id, rejection in rejected:
                copy.write_row((lead_id, "rejected", rejection.reason[:500], *([None] * 16)))
            for lead_id, lead in cleaned:
                o = outcome[lead_id]
                p = placed.get(lead_id)
                if o.duplicate_of is not None:
                    status, reason = "duplicate", f"{o.merge_rule} ({o.merge_score:.2f})"
                elif p is not None and p.dealer_id is not None:
                    status, reason = "assigned", None
                else:
                    status, reason = "unassigned", p.why if p else None
                copy.write_row(
                    (
                        lead_id, status, reason, lead.name, lead.phone, lead.email, lead.city, lead.region,
                        lead.model_interest, o.customer_id, lead.contactable, lead.name_key, list(lead.notes),
                        p.grade if p else None, p.score if p else None,
                        json.dumps(list(p.reasons)) if p else None, o.duplicate_of,
                        p.dealer_id if p else None, p.due_at if p else None,
                    )
                )  # fmt: skip
        cur.execute(
            "UPDATE leads l SET status = o.status, status_reason = o.status_reason,"
            " name = coalesce(o.name, l.name), phone = o.phone, email = o.email, city = o.city,"
            " region = o.region, model_interest = o.model_interest,"
            # a rejected lead keeps the customer its source named: it goes with that person's erasure
            " customer_id = CASE WHEN o.status = 'rejected' THEN l.customer_id ELSE o.customer_id END,"
            " contactable = coalesce(o.contactable, false), name_key = o.name_key,"
            " notes = coalesce(o.notes, '{}'), grade = o.grade, score = o.score, reasons = o.reasons,"
            " duplicate_of_lead = o.duplicate_of, dealer_id = o.dealer_id,"
            " assigned_at = CASE WHEN o.dealer_id IS NULL THEN NULL ELSE %s::timestamptz END,"
            " contact_due_at = o.contact_due_at, updated_at = %s::timestamptz"
            " FROM lead_out o WHERE o.lead_id = l.lead_id",
            (now, now),
        )
        merges = [
            (lead_id, o.duplicate_of, None, o.merge_rule, o.merge_score)
            if o.duplicate_of is not None
            else (lead_id, None, o.customer_id, o.merge_rule, o.merge_score)
            for lead_id, o in outcome.items()
            if o.merge_rule is not None and (o.duplicate_of is not None or o.merged_customer)
        ]
        cur.executemany(
            "INSERT INTO lead_merges (lead_id, into_lead, customer_id, rule, score, merged_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(*m, now) for m in merges],
        )
        with cur.copy(
            "COPY lead_assignments (lead_id, dealer_id, rule, why, assigned_at, contact_due_at) FROM STDIN"
        ) as copy:
            for lead_id, p in placed.items():
                if p.dealer_id is not None:
                    copy.write_row((lead_id, p.dealer_id, p.rule, p.why[:500], now, p.due_at))


def place_again(
    conn: psycopg.Connection[Any],
    routing: RoutingConfig,
    rows: Sequence[tuple[Any, ...]],
    *,
    now: datetime,
    why: str,
    exclude: dict[int, set[str]] | None = None,
) -> list[tuple[int, Placement | None, str | None]]:
    """Route leads again (``rows``: :data:`REROUTE_COLUMNS`), in order, as far as today's capacity goes, never
    to a dealer of ``exclude[lead_id]``, and only as far as the person still may be called (consent is read
    now: it may have been withdrawn since); each one placed is assigned (``why`` before the rule's own why).
    Per lead: its placement, or None and why not (:data:`NO_ROOM`, or the consent's reason). Runs in the
    caller's transaction."""
    dealers = dealer_profiles(conn)
    load, conversion = loads_and_conversion(conn, routing, list(dealers), now)
    customers = sorted({str(r[7]) for r in rows if r[7]})
    owners = owner_dealers(conn, customers)
    sharing = _sharing(conn, customers)
    out: list[tuple[int, Placement | None, str | None]] = []
    placed = []
    for lead_id, source, channel, grade, intent, region, model, customer, consent_contact in rows:
        refusal = _may_not_call(source, consent_contact, customer, sharing)
        if refusal is not None:
            out.append((int(lead_id), None, refusal))
            continue
        placement = route(
            RoutableLead(source, channel, grade or "C", intent, region, model, owners.get(str(customer))),
            dealers,
            routing,
            load_today=load,
            conversion=conversion,
            exclude=(exclude or {}).get(int(lead_id), set()),
        )
        out.append((int(lead_id), placement, None if placement is not None else NO_ROOM))
        if placement is not None:
            load[placement.dealer_id] += 1
            due = now + timedelta(hours=getattr(routing.deadlines, grade or "C"))
            placed.append((int(lead_id), placement, due))
    with conn.cursor() as cur:
        # only a lead still waiting or just escalated (an undo of its merge must not be overwritten)
        cur.executemany(
            "UPDATE leads SET status = 'assigned', status_reason = NULL, dealer_id = %s, assigned_at = %s,"
            " contact_due_at = %s, updated_at = %s"
            " WHERE lead_id = %s AND status IN ('unassigned', 'assigned')",
            [(p.dealer_id, now, due, now, lead_id) for lead_id, p, due in placed],
        )
        cur.executemany(
            "INSERT INTO lead_assignments (lead_id, dealer_id, rule, why, assigned_at, contact_due_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(lead_id, p.dealer_id, p.rule, f"{why}: {p.why}", now, due) for lead_id, p, due in placed],
        )
        refused = [(reason, lead_id) for lead_id, p, reason in out if p is None and reason != NO_ROOM]
        cur.executemany(
            "UPDATE leads SET status = 'unassigned', status_reason = %s, dealer_id = NULL,"
            " assigned_at = NULL, contact_due_at = NULL WHERE lead_id = %s",
            refused,
        )
    return out


#: what :func:`place_again` reads of a lead
REROUTE_COLUMNS = (
    "lead_id, source, channel, grade, intent, region, model_interest, customer_id, consent_contact"
)


def route_waiting(conn: psycopg.Connection[Any], routing: RoutingConfig, *, now: datetime) -> int:
    """Route again the leads that waited for room (:data:`NO_ROOM`, created within :data:`WAIT_DAYS`), best
    grade and oldest first, never back to a dealer they were escalated from; return how many got a dealer."""
    rows = conn.execute(
        f"SELECT {REROUTE_COLUMNS} FROM leads WHERE status = 'unassigned' AND status_reason = %s"
        " AND created_at >= %s ORDER BY grade, created_at, lead_id",
        (NO_ROOM, now - timedelta(days=WAIT_DAYS)),
    ).fetchall()
    if not rows:
        return 0
    escalated: dict[int, set[str]] = {}
    for lead_id, dealer in conn.execute(
        "SELECT lead_id, dealer_id FROM lead_assignments"
        " WHERE lead_id = ANY(%s) AND end_reason = 'escalated'",
        ([int(r[0]) for r in rows],),
    ):
        escalated.setdefault(int(lead_id), set()).add(str(dealer))
    placed = place_again(conn, routing, rows, now=now, why="waited for room", exclude=escalated)
    return sum(1 for _id, p, _why in placed if p is not None)


def undo_merge(conn: psycopg.Connection[Any], merge_id: int, *, now: datetime) -> int:
    """Undo a merge: the lead is new again (the next :func:`process` looks at it afresh, and never merges
    the same pair again); the merge row stays with ``undone_at``. Refused (:class:`LeadError`) when the lead
    has been followed up since (a dealer worked it as it was). Returns the lead id."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('drivesight-leads'))")
        row = conn.execute(
            "SELECT m.lead_id, m.customer_id, l.status, l.raw->>'customer_id' FROM lead_merges m"
            " JOIN leads l USING (lead_id) WHERE m.merge_id = %s AND m.undone_at IS NULL FOR UPDATE OF m, l",
            (merge_id,),
        ).fetchone()
        if row is None:
            raise LeadError(f"no merge {merge_id} that is not undone already")
        lead_id, customer, status, named = int(row[0]), row[1], str(row[2]), row[3]
        if status not in ("duplicate", "unassigned", "assigned"):
            raise LeadError(f"lead {lead_id} is {status} already: a dealer worked it; its merge stays")
        conn.execute("UPDATE lead_merges SET undone_at = %s WHERE merge_id = %s", (now, merge_id))
        # a customer merge undone: the lead keeps only the customer its source named
        keep = None if customer is not None else "customer_id"
        conn.execute(
            "UPDATE leads SET status = 'new', status_reason = NULL, duplicate_of_lead = NULL,"
            " dealer_id = NULL, assigned_at = NULL, contact_due_at = NULL,"
            f" customer_id = {keep or '%s'}, updated_at = %s WHERE lead_id = %s",
            ((named, now, lead_id) if keep is None else (now, lead_id)),
        )
        conn.execute(
            "UPDATE lead_assignments SET ended_at = %s, end_reason = 'reassigned'"
            " WHERE lead_id = %s AND ended_at IS NULL",
            (now, lead_id),
        )
    return lead_id
