"""Churn early warning for marketing: the newest day's list of a tier, and one customer's score with trend.

Only customers whose current consent allows marketing are shown (a customer without it is a 404, alike for an
unknown one or one not scored yet). Both are personal reads, audited: a list as one ``churn.list`` row naming
the tier and how many customers it showed, a customer as ``churn.read`` under the pseudonymous subject.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from cloud.churn.read import ChurnScore, customer_churn, list_tier
from cloud.privacy.audit import AuditUnavailable, AuditWriter, personal_subject

from .auth import Principal, require
from .deps import Conn
from .errors import ApiError, documented
from .guard import NO_NUL
from .pagination import Cursor, Limit, Page, decode_cursor, encode_cursor

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


def _fields(s: ChurnScore) -> dict[str, Any]:
    """A stored score as the fields of :class:`ChurnOut`."""
    return {
        "customer_id": s.customer_id,
        "day": s.day,
        "probability": s.probability,
        "tier": s.tier,
        "reasons": [ReasonOut.model_validate(r) for r in s.reasons],
        "model_version": s.model_version,
    }


def _audit(request: Request, principal: Principal, action: str, subject: str | None, **detail: Any) -> None:
    writer: AuditWriter = request.app.state.audit
    try:
        writer.record(
            key_id=principal.key_id,
            action=action,
            subject=subject,
            outcome=str(detail.pop("outcome", "ok")),
            detail=detail or None,
        )
    except AuditUnavailable as exc:
        raise ApiError(503, "cannot answer now: the audit log cannot be written") from exc


@router.get("/v1/churn", response_model=Page[ChurnOut])
def list_churn(
    request: Request,
    principal: Annotated[Principal, require("marketing:read")],
    conn: Conn,
    tier: Literal["high", "medium", "low"] | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[ChurnOut]:
    """The newest scored day's customers of ``tier`` (default: every tier), riskiest first, with their top
    reasons; consenting customers only (audited)."""
    after = None
    if cursor:
        p, c = decode_cursor(cursor, "churn", (float, str))
        after = (p, c)
    scores = list_tier(conn, tier, limit=limit + 1, after=after)
    shown = scores[:limit]
    more = len(scores) > limit and bool(shown)
    next_cursor = encode_cursor("churn", shown[-1].probability, shown[-1].customer_id) if more else None
    _audit(request, principal, "churn.list", None, tier=tier, customers=len(shown))
    return Page(items=[ChurnOut(**_fields(s)) for s in shown], next_cursor=next_cursor)


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
    found = customer_churn(conn, customer_id, days=days)
    subject = personal_subject("customer", customer_id)
    if found is None:
        _audit(request, principal, "churn.read", subject, outcome="not_found")
        raise ApiError(404, f"no churn score of customer {customer_id!r} that marketing may see")
    s = found.latest
    _audit(request, principal, "churn.read", subject)
    return CustomerChurnOut(
        **_fields(s),
        trend=found.trend,
        history=[ChurnPointOut(day=d, probability=p, tier=t) for d, p, t in found.history],
    )
