"""Reading stored upgrade scores: the newest scored day's list above a probability, one customer's score and
trend, and the leads export (customer, their dealer, probability, reasons).

Only customers whose current consent allows marketing are read (a consent withdrawn after the day was scored
counts at once), for the CLI, the API and the leads alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from psycopg.rows import tuple_row

_CONSENTING = (
    "EXISTS (SELECT FROM consent_current k WHERE k.customer_id = s.customer_id"
    " AND k.scope = 'marketing' AND k.granted)"
)

# the dealer of the customer's newest car (by purchase; the car's own dealer when the purchase names none)
_DEALER = """
LEFT JOIN LATERAL (
    SELECT coalesce(p.dealer_id, v.dealer_id) AS dealer_id FROM vehicles v
    LEFT JOIN purchases p ON p.vehicle_id = v.vehicle_id
    WHERE v.customer_id = s.customer_id
    ORDER BY coalesce(p.purchased_at, (v.first_seen AT TIME ZONE 'UTC')::date) DESC, v.vehicle_id LIMIT 1
) car ON true
LEFT JOIN dealers d ON d.dealer_id = car.dealer_id
"""


@dataclass(frozen=True, slots=True)
class UpgradeScore:
    """One customer's score on one day."""

    customer_id: str
    day: date
    probability: float
    reasons: list[dict[str, Any]]
    model_version: int


@dataclass(frozen=True, slots=True)
class Lead:
    """A customer likely to buy again, with the dealer of their newest car (None: no dealer known)."""

    customer_id: str
    dealer_id: str | None
    dealer_name: str | None
    day: date
    probability: float
    reasons: list[dict[str, Any]]


def latest_day(conn: psycopg.Connection[Any]) -> date | None:
    """The newest day with scores (None: never scored)."""
    row = conn.cursor(row_factory=tuple_row).execute("SELECT max(day) FROM upgrade_scores").fetchone()
    return row[0] if row else None


def list_scores(
    conn: psycopg.Connection[Any],
    min_probability: float = 0.0,
    *,
    limit: int,
    after: tuple[float, str] | None = None,
    day: date | None = None,
) -> list[UpgradeScore]:
    """Scores of at least ``min_probability`` on ``day`` (default: the newest), likeliest first, after the
    (probability, customer) key ``after`` (keyset pages)."""
    day = day or latest_day(conn)
    if day is None:
        return []
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT s.customer_id, s.day, s.probability, s.reasons, s.model_version FROM upgrade_scores s"
            " WHERE s.day = %(day)s AND s.probability >= %(min)s"
            " AND (%(p)s::real IS NULL OR (s.probability, %(c)s::text) < (%(p)s::real, s.customer_id))"
            f" AND {_CONSENTING}"
            " ORDER BY s.probability DESC, s.customer_id LIMIT %(limit)s",
            {
                "day": day,
                "min": min_probability,
                "p": after[0] if after else None,
                "c": after[1] if after else None,
                "limit": limit,
            },
        )
        .fetchall()
    )
    return [UpgradeScore(str(r[0]), r[1], float(r[2]), list(r[3]), int(r[4])) for r in rows]


@dataclass(frozen=True, slots=True)
class CustomerUpgrade:
    """A customer's newest score, and every stored day's probability (oldest first)."""

    latest: UpgradeScore
    history: list[tuple[date, float]]

    @property
    def trend(self) -> float | None:
        """The probability's change from the first day of the history to the newest (None: one day only)."""
        if len(self.history) < 2:
            return None
        return round(self.history[-1][1] - self.history[0][1], 6)


def customer_upgrade(
    conn: psycopg.Connection[Any], customer_id: str, *, days: int = 90
) -> CustomerUpgrade | None:
    """The customer's scores of the last ``days`` scored days, when the customer allows marketing and has
    any (None otherwise)."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT s.customer_id, s.day, s.probability, s.reasons, s.model_version FROM upgrade_scores s"
            f" WHERE s.customer_id = %s AND {_CONSENTING} ORDER BY s.day DESC LIMIT %s",
            (customer_id, days),
        )
        .fetchall()
    )
    if not rows:
        return None
    scores = [UpgradeScore(str(r[0]), r[1], float(r[2]), list(r[3]), int(r[4])) for r in rows]
    return CustomerUpgrade(scores[0], [(s.day, s.probability) for s in reversed(scores)])


def leads(conn: psycopg.Connection[Any], min_probability: float, *, limit: int = 10_000) -> list[Lead]:
    """The newest scored day's consenting customers of at least ``min_probability``, likeliest first, each
    with the dealer of their newest car: the list a dealer-lead routing takes in."""
    day = latest_day(conn)
    if day is None:
        return []
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT s.customer_id, car.dealer_id, d.name, s.day, s.probability, s.reasons"
            f" FROM upgrade_scores s {_DEALER}"
            f" WHERE s.day = %s AND s.probability >= %s AND {_CONSENTING}"
            " ORDER BY s.probability DESC, s.customer_id LIMIT %s",
            (day, min_probability, limit),
        )
        .fetchall()
    )
    return [
        Lead(str(r[0]), None if r[1] is None else str(r[1]), r[2], r[3], float(r[4]), list(r[5]))
        for r in rows
    ]
