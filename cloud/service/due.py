"""Which cars are due, and why: by mileage and by time since the last service per the model's plan, and by
severe fault codes reported since that service.

The **baseline** of a car is its last service visit on or before the day of ``now`` (``service_visits``),
or its delivery (``purchases.purchased_at``; the day it was first seen without one) before the first visit.

- **Mileage**: the odometer now is the highest the car reported (``telemetry_latest``, trips' odometer at
  their end); at the baseline it is the visit's reading (``service_visits.odometer_km``), else the highest the
  car reported before the visit's day was over, else 0 km; at delivery it is the lowest the car ever reported
  (a car sold with kilometres on it, or connected late, is not taken for one driven from 0), else 0 km. Due
  when the difference reaches the plan's ``interval_km``; since the end of the first trip that crossed it
  (else now).
- **Time**: due from the baseline plus the plan's ``interval_months``.
- **Faults**: a severe code (plans.toml ``[faults]``) first reported after the baseline's day: a fault
  counts until a service visit after it. Due since it was first reported.

A car due by mileage and time is due once, for the reason that came first, both said in ``why``. Each due
service is an **episode**, named by its baseline (``service:<visit id>`` or ``service:delivery``) and for a
fault by its code too (``fault:P0301:<baseline>``): reminders count their attempts within an episode, and a
service visit (a new baseline) ends it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from .plans import ServicePlans


@dataclass(frozen=True, slots=True)
class Car:
    """A customer's car as reminders need it."""

    vehicle_id: str
    customer_id: str
    dealer_id: str | None
    model: str | None
    time_zone: str | None
    booking_url: str | None
    webhook_url: str | None
    #: the last service visit's id, or None: since delivery
    visit_id: str | None
    baseline_day: date
    baseline_km: float
    odometer_km: float | None

    @property
    def baseline(self) -> str:
        """The baseline's name in episodes."""
        return self.visit_id or "delivery"


@dataclass(frozen=True, slots=True)
class Due:
    """One car due for one reason, since when, and in which episode."""

    car: Car
    reason: str
    episode: str
    due_at: datetime
    why: str
    fault_code: str | None = None


_CARS = """
SELECT v.vehicle_id, v.customer_id, v.dealer_id, v.model, v.time_zone, d.booking_url, d.webhook_url,
       lv.visit_id, coalesce(lv.visited_at, p.purchased_at, v.first_seen::date) AS baseline_day,
       CASE WHEN lv.visit_id IS NULL
            THEN coalesce((SELECT min(t.odometer_km) FROM trips t WHERE t.vehicle_id = v.vehicle_id), 0)
            ELSE coalesce(lv.odometer_km,
                          (SELECT max(t.odometer_km) FROM trips t WHERE t.vehicle_id = v.vehicle_id
                           AND t.ended_at < lv.visited_at + 1), 0) END AS baseline_km,
       nullif(greatest(coalesce(tl.odometer_km, 0),
                       coalesce((SELECT max(t.odometer_km) FROM trips t WHERE t.vehicle_id = v.vehicle_id
                                 AND t.ended_at <= %(now)s), 0)), 0) AS odometer_km
FROM vehicles v
LEFT JOIN dealers d ON d.dealer_id = v.dealer_id
LEFT JOIN purchases p ON p.vehicle_id = v.vehicle_id
LEFT JOIN telemetry_latest tl ON tl.vehicle_id = v.vehicle_id
LEFT JOIN LATERAL (SELECT s.visit_id, s.visited_at, s.odometer_km FROM service_visits s
                   WHERE s.vehicle_id = v.vehicle_id AND s.visited_at <= %(today)s
                   ORDER BY s.visited_at DESC, s.visit_id DESC LIMIT 1) lv ON true
WHERE v.customer_id IS NOT NULL AND (%(vehicles)s::text[] IS NULL OR v.vehicle_id = ANY(%(vehicles)s))
ORDER BY v.vehicle_id
"""


