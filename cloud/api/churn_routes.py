"""Churn early warning for marketing: the newest day's list of a tier, and one customer's score with trend.

Only customers whose current consent allows marketing are shown (a customer without it is a 404, alike for an
unknown one or one not scored yet). Both are personal reads, audited: a list as one ``churn.list`` row naming
the tier and how many customers it showed, a customer as ``churn.read`` under the pseudonymous subject.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from cloud.churn.config import Tier
from cloud.churn.read import ChurnScore, customer_churn, list_tier

from .auth import Principal, require
from .deps import Conn
from .errors import documented
from .guard import NO_NUL
from .pagination import Cursor, Limit, Page
from .scoring import after_key, audit, customer_read, page, score_fields

router = APIRouter()


class ReasonOut(BaseModel):
    """A feature that raised the risk: its value and its contribution to the log-odds."""

    feature: str
    value: float
    contribution: float


class ChurnOut(BaseModel):
    """A customer's churn score on a day."""

    customer_id: str
    day: date
    probability: float
    tier: str
    reasons: list[ReasonOut]
    model_version: int


class ChurnPointOut(BaseModel):
    """One day of a customer's history."""

    day: date
    probability: float
    tier: str


class CustomerChurnOut(ChurnOut):
    """The newest score, the history (oldest first) and the trend: the probability's change over it."""

    trend: float | None
    history: list[ChurnPointOut]


def _item(s: ChurnScore) -> ChurnOut:
    return ChurnOut(**score_fields(s, ReasonOut, tier=s.tier))


@router.get("/v1/churn", response_model=Page[ChurnOut])
def list_churn(
    request: Request,
    principal: Annotated[Principal, require("marketing:read")],
    conn: Conn,
    tier: Tier | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[ChurnOut]:
    """The newest scored day's customers of ``tier`` (default: every tier), riskiest first, with their top
    reasons; consenting customers only (audited)."""
    scores = list_tier(conn, tier, limit=limit + 1, after=after_key(cursor, "churn"))
    shown, count = page(scores, limit, "churn", _item)
    audit(request, principal, "churn.list", None, tier=tier, customers=count)
    return shown


@router.get(
    "/v1/customers/{customer_id}/churn",
    response_model=CustomerChurnOut,
    responses={404: documented("no such customer, no score yet, or the consent does not allow marketing")},
)
def get_customer_churn(
    request: Request,
    principal: Annotated[Principal, require("marketing:read")],
    conn: Conn,
    customer_id: Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)],
    days: Annotated[int, Query(ge=1, le=366, description="scored days of history")] = 90,
) -> CustomerChurnOut:
    """One consenting customer's newest churn score, its reasons, the history and the trend (audited)."""
    found = customer_read(
        request, principal, "churn", customer_id, customer_churn(conn, customer_id, days=days)
    )
    return CustomerChurnOut(
        **score_fields(found.latest, ReasonOut, tier=found.latest.tier),
        trend=found.trend,
        history=[ChurnPointOut(day=d, probability=p, tier=t) for d, p, t in found.history],
    )
