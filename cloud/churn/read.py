"""Reading stored churn scores: a tier's list on the newest scored day, one customer's score and trend.

Only customers whose current consent allows marketing are read (a consent withdrawn after the day was scored
counts at once), for the CLI and the API alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from cloud.scores import read

from .config import TIERS

__all__ = ["TIERS", "ChurnScore", "CustomerChurn", "customer_churn", "latest_day", "list_tier"]

_COLUMNS = "s.customer_id, s.day, s.probability, s.tier, s.reasons, s.model_version"


@dataclass(frozen=True, slots=True)
class ChurnScore:
    """One customer's score on one day."""

    customer_id: str
    day: date
    probability: float
    tier: str
    reasons: list[dict[str, Any]]
    model_version: int


def _score(r: tuple[Any, ...]) -> ChurnScore:
    return ChurnScore(str(r[0]), r[1], float(r[2]), str(r[3]), list(r[4]), int(r[5]))


def latest_day(conn: psycopg.Connection[Any]) -> date | None:
    """The newest day with scores (None: never scored)."""
    return read.latest_day(conn, "churn_scores")


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
    condition = "(%(tier)s::text IS NULL OR s.tier = %(tier)s)"
    rows = read.page_rows(
        conn, "churn_scores", _COLUMNS, condition, {"tier": tier}, limit=limit, after=after, day=day
    )
    return [_score(r) for r in rows]


@dataclass(frozen=True, slots=True)
class CustomerChurn:
    """A customer's newest score, and every stored day's probability and tier (oldest first)."""

    latest: ChurnScore
    history: list[tuple[date, float, str]]

    @property
    def trend(self) -> float | None:
        """The probability's change from the first day of the history to the newest (None: one day only)."""
        return read.trend(self.history)


def customer_churn(
    conn: psycopg.Connection[Any], customer_id: str, *, days: int = 90
) -> CustomerChurn | None:
    """The customer's scores of the last ``days`` scored days, when the customer allows marketing and has
    any (None otherwise)."""
    scores = [_score(r) for r in read.customer_rows(conn, "churn_scores", _COLUMNS, customer_id, days)]
    if not scores:
        return None
    return CustomerChurn(scores[0], [(s.day, s.probability, s.tier) for s in reversed(scores)])
