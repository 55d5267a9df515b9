"""Reading stored churn scores: a tier's list on the newest scored day, one customer's score and trend.

Only customers whose current consent allows marketing are read (a consent withdrawn after the day was scored
counts at once), for the CLI and the API alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from psycopg.rows import tuple_row

TIERS = ("high", "medium", "low")

_CONSENTING = (
    "EXISTS (SELECT FROM consent_current k WHERE k.customer_id = s.customer_id"
    " AND k.scope = 'marketing' AND k.granted)"
)


@dataclass(frozen=True, slots=True)
class ChurnScore:
    """One customer's score on one day."""

    customer_id: str
    day: date
    probability: float
    tier: str
    reasons: list[dict[str, Any]]
    model_version: int


def latest_day(conn: psycopg.Connection[Any]) -> date | None:
    """The newest day with scores (None: never scored)."""
    row = conn.cursor(row_factory=tuple_row).execute("SELECT max(day) FROM churn_scores").fetchone()
    return row[0] if row else None


def list_tier(
    conn: psycopg.Connection[Any],
    tier: str | None,
    *,
    limit: int,
    after: tuple[float, str] | None = None,
    day: date | None = None,
) -> list[ChurnScore]:
    """Scores of ``tier`` (None: every tier) on ``day`` (default: the newest), riskiest first, after the
    (probability, customer) key ``after`` (keyset pages)."""
    day = day or latest_day(conn)
    if day is None:
        return []
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT s.customer_id, s.day, s.probability, s.tier, s.reasons, s.model_version"
            " FROM churn_scores s WHERE s.day = %(day)s AND (%(tier)s::text IS NULL OR s.tier = %(tier)s)"
            " AND (%(p)s::real IS NULL OR (s.probability, %(c)s::text) < (%(p)s::real, s.customer_id))"
            f" AND {_CONSENTING}"
            " ORDER BY s.probability DESC, s.customer_id LIMIT %(limit)s",
            {
                "day": day,
                "tier": tier,
                "p": after[0] if after else None,
                "c": after[1] if after else None,
                "limit": limit,
            },
        )
        .fetchall()
    )
    return [ChurnScore(str(r[0]), r[1], float(r[2]), str(r[3]), list(r[4]), int(r[5])) for r in rows]


@dataclass(frozen=True, slots=True)
class CustomerChurn:
    """A customer's newest score, and every stored day's probability and tier (oldest first)."""

    latest: ChurnScore
    history: list[tuple[date, float, str]]

    @property
    def trend(self) -> float | None:
        """The probability's change from the first day of the history to the newest (None: one day only)."""
        if len(self.history) < 2:
            return None
        return round(self.history[-1][1] - self.history[0][1], 6)


def customer_churn(
    conn: psycopg.Connection[Any], customer_id: str, *, days: int = 90
) -> CustomerChurn | None:
    """The customer's scores of the last ``days`` scored days, when the customer allows marketing and has
    any (None otherwise)."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT s.customer_id, s.day, s.probability, s.tier, s.reasons, s.model_version"
            f" FROM churn_scores s WHERE s.customer_id = %s AND {_CONSENTING} ORDER BY s.day DESC LIMIT %s",
            (customer_id, days),
        )
        .fetchall()
    )
    if not rows:
        return None
    scores = [ChurnScore(str(r[0]), r[1], float(r[2]), str(r[3]), list(r[4]), int(r[5])) for r in rows]
    return CustomerChurn(scores[0], [(s.day, s.probability, s.tier) for s in reversed(scores)])
