"""Customers who buy their next car: a seeded world for the upgrade intent, with its hidden ground truth.

Each customer owns one car at the first day (bought 0.3-10 years before) and has hidden traits the database
never holds: an appetite for new cars, a yearly mileage, whether they are online (an account linked to them)
and a monthly shock (an offer seen elsewhere, a bonus, a neighbour's new car) that is pure noise to any
model. Before the first day the car has a history: workshop visits about once a year, each with its odometer
reading and a cost that grows with the car's age, and the customer's life events of the last two years. Day
by day, until the customer buys:

- life events happen (a child, a marriage, a move, a new job, retirement; about one in six customers a year);
- the car is serviced about once a year (odometer and cost recorded; older cars cost more, more each year);
- online customers look at content (articles; new-model items and test drives now and then);
- the customer buys another car with a daily hazard ``base * exp(0.35 min(age - 4, 6) + 0.9 (km / 100,000)
  + 0.5 warranty_over + 0.9 life_event_within_180_days + 0.7 appetite + shock)``.

Two in three buyers shop first: over the 20-70 days before they buy, online ones look at new-model content
six times as often. A purchase is a new car and its purchase row (the old car stays theirs), after which the
customer buys nothing more. So what the model can see (age, odometer, warranty, service costs, life events,
new-model interest) is a noisy trace of the hidden state, never the rule. ``truth["buy_day"]`` is the day each
customer bought (-1: did not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

LIFE_EVENTS = ("new_child", "married", "moved", "new_job", "retired")
WARRANTY_DAYS = 1096
#: daily hazard of a 4-year-old car with no mileage, no event, average appetite (a few % buy in 90 days)
BASE_HAZARD = 0.00006
NEW_MODEL_ITEMS = ("NM-SUV-2027", "NM-EV-2027", "TD-EV-2027")
ARTICLES = ("ART-TYRES", "ART-CHARGING", "ART-ROADTRIP", "ART-SAFETY", "ART-APP")
DEALERS = ("UD1", "UD2", "UD3")


@dataclass
class UpgradeWorld:
    """Per-entity arrays to load, and the hidden truth."""

    first_day: date
    days: int
    customers: np.ndarray
    vehicles: np.ndarray
    dealers: np.ndarray
    purchased: np.ndarray  # datetime64[D] of the first car
    marketing: np.ndarray  # bool
    online: np.ndarray  # bool: has a linked account
    visits: list[tuple[int, int, float, float]]  # (customer, day, odometer_km, cost); day < 0: history
    life_events: list[tuple[int, int, str]]  # (customer, day, kind)
    interactions: list[tuple[int, int, str]]  # (customer, day, item)
    truth: dict[str, np.ndarray] = field(default_factory=dict)

    def day(self, index: int) -> date:
        """The calendar day of a day index (negative: before the first day)."""
        return self.first_day + timedelta(days=index)


def simulate_upgrade_world(
    customers: int, seed: int, *, days: int = 300, first_day: date = date(2026, 1, 5)
) -> UpgradeWorld:
    """``customers`` car owners over ``days`` days; who buys again, and when, is drawn from hidden traits and
    noise."""
    rng = np.random.default_rng(seed)
    n = customers
    age0 = rng.uniform(110, 3650, n)  # days owned at the first day
    km_per_day = rng.lognormal(np.log(15_000 / 365), 0.35, n)
    appetite = rng.normal(0, 1, n)
    online = rng.random(n) < 0.7
    visits: list[tuple[int, int, float, float]] = []
    # the workshop history: about once a year since the purchase, cost growing with age
    phase = rng.uniform(200, 400, n)
    for i in range(n):
        t = -age0[i] + phase[i]
        while t < days:
            age_years = (age0[i] + t) / 365.25
            cost = max(50.0, 150 + 90 * age_years + 25 * age_years**2 + rng.normal(0, 80))
            visits.append((i, int(t), round(float(km_per_day[i] * (age0[i] + t)), 0), round(cost, 2)))
            t += rng.uniform(300, 420)
    # life events over the two years before the first day and during the world
    life: list[tuple[int, int, str]] = []
    events_by_day: dict[int, np.ndarray] = {}
    for t in range(-730, days):
        happen = np.flatnonzero(rng.random(n) < 0.17 / 365)
        events_by_day[t] = happen
        life += [(int(i), t, LIFE_EVENTS[int(rng.integers(0, len(LIFE_EVENTS)))]) for i in happen]
    last_event = np.full(n, -10_000, dtype=np.int64)
    for t in range(-730, 0):
        last_event[events_by_day[t]] = t
    buy_day = np.full(n, -1, dtype=np.int64)
    shock = np.zeros(n)
    for t in range(days):
        last_event[events_by_day[t]] = t
        if t % 30 == 0:
            shock = rng.normal(0, 0.8, n)
        age = (age0 + t) / 365.25
        km = km_per_day * (age0 + t)
        hazard = BASE_HAZARD * np.exp(
            0.35 * np.clip(age - 4, -4, 6) + 0.9 * km / 100_000 + 0.5 * ((age0 + t) > WARRANTY_DAYS)
            + 0.9 * ((t - last_event) <= 180) + 0.7 * appetite + shock
        )  # fmt: skip
        buy = (buy_day < 0) & (rng.random(n) < hazard)
        buy_day[buy] = t
    # online behaviour: articles and now and then new-model content; shoppers look far more before they buy
    shopper = (buy_day >= 0) & (rng.random(n) < 2 / 3)
    shop_len = rng.uniform(20, 70, n)
    interactions: list[tuple[int, int, str]] = []
    base_nm = 0.25 / 30 * np.exp(0.3 * appetite)
    for t in range(-120, days):
        shopping = shopper & (t < buy_day) & (buy_day - t <= shop_len)
        rate = np.where(shopping, 6 * base_nm, base_nm) * online
        for k in np.flatnonzero(rng.random(n) < rate):
            interactions.append((int(k), t, NEW_MODEL_ITEMS[int(rng.integers(0, len(NEW_MODEL_ITEMS)))]))
        for k in np.flatnonzero(rng.random(n) < online * 0.6 / 30):
            interactions.append((int(k), t, ARTICLES[int(rng.integers(0, len(ARTICLES)))]))
    purchased = np.datetime64(first_day) - age0.astype(np.int64).astype("timedelta64[D]")
    consent_rng = np.random.default_rng([seed, 18])
    return UpgradeWorld(
        first_day=first_day,
        days=days,
        customers=np.array([f"U{i:07d}" for i in range(n)]),
        vehicles=np.array([f"LUP{i:014d}" for i in range(n)]),
        dealers=rng.choice(np.array(DEALERS), n),
        purchased=purchased,
        marketing=consent_rng.random(n) < 0.85,
        online=online,
        visits=visits,
        life_events=life,
        interactions=interactions,
        truth={"buy_day": buy_day, "appetite": appetite, "shopper": shopper, "km_per_day": km_per_day},
    )


def _copy(conn: psycopg.Connection[Any], table: str, columns: str, lines: list[str]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for lo in range(0, len(lines), 200_000):
            copy.write("".join(lines[lo : lo + 200_000]))


def load_upgrade_world(
    conn: psycopg.Connection[Any], world: UpgradeWorld, progress: Callable[[str], None] | None = None
) -> None:
    """Write the world into a migrated database as the CRM import would have (COPY, for size): dealers,
    customers, cars and purchases (the new cars bought within the world too), marketing consent, workshop
    visits with odometer and cost, life events, online accounts linked to customers, content and
    interactions."""
    say = progress or (lambda _m: None)
    w = world
    n = len(w.customers)
    stamp = datetime.combine(w.first_day, datetime.min.time(), tzinfo=UTC).isoformat()
    _copy(conn, "dealers", "dealer_id, name, region", [f"{d}\tdealer {d}\tnorth\n" for d in DEALERS])
    _copy(conn, "customers", "customer_id, region", [f"{c}\tnorth\n" for c in w.customers])
    buy_day = w.truth["buy_day"]
    cars = [(w.vehicles[i], i, str(w.purchased[i])) for i in range(n)]
    cars += [(f"LUN{k:014d}", int(k), str(w.day(int(buy_day[k])))) for k in np.flatnonzero(buy_day >= 0)]
    _copy(
        conn,
        "vehicles",
        "vehicle_id, first_seen, last_seen, customer_id, dealer_id, model, time_zone",
        [
            f"{v}\t{stamp}\t{stamp}\t{w.customers[i]}\t{w.dealers[i]}\tDS-SUV\tAsia/Shanghai\n"
            for v, i, _d in cars
        ],
    )
    _copy(
        conn,
        "purchases",
        "vehicle_id, customer_id, dealer_id, purchased_at",
        [f"{v}\t{w.customers[i]}\t{w.dealers[i]}\t{d}\n" for v, i, d in cars],
    )
    _copy(
        conn,
        "consent_events",
        "customer_id, scope, granted, at, source",
        [
            f"{c}\tmarketing\t{'t' if g else 'f'}\t{d}T10:00:00Z\tdealer\n"
            for c, g, d in zip(w.customers, w.marketing, w.purchased.astype(str), strict=True)
        ],
    )
    _copy(
        conn,
        "service_visits",
        "visit_id, vehicle_id, dealer_id, visited_at, kind, cost, odometer_km",
        [
            f"UV{k}\t{w.vehicles[i]}\t{w.dealers[i]}\t{w.day(t)}\tmaintenance\t{cost}\t{km}\n"
            for k, (i, t, km, cost) in enumerate(w.visits)
        ],
    )
    _copy(
        conn,
        "life_events",
        "customer_id, kind, happened_on",
        sorted({f"{w.customers[i]}\t{kind}\t{w.day(t)}\n" for i, t, kind in w.life_events}),
    )
    say(f"{n} customers, {len(cars)} cars, {len(w.visits)} visits, {len(w.life_events)} life events")
    _copy(
        conn,
        "content_items",
        "item_id, kind, title, tags",
        [f"{item}\ttest_drive\tthe 2027 models\t{{new_model}}\n" for item in NEW_MODEL_ITEMS]
        + [f"{item}\tarticle\tan article\t{{}}\n" for item in ARTICLES],
    )
    online = np.flatnonzero(w.online)
    _copy(conn, "online_accounts", "account_id, channel", [f"A{w.customers[i]}\tapp\n" for i in online])
    with conn.transaction():
        conn.execute(
            "INSERT INTO identity_merges (rule, customer_id, links) SELECT 'phone', customer_id, 1"
            " FROM customers WHERE customer_id = ANY(%s)",
            ([str(w.customers[i]) for i in online],),
        )
        conn.execute(
            "INSERT INTO identity_links (account_id, customer_id, rule, merge_id)"
            " SELECT 'A' || m.customer_id, m.customer_id, 'phone', m.merge_id FROM identity_merges m"
            " WHERE m.customer_id = ANY(%s)",
            ([str(w.customers[i]) for i in online],),
        )
    _copy(
        conn,
        "interactions",
        "account_id, item_id, kind, at",
        sorted({f"A{w.customers[i]}\t{item}\tview\t{w.day(t)}T12:00:00Z\n" for i, t, item in w.interactions}),
    )
    say(f"{len(online)} online accounts, {len(w.interactions)} interactions")
