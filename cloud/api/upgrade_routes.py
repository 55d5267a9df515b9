"""Upgrade intent for marketing: the newest day's customers above a probability, and one customer's score
with trend.

Only customers whose current consent allows marketing are shown (a customer without it is a 404, alike for an
unknown one or one not scored yet). Both are personal reads, audited: a list as one ``upgrade.list`` row
naming the threshold and how many customers it showed, a customer as ``upgrade.read`` under the pseudonymous
subject.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from cloud.privacy.audit import AuditUnavailable, AuditWriter, personal_subject
from cloud.upgrade.read import UpgradeScore, customer_upgrade, list_scores

from .auth import Principal, require
from .deps import Conn
from .errors import ApiError, documented
from .guard import NO_NUL
from .pagination import Cursor, Limit, Page, decode_cursor, encode_cursor

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


def _fields(s: UpgradeScore) -> dict[str, Any]:
    return {
        "customer_id": s.customer_id,
        "day": s.day,
        "probability": s.probability,
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
    after = None
    if cursor:
        p, c = decode_cursor(cursor, "upgrade", (float, str))
        after = (p, c)
    scores = list_scores(conn, min_probability, limit=limit + 1, after=after)
    shown = scores[:limit]
    more = len(scores) > limit and bool(shown)
    next_cursor = encode_cursor("upgrade", shown[-1].probability, shown[-1].customer_id) if more else None
    _audit(request, principal, "upgrade.list", None, min_probability=min_probability, customers=len(shown))
    return Page(items=[UpgradeOut(**_fields(s)) for s in shown], next_cursor=next_cursor)


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
    found = customer_upgrade(conn, customer_id, days=days)
    subject = personal_subject("customer", customer_id)
    if found is None:
        _audit(request, principal, "upgrade.read", subject, outcome="not_found")
        raise ApiError(404, f"no upgrade score of customer {customer_id!r} that marketing may see")
    _audit(request, principal, "upgrade.read", subject)
    return CustomerUpgradeOut(
        **_fields(found.latest),
        trend=found.trend,
        history=[UpgradePointOut(day=d, probability=p) for d, p in found.history],
    )
