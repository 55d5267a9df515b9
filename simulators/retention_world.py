"""Retention offers in the churn world (simulators/churn_world.py): who sees them, what they do, what follows.

A retention campaign runs through the real engine (cloud/push) on the scores of the churn job; this module
plays the customers' side, from hidden ground truth the database never holds:

- **Seeing the offer** (:func:`answer_offers`): a push the engine sent (``sent``: consent, quiet hours and
  caps as the engine applied them) reaches a customer who is still there unless the car stays offline past the
  push's expiry (``offline_share``: reported ``expired``); then ``delivered`` and ``displayed`` (seen), and
  opened or dismissed as the customer's pushes are (satisfied, loyal customers open more). A customer who has
  left already drives no more: their car reports nothing. The holdout gets nothing, so sees nothing.
- **The hidden effect** (:func:`offer_effects`): per customer, how much a seen offer lowers their log-hazard
  of leaving, ``strength * (N(base, noise_sd) + due * [service due within a month or overdue] + fault *
  [an unrepaired fault])`` from the end state of the world: larger for customers whose service is due or
  whose fault is unrepaired, small for the others and slightly negative for a few (an offer that annoys: 8 %
  with the defaults). ``strength = 0``: an offer
  changes nothing. Nothing stored says who these customers are; the model's reasons only hint at it.
- **The days after** (:func:`simulate_follow_up`, :func:`load_follow_up`): the world goes on from its end
  state for ``days`` more days — faults, service visits when due or when a fault is open, the monthly shock,
  leaving with the world's daily hazard times ``exp(-effect)`` for customers who saw the offer — with trips
  at each customer's habit (weekly noise) until they leave (in these days leavers stop at once), written to
  the database as the cars and the dealers would have.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from edge_agent.protocol import FeedbackV1, PushAction, decode, encode, uplink_topic

from .churn_world import BASE_HAZARD, WARRANTY_DAYS, ChurnWorld, copy_lines, load_trips


@dataclass(frozen=True)
class OfferModel:
    """The hidden ground truth of retention offers (see the module docstring)."""

    strength: float = 1.0
    base: float = 0.5
    noise_sd: float = 0.35
    due: float = 1.0
    fault: float = 0.8
    offline_share: float = 0.03


def offer_effects(world: ChurnWorld, model: OfferModel, seed: int) -> np.ndarray:
    """Each customer's hidden effect of a seen offer: the reduction of their log-hazard of leaving."""
    rng = np.random.default_rng([seed, 23])
    s = world.state
    n = len(world.customers)
    due = (world.days - s["last_visit"]) >= s["interval"] - 30  # due within a month, or overdue
    fault = s["open_faults"] > 0
    effect = rng.normal(model.base, model.noise_sd, n) + model.due * due + model.fault * fault
    out: np.ndarray = model.strength * effect
    return out


def answer_offers(
    conn: psycopg.Connection[Any],
    world: ChurnWorld,
    campaign_id: str,
    at: datetime,
    model: OfferModel,
    seed: int,
) -> np.ndarray:
    """The cars' feedback on the campaign's sent pushes, stored by the ingest's own ``store_batch``; returns
    per customer (world order) whether they saw the offer."""
    from cloud.ingest.store import store_batch

    rng = np.random.default_rng([seed, 29])
    index = {str(c): k for k, c in enumerate(world.customers)}
    sent = conn.execute(
        "SELECT customer_id, vehicle_id, push_id FROM campaign_decisions"
        " WHERE campaign_id = %s AND decision = 'sent' ORDER BY customer_id",
        (campaign_id,),
    ).fetchall()
    seen = np.zeros(len(world.customers), dtype=bool)
    gone = world.truth["churn_day"] >= 0
    messages = []
    seq = 5_000_000
    for customer, vehicle, push in sent:
        k = index[str(customer)]
        if gone[k]:
            continue  # nobody drives that car any more: no feedback at all
        if rng.random() < model.offline_share:
            actions = [PushAction.EXPIRED]
        else:
            actions = [PushAction.DELIVERED, PushAction.DISPLAYED]
            if rng.random() < world.state["p_open"][k]:
                actions.append(PushAction.OPENED)
            elif rng.random() < 0.7:
                actions.append(PushAction.DISMISSED)
            seen[k] = True
        for step, action in enumerate(actions):
            moment = at + timedelta(minutes=30, seconds=step)
            seq += 1
            body = FeedbackV1(push_id=str(push), campaign_id=campaign_id, action=action, at=moment)
            payload = encode(str(vehicle), seq, body, sent_at=moment)
            messages.append(decode(uplink_topic(str(vehicle), "feedback"), payload, now=moment))
    for lo in range(0, len(messages), 2000):
        store_batch(conn, messages[lo : lo + 2000])
    return seen


