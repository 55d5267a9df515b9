"""Reading reminders back: the decisions with their reasons, and one customer's service picture (what is
due on each car and why, the reminders given, the bookings)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from .due import find_due, load_cars
from .plans import ServicePlans

#: a status is an outcome, or the reason a reminder was suppressed
_OUTCOMES = ("sending", "sent", "failed", "suppressed", "stopped_by_booking")

_COLUMNS = (
    "reminder_id, customer_id, vehicle_id, dealer_id, channel, reason, fault_code, episode, due_at, attempt,"
    " outcome, suppressed_by, why, push_id, url, decided_at, sent_at, expires_at,"
    " coalesce((SELECT array_agg(DISTINCT f.action ORDER BY f.action) FROM push_feedback f"
    "  WHERE f.push_id = r.push_id AND r.channel = 'push'), '{}') AS feedback"
)


def list_reminders(
    conn: psycopg.Connection[Any],
    *,
    vehicle_id: str | None = None,
    customer_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Reminder decisions, newest first (``before``: a reminder id to continue below), with the car's
    feedback on each push; ``status`` is an outcome or a suppression's reason."""
    column = "outcome" if status in _OUTCOMES else "suppressed_by"
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        f"SELECT {_COLUMNS} FROM service_reminders r"
        " WHERE (%(v)s::text IS NULL OR vehicle_id = %(v)s) AND (%(c)s::text IS NULL OR customer_id = %(c)s)"
        f" AND (%(s)s::text IS NULL OR {column} = %(s)s) AND (%(b)s::bigint IS NULL OR reminder_id < %(b)s)"
        " ORDER BY reminder_id DESC LIMIT %(n)s",
        {"v": vehicle_id, "c": customer_id, "s": status, "b": before, "n": limit},
    ).fetchall()


def customer_service(
    conn: psycopg.Connection[Any], plans: ServicePlans, customer_id: str, now: datetime
) -> dict[str, Any] | None:
    """The customer's cars with their plan, baseline, odometer and what is due and why, the latest
    reminder decisions and the bookings; None for an unknown customer."""
    if (
        conn.cursor(row_factory=tuple_row)
        .execute("SELECT 1 FROM customers WHERE customer_id = %s", (customer_id,))
        .fetchone()
        is None
    ):
        return None
    vehicles = [
        str(r[0])
        for r in conn.cursor(row_factory=tuple_row).execute(
            "SELECT vehicle_id FROM vehicles WHERE customer_id = %s ORDER BY vehicle_id", (customer_id,)
        )
    ]
    cars = load_cars(conn, now, vehicles) if vehicles else []
    due = find_due(conn, plans, now, cars) if cars else []
    bookings = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT booking_id, vehicle_id, dealer_id, booked_at, appointment_at, status"
            " FROM service_bookings WHERE vehicle_id = ANY(%s) ORDER BY booked_at DESC, booking_id",
            (vehicles,),
        )
        .fetchall()
    )
    out_cars = []
    for car in cars:
        plan = plans.interval(car.model)
        out_cars.append(
            {
                "vehicle_id": car.vehicle_id,
                "model": car.model,
                "dealer_id": car.dealer_id,
                "plan": {"interval_km": plan.interval_km, "interval_months": plan.interval_months},
                "last_service": {
                    "visit_id": car.visit_id,
                    "day": car.baseline_day,
                    "odometer_km": car.baseline_km,
                },
                "odometer_km": car.odometer_km,
                "due": [
                    {k: v for k, v in asdict(d).items() if k != "car"}
                    for d in due
                    if d.car.vehicle_id == car.vehicle_id
                ],
            }
        )
    return {
        "customer_id": customer_id,
        "at": now,
        "vehicles": out_cars,
        "reminders": list_reminders(conn, customer_id=customer_id, limit=50),
        "bookings": bookings,
    }
