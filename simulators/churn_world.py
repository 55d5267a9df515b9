"""Customers who leave: a seeded world for the churn early warning, with its hidden ground truth.

Each customer has hidden traits the database never holds — satisfaction (which drifts and drops with
complaints and with faults left unrepaired), loyalty to the dealer network, a habitual driving rate and a
service interval — and a monthly shock (a competitor's offer, a move, a new job) that is pure noise to any
model. Day by day, while the customer stays:

- fault codes appear (about one car in three over half a year) and stay open until a service visit;
- complaints come more often from unsatisfied customers, and some stay unresolved;
- the car is serviced when due (more reliably by loyal, satisfied customers) or when a fault is open (the
  last two visits before the first day are in the history too);
- an in-car push arrives every three weeks and is opened more by satisfied customers;
- the customer leaves with a daily hazard ``base * exp(-0.9 sat - 0.7 loyalty + 0.8 warranty_over
  + 0.4 min(open_faults, 2) + 0.8 service_overdue + shock)``.

Two in three leavers drive less and less over the two to eight weeks before they go (and open fewer pushes);
the others stop at once. After leaving: no trips, visits, complaints, faults or pushes. So what the model can
see (activity and its trend, visits, complaints, faults, warranty, pushes) is a noisy trace of the hidden
state, never the rule itself, and a backtest against what followed is meaningful. ``truth["churn_day"]`` is
the day each customer left (-1: stayed).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

FAULT_CODES = ("P0301", "P0420", "P0171", "P0128", "B1318", "U0100", "P0562", "C1201")
WARRANTY_DAYS = 1096
PUSH_EVERY_DAYS = 21
#: daily hazard at the mean of every trait (about 2.5% a month leave)
BASE_HAZARD = 0.00055


@dataclass
class ChurnWorld:
    """Per-entity column arrays to load, and the hidden truth."""

    first_day: date
    days: int
    customers: np.ndarray
    vehicles: np.ndarray
    purchased: np.ndarray  # datetime64[D]
    marketing: np.ndarray  # bool: consent granted
    trips_per_day: np.ndarray  # customers x days, counts
    visits: list[tuple[int, int, str]]  # (customer, day, kind)
    complaints: list[tuple[int, int, int | None]]  # (customer, day opened, day resolved or None)
    faults: list[tuple[int, int, str]]  # (customer, day, code)
    pushes: list[tuple[int, int, bool]]  # (customer, day, opened)
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    #: the hidden state at the end of the last day, where simulators/retention_world.py goes on
    state: dict[str, np.ndarray] = field(default_factory=dict)
    hazard_scale: float = 1.0

    def day(self, index: int) -> date:
        """The calendar day of a day index."""
        return self.first_day + timedelta(days=index)


def simulate_churn_world(
    customers: int,
    seed: int,
    *,
    days: int = 180,
    first_day: date = date(2026, 3, 2),
    hazard_scale: float = 1.0,
) -> ChurnWorld:
    """``customers`` car owners over ``days`` days; who leaves when is drawn from hidden traits and noise
    (``hazard_scale`` times the daily hazard: a world where customers leave more often)."""
    rng = np.random.default_rng(seed)
    # how long a complaint takes to resolve: its own draws, so the rest of the world is what it was without it
    resolve_rng = np.random.default_rng([seed, 20])
    n = customers
    sat0 = rng.normal(0, 1, n)
    loyalty = rng.normal(0, 1, n)
    rate = rng.gamma(4.0, 0.65, n) / 7.0  # trips per day when nothing goes wrong (mean 2.6 a week)
    interval = rng.uniform(150, 270, n)
    age0 = rng.uniform(60, 2200, n)  # days owned at the first day
    last_visit = -rng.uniform(0, 1, n) * interval  # days before the first day
    sat = sat0.copy()
    open_faults = np.zeros(n, dtype=np.int64)
    fault_age = np.zeros(n)
    churn_day = np.full(n, -1, dtype=np.int64)
    push_offset = rng.integers(0, PUSH_EVERY_DAYS, n)
    # the service history before the first day: the last visit, and the one an interval before it, when the
    # car was owned then (a model must not take "no record" for "never serviced")
    visits: list[tuple[int, int, str]] = []
    for back in (0.0, 1.0):
        at = np.floor(last_visit - back * interval).astype(np.int64)
        for i in np.flatnonzero(-at < age0):
            visits.append((int(i), int(at[i]), "maintenance"))
    complaints: list[tuple[int, int, int | None]] = []
    faults: list[tuple[int, int, str]] = []
    shock = np.zeros(n)
    for t in range(days):
        staying = churn_day < 0
        if t % 30 == 0:
            shock = rng.normal(0, 0.8, n)
        # faults
        new = staying & (rng.random(n) < 0.002)
        for i in np.flatnonzero(new):
            faults.append((int(i), t, FAULT_CODES[int(rng.integers(0, len(FAULT_CODES)))]))
        open_faults += new
        fault_age = np.where(open_faults > 0, fault_age + 1, 0)
        sat -= 0.01 * (fault_age > 30)
        # complaints
        complain = staying & (rng.random(n) < 0.0008 * np.exp(-0.8 * sat))
        resolved = rng.random(n) < 1 / (1 + np.exp(-(0.8 + 0.8 * loyalty)))
        for i in np.flatnonzero(complain):
            # a resolved complaint takes days to weeks (geometric, two weeks on average)
            complaints.append((int(i), t, t + int(resolve_rng.geometric(1 / 14)) if resolved[i] else None))
        sat -= complain * np.where(resolved, 0.15, 0.6)
        sat += 0.01 * (sat0 - sat)
        # service visits: when due, or when a fault is open
        since = t - last_visit
        due = since >= interval
        p_visit = np.where(due, 0.05 * np.exp(0.6 * loyalty + 0.4 * sat), 0.0)
        p_visit = np.maximum(p_visit, np.where(open_faults > 0, 0.03 * np.exp(0.5 * loyalty), 0.0))
        visit = staying & (rng.random(n) < np.clip(p_visit, 0, 1))
        for i in np.flatnonzero(visit):
            visits.append((int(i), t, "repair" if open_faults[i] > 0 else "maintenance"))
        last_visit = np.where(visit, t, last_visit)
        open_faults = np.where(visit, 0, open_faults)
        # leaving
        warranty_over = (age0 + t) > WARRANTY_DAYS
        overdue = since > interval + 60
        hazard = hazard_scale * BASE_HAZARD * np.exp(
            -0.9 * sat - 0.7 * loyalty + 0.8 * warranty_over + 0.4 * np.minimum(open_faults, 2)
            + 0.8 * overdue + shock
        )  # fmt: skip
        leave = staying & (rng.random(n) < hazard)
        churn_day[leave] = t
    # driving: the habit with weekly noise, fading before a decliner leaves, nothing after
    weekly = rng.lognormal(0, 0.25, (n, days // 7 + 1))
    mult = np.repeat(weekly, 7, axis=1)[:, :days]
    decliner = (churn_day >= 0) & (rng.random(n) < 2 / 3)
    fade = rng.uniform(14, 56, n)
    t_index = np.arange(days)[None, :]
    left = churn_day[:, None]
    to_go = left - t_index
    fading = decliner[:, None] & (to_go >= 0) & (to_go < fade[:, None])
    mult = np.where(fading, mult * (0.15 + 0.85 * to_go / fade[:, None]), mult)
    mult = np.where((left >= 0) & (t_index >= left), 0.0, mult)
    trips = rng.poisson(rate[:, None] * mult).astype(np.int16)
    # pushes every three weeks while staying; opened by the satisfied, less so while fading
    pushes: list[tuple[int, int, bool]] = []
    p_open = 1 / (1 + np.exp(-(-0.8 + 0.8 * sat0 + 0.5 * loyalty)))
    for t in range(days):
        to = np.flatnonzero(((t + push_offset) % PUSH_EVERY_DAYS == 0) & ((churn_day < 0) | (t < churn_day)))
        opened = rng.random(len(to)) < p_open[to] * np.where(fading[to, t], 0.4, 1.0)
        pushes.extend((int(i), t, bool(o)) for i, o in zip(to, opened, strict=True))
    purchased = np.datetime64(first_day) - age0.astype(np.int64).astype("timedelta64[D]")
    ids = np.array([f"K{i:07d}" for i in range(n)])
    consent_rng = np.random.default_rng([seed, 16])  # its own draws: the rest stays what it was without it
    return ChurnWorld(
        first_day=first_day,
        days=days,
        customers=ids,
        vehicles=np.array([f"LCH{i:014d}" for i in range(n)]),
        purchased=purchased,
        marketing=consent_rng.random(n) < 0.85,
        trips_per_day=trips,
        visits=visits,
        complaints=complaints,
        faults=faults,
        pushes=pushes,
        truth={
            "churn_day": churn_day,
            "satisfaction": sat0,
            "loyalty": loyalty,
            "decliner": decliner,
        },
        hazard_scale=hazard_scale,
        state={
            "sat": sat,
            "sat0": sat0,
            "loyalty": loyalty,
            "rate": rate,
            "interval": interval,
            "age0": age0,
            "last_visit": last_visit,
            "open_faults": open_faults,
            "fault_age": fault_age,
            "shock": shock,
            "p_open": p_open,
        },
    )


def copy_lines(conn: psycopg.Connection[Any], table: str, columns: str, lines: list[str]) -> None:
    """COPY tab-separated ``lines`` into ``table`` (in pieces, for size)."""
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for lo in range(0, len(lines), 200_000):
            copy.write("".join(lines[lo : lo + 200_000]))


def _resolution(w: ChurnWorld, t: int | None) -> str:
    """A complaint's ``resolved`` and ``resolved_at`` as COPY text, as the CRM holds them at the world's end
    (one resolved after it is still open)."""
    return "f\t\\N" if t is None or t >= w.days else f"t\t{w.day(t)}"


def load_churn_world(
    conn: psycopg.Connection[Any], world: ChurnWorld, progress: Callable[[str], None] | None = None
) -> None:
    """Write the world into a migrated database as the CRM import and the cars would have (COPY, for size):
    customers, cars, purchases, marketing consent, service visits, complaints, fault codes, push feedback and
    trips (generated in the database from the per-day counts)."""
    say = progress or (lambda _m: None)
    w = world
    n = len(w.customers)
    start = datetime.combine(w.first_day, datetime.min.time(), tzinfo=UTC)
    stamp = start.isoformat()
    copy_lines(conn, "customers", "customer_id, region", [f"{c}\tnorth\n" for c in w.customers])
    copy_lines(
        conn,
        "vehicles",
        "vehicle_id, first_seen, last_seen, customer_id, model, time_zone",
        [
            f"{v}\t{stamp}\t{stamp}\t{c}\tDS-SUV\tAsia/Shanghai\n"
            for v, c in zip(w.vehicles, w.customers, strict=True)
        ],
    )
    copy_lines(
        conn,
        "purchases",
        "vehicle_id, customer_id, purchased_at",
        [
            f"{v}\t{c}\t{d}\n"
            for v, c, d in zip(w.vehicles, w.customers, w.purchased.astype(str), strict=True)
        ],
    )
    copy_lines(
        conn,
        "consent_events",
        "customer_id, scope, granted, at, source",
        [
            f"{c}\tmarketing\t{'t' if g else 'f'}\t{d}T10:00:00Z\tdealer\n"
            for c, g, d in zip(w.customers, w.marketing, w.purchased.astype(str), strict=True)
        ],
    )
    say(f"{n} customers, cars, purchases, consent")
    copy_lines(
        conn,
        "service_visits",
        "visit_id, vehicle_id, visited_at, kind",
        [f"V{k}\t{w.vehicles[i]}\t{w.day(t)}\t{kind}\n" for k, (i, t, kind) in enumerate(w.visits)],
    )
    copy_lines(
        conn,
        "complaints",
        "complaint_id, customer_id, opened_at, category, resolved, resolved_at",
        [
            f"Q{k}\t{w.customers[i]}\t{w.day(t)}\tservice\t{_resolution(w, r)}\n"
            for k, (i, t, r) in enumerate(w.complaints)
        ],
    )
    copy_lines(
        conn,
        "dtc_reports",
        "vehicle_id, seq, idx, code, first_seen",
        [
            f"{w.vehicles[i]}\t{1_000_000 + k}\t0\t{code}\t{start + timedelta(days=t, hours=9)}\n"
            for k, (i, t, code) in enumerate(w.faults)
        ],
    )
    lines = []
    for k, (i, t, opened) in enumerate(w.pushes):
        at = (start + timedelta(days=t, hours=4)).isoformat()
        lines.append(f"{w.vehicles[i]}\t{2_000_000 + 2 * k}\tP{k}\tnewsletter\tdelivered\t{at}\n")
        if opened:
            lines.append(f"{w.vehicles[i]}\t{2_000_001 + 2 * k}\tP{k}\tnewsletter\topened\t{at}\n")
    copy_lines(conn, "push_feedback", "vehicle_id, seq, push_id, campaign_id, action, at", lines)
    say(
        f"{len(w.visits)} visits, {len(w.complaints)} complaints, {len(w.faults)} faults,"
        f" {len(w.pushes)} pushes"
    )
    load_trips(conn, w.vehicles, w.trips_per_day, start, 0)
    say(f"{int(w.trips_per_day.sum())} trips")


def load_trips(
    conn: psycopg.Connection[Any], vehicles: np.ndarray, counts: np.ndarray, start: datetime, offset: int
) -> None:
    """Trips from per-car daily counts (column k is day ``offset + k`` after ``start``), expanded in the
    database (no 10-million-line COPY from Python)."""
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE churn_trip_counts (vehicle_id text, counts smallint[]) ON COMMIT DROP"
        )
        buffer = io.StringIO()
        for v, row in zip(vehicles, counts, strict=True):
            buffer.write(f"{v}\t{{{','.join(map(str, row.tolist()))}}}\n")
        with conn.cursor() as cur, cur.copy("COPY churn_trip_counts FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        conn.execute(
            """
            INSERT INTO trips (vehicle_id, trip_id, seq, started_at, ended_at, distance_km, duration_s,
                               moving_s, idle_s, max_speed_kmh, avg_speed_kmh, night_share, samples)
            SELECT c.vehicle_id, 'T' || (d.day + %(offset)s) || '-' || k, (d.day + %(offset)s) * 10 + k,
                   s.at, s.at + interval '25 minutes',
                   12.5, 1500, 1400, 100, 90, 32, 0, 0
            FROM churn_trip_counts c, unnest(c.counts) WITH ORDINALITY d (n, day),
                 generate_series(1, d.n) k,
                 LATERAL (SELECT %(start)s::timestamptz
                          + make_interval(days => d.day::int - 1 + %(offset)s, hours => 7 + 2 * k) AS at) s
            WHERE d.n > 0
            """,
            {"start": start, "offset": offset},
        )