@dataclass
class FollowUp:
    """The days after the world's last one: trips, service visits and who left when (absolute day index)."""

    first: int
    trips_per_day: np.ndarray  # customers x days
    visits: list[tuple[int, int, str]]  # (customer, absolute day, kind)
    churn_day: np.ndarray  # -1: stayed through the follow-up


def simulate_follow_up(
    world: ChurnWorld,
    days: int,
    seed: int,
    *,
    effect: np.ndarray | None = None,
    seen: np.ndarray | None = None,
) -> FollowUp:
    """``days`` more days of the world from its end state; customers who ``seen`` the offer leave with their
    hazard times ``exp(-effect)``."""
    rng = np.random.default_rng([seed, 31])
    s = world.state
    n = len(world.customers)
    treat = np.zeros(n) if effect is None or seen is None else np.where(seen, effect, 0.0)
    sat = s["sat"].copy()
    open_faults = s["open_faults"].copy()
    fault_age = s["fault_age"].copy()
    last_visit = s["last_visit"].copy()
    shock = s["shock"].copy()
    churn_day = world.truth["churn_day"].copy()
    visits: list[tuple[int, int, str]] = []
    for t in range(world.days, world.days + days):
        staying = churn_day < 0
        if t % 30 == 0:
            shock = rng.normal(0, 0.8, n)
        new = staying & (rng.random(n) < 0.002)
        open_faults += new
        fault_age = np.where(open_faults > 0, fault_age + 1, 0)
        sat -= 0.01 * (fault_age > 30)
        since = t - last_visit
        due = since >= s["interval"]
        p_visit = np.where(due, 0.05 * np.exp(0.6 * s["loyalty"] + 0.4 * sat), 0.0)
        p_visit = np.maximum(p_visit, np.where(open_faults > 0, 0.03 * np.exp(0.5 * s["loyalty"]), 0.0))
        visit = staying & (rng.random(n) < np.clip(p_visit, 0, 1))
        for i in np.flatnonzero(visit):
            visits.append((int(i), t, "repair" if open_faults[i] > 0 else "maintenance"))
        last_visit = np.where(visit, t, last_visit)
        open_faults = np.where(visit, 0, open_faults)
        warranty_over = (s["age0"] + t) > WARRANTY_DAYS
        overdue = since > s["interval"] + 60
        hazard = world.hazard_scale * BASE_HAZARD * np.exp(
            -0.9 * sat - 0.7 * s["loyalty"] + 0.8 * warranty_over + 0.4 * np.minimum(open_faults, 2)
            + 0.8 * overdue + shock - treat
        )  # fmt: skip
        leave = staying & (rng.random(n) < hazard)
        churn_day[leave] = t
    weekly = np.repeat(rng.lognormal(0, 0.25, (n, days // 7 + 1)), 7, axis=1)[:, :days]
    t_index = np.arange(world.days, world.days + days)[None, :]
    left = churn_day[:, None]
    mult = np.where((left >= 0) & (t_index >= left), 0.0, weekly)
    trips = rng.poisson(s["rate"][:, None] * mult).astype(np.int16)
    return FollowUp(world.days, trips, visits, churn_day)


def load_follow_up(conn: psycopg.Connection[Any], world: ChurnWorld, follow: FollowUp) -> None:
    """Write the follow-up's service visits and trips into the world's database."""
    copy_lines(
        conn,
        "service_visits",
        "visit_id, vehicle_id, visited_at, kind",
        [
            f"F{k}\t{world.vehicles[i]}\t{world.day(t)}\t{kind}\n"
            for k, (i, t, kind) in enumerate(follow.visits)
        ],
    )
    start = datetime.combine(world.first_day, datetime.min.time(), tzinfo=UTC)
    load_trips(conn, world.vehicles, follow.trips_per_day, start, follow.first)


def clear_follow_up(conn: psycopg.Connection[Any], world: ChurnWorld) -> None:
    """Remove what :func:`load_follow_up` wrote (trips after the world's last day, its service visits), so
    that another campaign can be measured on the same world from the same day."""
    end = datetime.combine(world.day(world.days), datetime.min.time(), tzinfo=UTC)
    conn.execute("DELETE FROM trips WHERE started_at >= %s", (end,))
    conn.execute("DELETE FROM service_visits WHERE visit_id LIKE 'F%%' AND visited_at >= %s", (end.date(),))


#: the retention offer the simulated campaigns push (a catalogue item, imported like any other)
OFFER_ITEM = "RET-CARE-CHECK"


def import_offer(conn: psycopg.Connection[Any], now: datetime) -> str:
    """Import the retention offer into the catalogue (valid a year from ``now``); return its item id."""
    from cloud.analytics.imports import import_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "offer.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["item_id", "kind", "title", "body", "valid_from", "valid_until", "cost_per_send"])
            w.writerow(
                [OFFER_ITEM, "service_package", "A free care check for your car",
                 "Book a free check at your dealer this month", (now - timedelta(days=1)).isoformat(),
                 (now + timedelta(days=365)).isoformat(), 0.05]
            )  # fmt: skip
        import_file(conn, "catalogue", path)
    return OFFER_ITEM


def retention_campaign(
    campaign_id: str, now: datetime, *, holdout_share: float = 0.5, days: int = 30, **changes: Any
) -> dict[str, Any]:
    """A retention campaign document for the high churn tier, starting an hour before ``now``."""
    spec: dict[str, Any] = {
        "campaign_id": campaign_id,
        "name": f"retention {campaign_id}",
        "objective": "retention",
        "audience": {"where": {"churn_tier": "high"}},
        "arms": [{"name": "offer", "content": {"item": OFFER_ITEM}}],
        "holdout_share": holdout_share,
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=7)).isoformat(),
        "retention": {"days": days, "cost_per_offer": 5.0, "value_per_retained": 800.0},
    }
    spec.update(changes)
    return spec


@dataclass
class RetentionRun:
    """One simulated retention campaign: the launch's report, the results, and the hidden truth."""

    report: Any
    results: dict[str, Any]
    seen: np.ndarray
    effect: np.ndarray
    follow: FollowUp


def run_retention_campaign(
    conn: psycopg.Connection[Any],
    world: ChurnWorld,
    spec_document: dict[str, Any],
    *,
    now: datetime,
    model: OfferModel,
    seed: int,
) -> RetentionRun:
    """Create and launch the campaign at ``now`` through cloud/push (every push acknowledged: no broker),
    let the customers see it and live the measured days, store them, and return the campaign's results as of
    the end of its window."""
    from cloud.push.campaigns import create, launch
    from cloud.push.results import campaign_results
    from cloud.push.spec import parse_spec

    spec = parse_spec(spec_document)
    settings = spec.retention_settings()
    if settings is None:
        raise ValueError("the campaign's objective is not retention")
    create(conn, spec, now=now)
    report = launch(conn, spec.campaign_id, lambda out: {o.push.push_id for o in out}, now=now)
    seen = answer_offers(conn, world, spec.campaign_id, now, model, seed)
    effect = offer_effects(world, model, seed)
    follow = simulate_follow_up(world, settings.days + 1, seed, effect=effect, seen=seen)
    load_follow_up(conn, world, follow)
    results = campaign_results(conn, spec.campaign_id, now=now + timedelta(days=settings.days + 1))
    return RetentionRun(report, results, seen, effect, follow)
