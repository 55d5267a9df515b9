"""Upgrade intent for marketing: the newest day's customers above a probability, and one customer's score
with trend.

Only customers whose current consent allows marketing are shown (a customer without it is a 404, alike for an
unknown one or one not scored yet). Both are personal reads, audited: a list as one ``upgrade.list`` row
naming the threshold and how many customers it showed, a customer as ``upgrade.read`` under the pseudonymous
subject.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from cloud.upgrade.read import UpgradeScore, customer_upgrade, list_scores

from .auth import Principal, require
from .deps import Conn
from .errors import documented
from .guard import NO_NUL
from .pagination import Cursor, Limit, Page
from .scoring import after_key, audit, customer_read, page, score_fields

router = APIRouter()


class ReasonOut(BaseModel):
    """A feature that raised the odds of buying again: its value and its contribution to the log-odds."""

    feature: str
    value: float
    contribution: float


class UpgradeOut(BaseModel):
    """A customer's upgrade score on a day: the probability of buying another car within the horizon."""

    customer_id: str
    day: date
    probability: float
    reasons: list[ReasonOut]
    model_version: int


class UpgradePointOut(BaseModel):
    """One day of a customer's history."""

    day: date
    probability: float


class CustomerUpgradeOut(UpgradeOut):
    """The newest score, the history (oldest first) and the trend: the probability's change over it."""

    trend: float | None
    history: list[UpgradePointOut]


def _item(s: UpgradeScore) -> UpgradeOut:
    return UpgradeOut(**score_fields(s, ReasonOut))


@router.get("/v1/upgrade", response_model=Page[UpgradeOut])
def list_upgrade(
    request: Request,
    principal: Annotated[Principal, require("marketing:read")],
    conn: Conn,
    min_probability: Annotated[float, Query(ge=0.0, le=1.0, description="the least probability shown")] = 0.0,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[UpgradeOut]:
    """The newest scored day's customers with at least ``min_probability`` of buying another car, likeliest
    first, with their top reasons; consenting customers only (audited)."""
    scores = list_scores(conn, min_probability, limit=limit + 1, after=after_key(cursor, "upgrade"))
    shown, count = page(scores, limit, "upgrade", _item)
    audit(request, principal, "upgrade.list", None, min_probability=min_probability, customers=count)
    return shown


@router.get(
    "/v1/customers/{customer_id}/upgrade",
    response_model=CustomerUpgradeOut,
    responses={404: documented("no such customer, no score yet, or the consent does not allow marketing")},
)
def get_customer_upgrade(
    request: Request,
    principal: Annotated[Principal, require("marketing:read")],
    conn: Conn,
    customer_id: Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)],
    days: Annotated[int, Query(ge=1, le=366, description="scored days of history")] = 90,
) -> CustomerUpgradeOut:
    """One consenting customer's newest upgrade score, its reasons, the history and the trend (audited)."""
    found = customer_read(
        request, principal, "upgrade", customer_id, customer_upgrade(conn, customer_id, days=days)
    )
    return CustomerUpgradeOut(
        **score_fields(found.latest, ReasonOut),
        trend=found.trend,
        history=[UpgradePointOut(day=d, probability=p) for d, p in found.history],
    )
