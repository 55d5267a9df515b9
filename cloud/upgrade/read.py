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

from cloud.scores import read
from cloud.scores.read import CONSENTING as _CONSENTING

_COLUMNS = "s.customer_id, s.day, s.probability, s.reasons, s.model_version"

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


def _score(r: tuple[Any, ...]) -> UpgradeScore:
    return UpgradeScore(str(r[0]), r[1], float(r[2]), list(r[3]), int(r[4]))


def latest_day(conn: psycopg.Connection[Any]) -> date | None:
    """The newest day with scores (None: never scored)."""
    return read.latest_day(conn, "upgrade_scores")


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
    rows = read.page_rows(
        conn,
        "upgrade_scores",
        _COLUMNS,
        "s.probability >= %(min)s",
        {"min": min_probability},
        limit=limit,
        after=after,
        day=day,
    )
    return [_score(r) for r in rows]


@dataclass(frozen=True, slots=True)
class CustomerUpgrade:
    """A customer's newest score, and every stored day's probability (oldest first)."""

    latest: UpgradeScore
    history: list[tuple[date, float]]

    @property
    def trend(self) -> float | None:
        """The probability's change from the first day of the history to the newest (None: one day only)."""
        return read.trend(self.history)


def customer_upgrade(
    conn: psycopg.Connection[Any], customer_id: str, *, days: int = 90
) -> CustomerUpgrade | None:
    """The customer's scores of the last ``days`` scored days, when the customer allows marketing and has
    any (None otherwise)."""
    scores = [_score(r) for r in read.customer_rows(conn, "upgrade_scores", _COLUMNS, customer_id, days)]
    if not scores:
        return None
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