def load_cars(
    conn: psycopg.Connection[Any], now: datetime, vehicles: Sequence[str] | None = None
) -> list[Car]:
    """Every car with an owner (or only ``vehicles``), with its baseline and odometer as of ``now``."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            _CARS,
            {
                "now": now,
                "today": now.astimezone(UTC).date(),
                "vehicles": None if vehicles is None else list(vehicles),
            },
        )
        .fetchall()
    )
    return [
        Car(
            str(r[0]),
            str(r[1]),
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            float(r[9]),
            None if r[10] is None else float(r[10]),
        )
        for r in rows
    ]


def find_due(
    conn: psycopg.Connection[Any], plans: ServicePlans, now: datetime, cars: Sequence[Car]
) -> list[Due]:
    """Every reason each of ``cars`` is due at ``now`` (see the module docstring)."""
    due: list[Due] = []
    crossings = _mileage_crossings(conn, plans, cars, now)
    for car in cars:
        plan = plans.interval(car.model)
        reasons: list[tuple[datetime, str, str]] = []
        since = datetime.combine(car.baseline_day, time(), tzinfo=UTC)
        by_time = since + plan.interval
        what = f"last service {car.visit_id} on {car.baseline_day}" if car.visit_id else (
            f"delivered on {car.baseline_day}, no service since"
        )  # fmt: skip
        if by_time <= now:
            reasons.append((by_time, "due_by_time", f"{what}: {plan.interval_months} months passed"))
        if car.odometer_km is not None and car.odometer_km - car.baseline_km >= plan.interval_km:
            driven = car.odometer_km - car.baseline_km
            reasons.append(
                (
                    crossings.get(car.vehicle_id, now),
                    "due_by_mileage",
                    f"{what}: {driven:,.0f} km driven since (interval {plan.interval_km:,.0f} km)",
                )
            )
        if reasons:
            reasons.sort()
            at, reason, _ = reasons[0]
            why = "; ".join(w for _, _, w in reasons)
            due.append(Due(car, reason, f"service:{car.baseline}", at, why))
    due += _faults(conn, plans, cars, now)
    return due


def _mileage_crossings(
    conn: psycopg.Connection[Any], plans: ServicePlans, cars: Sequence[Car], now: datetime
) -> dict[str, datetime]:
    """Per car over its interval: the end of the first trip whose odometer reached baseline + interval."""
    over = [
        (c.vehicle_id, c.baseline_km + plans.interval(c.model).interval_km)
        for c in cars
        if c.odometer_km is not None and c.odometer_km - c.baseline_km >= plans.interval(c.model).interval_km
    ]
    if not over:
        return {}
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT o.vehicle_id, min(t.ended_at) FROM unnest(%s::text[], %s::float8[]) AS o (vehicle_id, km)"
            " JOIN trips t ON t.vehicle_id = o.vehicle_id AND t.odometer_km >= o.km AND t.ended_at <= %s"
            " GROUP BY o.vehicle_id",
            ([v for v, _ in over], [k for _, k in over], now),
        )
        .fetchall()
    )
    return {str(v): at for v, at in rows if at is not None}


def _faults(
    conn: psycopg.Connection[Any], plans: ServicePlans, cars: Sequence[Car], now: datetime
) -> list[Due]:
    """Severe codes each car reported after its baseline's day and by ``now``."""
    by_id = {c.vehicle_id: c for c in cars}
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT vehicle_id, code, min(first_seen) FROM dtc_reports WHERE vehicle_id = ANY(%s)"
            " AND first_seen <= %s GROUP BY vehicle_id, code ORDER BY vehicle_id, code",
            (list(by_id), now),
        )
        .fetchall()
    )
    due = []
    for vehicle, code, first in rows:
        car = by_id[str(vehicle)]
        if not plans.faults.severe(str(code)):
            continue
        cutoff = datetime.combine(car.baseline_day, time(), tzinfo=UTC)
        if car.visit_id is not None:
            cutoff += timedelta(days=1)  # a fault reported by the end of the visit's day: the visit saw it
        if first < cutoff:
            continue
        due.append(
            Due(
                car,
                "fault_code",
                f"fault:{code}:{car.baseline}",
                first,
                f"severe fault code {code} reported {first:%Y-%m-%d %H:%M} UTC, no service since",
                str(code),
            )
        )
    return due
