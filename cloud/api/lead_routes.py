"""Lead routes: lead managers see every dealer's leads, statistics and KPIs (``leads:read``); a dealer, with a
key bound to it (scope ``dealer``, ``drivesight cloud keys create --scopes dealer --dealer D``), sees only its
own leads, sets their follow-up, reads its own KPIs and exports its leads as ADF XML for its CRM.

A dealer key never names its dealer in the URL: the key says which dealer it is, so no URL can reach another
dealer's leads; another dealer's lead is indistinguishable from none (404). An ``admin`` key has every scope
but no dealer: the dealer routes answer it 403. Lists of leads are personal reads and are audited.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from cloud.leads.adf import to_adf
from cloud.leads.followup import FollowUpError, LostReason, set_status
from cloud.leads.kpis import dealer_kpis, lead_stats
from cloud.leads.read import dealer_name, list_leads

from .auth import Principal, require
from .deps import Conn
from .errors import ApiError, documented
from .guard import NO_NUL
from .pagination import Cursor, Limit, Page, decode_cursor, encode_cursor, paginate
from .scoring import audit

router = APIRouter(tags=["leads"])

LeadStatus = Literal[
    "new", "rejected", "duplicate", "unassigned", "assigned", "contacted", "appointment", "test_drive",
    "order", "lost",
]  # fmt: skip
Month = Annotated[
    str, Query(pattern=r"^(19|20)\d{2}-(0[1-9]|1[0-2])$", description="YYYY-MM (default: this month)")
]


class LeadOut(BaseModel):
    """A lead: where it came from, the cleaned contact fields, its rating with reasons, where it is."""

    lead_id: int
    source: str
    channel: str
    activity: str | None
    created_at: datetime
    name: str | None
    phone: str | None
    email: str | None
    city: str | None
    region: str | None
    model_interest: str | None
    intent: str
    message: str | None
    customer_id: str | None
    status: str
    status_reason: str | None
    grade: str | None
    score: float | None
    reasons: list[str] | None
    duplicate_of_lead: int | None
    dealer_id: str | None
    assigned_at: datetime | None
    contact_due_at: datetime | None
    first_contact_at: datetime | None
    updated_at: datetime


class StatusIn(BaseModel):
    """A follow-up step: ``contacted``, ``appointment``, ``test_drive``, ``order``, or ``lost`` with its
    reason."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["contacted", "appointment", "test_drive", "order", "lost"]
    at: datetime | None = Field(default=None, description="when it happened (default: now); with its offset")
    note: str | None = Field(default=None, max_length=1000, pattern=NO_NUL)
    lost_reason: LostReason | None = None


class StatusOut(BaseModel):
    """The lead after the change."""

    lead_id: int
    status: str
    previous: str
    at: datetime
    first_contact_at: datetime | None


def _month(value: str | None) -> date:
    if value is None:
        today = datetime.now(UTC).date()
        return today.replace(day=1)
    return date(int(value[:4]), int(value[5:7]), 1)


def _own_dealer(principal: Principal) -> str:
    if principal.dealer_id is None:
        raise ApiError(
            403,
            "this route needs a key bound to a dealer (scope dealer, --dealer)",
            code="insufficient_scope",
        )
    return principal.dealer_id


def _page(
    request: Request,
    principal: Principal,
    conn: Conn,
    action: str,
    limit: int,
    cursor: str | None,
    **filters: Any,
) -> Page[LeadOut]:
    before = decode_cursor(cursor, "leads", (int,))[0] if cursor else None
    rows = list_leads(conn, limit=limit + 1, before=before, **filters)
    rows, next_cursor = paginate(rows, limit, lambda r: encode_cursor("leads", r["lead_id"]))
    audit(request, principal, action, filters.get("dealer_id"), leads=len(rows))
    return Page(items=[LeadOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/v1/leads", response_model=Page[LeadOut])
def leads(
    request: Request,
    principal: Annotated[Principal, require("leads:read")],
    conn: Conn,
    status: LeadStatus | None = None,
    dealer_id: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_NUL)] = None,
    grade: Literal["A", "B", "C"] | None = None,
    channel: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_NUL)] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[LeadOut]:
    """Every dealer's leads, newest first, by status, dealer, grade and channel (audited)."""
    return _page(
        request, principal, conn, "leads.list", limit, cursor,
        dealer_id=dealer_id, status=status, grade=grade, channel=channel,
    )  # fmt: skip


@router.get("/v1/leads/stats", response_model=list[dict[str, Any]])
def stats(
    principal: Annotated[Principal, require("leads:read")],
    conn: Conn,
    since: date,
    until: date,
    by: Literal["channel", "activity", "source"] = "channel",
) -> list[dict[str, Any]]:
    """Leads created in ``since <= day < until`` per channel, activity or source: captured, rejected,
    duplicates, grades, assigned, funnel steps reached, and the conversion with its 95 % interval."""
    if until <= since:
        raise ApiError(422, "until must be after since", code="invalid_request")
    return lead_stats(conn, since, until, by=by)


@router.get("/v1/dealers/kpis", response_model=list[dict[str, Any]])
def kpis(
    principal: Annotated[Principal, require("leads:read")],
    conn: Conn,
    month: Month | None = None,
) -> list[dict[str, Any]]:
    """Every dealer's month: leads, contact rate and conversion with intervals, time to first contact (p50,
    p90), the funnel, escalations, and the targets with their attainment."""
    return [k.as_json() for k in dealer_kpis(conn, _month(month))]


@router.get("/v1/dealer/leads", response_model=Page[LeadOut], responses={403: documented("not a dealer key")})
def own_leads(
    request: Request,
    principal: Annotated[Principal, require("dealer")],
    conn: Conn,
    status: LeadStatus | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[LeadOut]:
    """This dealer's leads, newest first (audited)."""
    return _page(
        request, principal, conn, "dealer.leads.list", limit, cursor, dealer_id=_own_dealer(principal),
        status=status,
    )  # fmt: skip


@router.post(
    "/v1/dealer/leads/{lead_id}/status",
    response_model=StatusOut,
    responses={
        404: documented("no such lead of this dealer"),
        409: documented("the lead is closed, or the step is not forward"),
    },
)
def follow_up(
    request: Request,
    principal: Annotated[Principal, require("dealer")],
    conn: Conn,
    lead_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: StatusIn,
) -> StatusOut:
    """Record a follow-up step of this dealer's lead."""
    at = body.at or datetime.now(UTC)
    if at.tzinfo is None:
        raise ApiError(422, "give at with its UTC offset", code="invalid_request")
    if at > datetime.now(UTC) + timedelta(minutes=5):
        raise ApiError(422, "at is in the future", code="invalid_request")
    try:
        change = set_status(
            conn, lead_id, _own_dealer(principal), body.status, at=at, key_id=principal.key_id,
            note=body.note, lost_reason=body.lost_reason,
        )  # fmt: skip
    except FollowUpError as exc:
        raise ApiError(exc.status, str(exc), code="not_found" if exc.status == 404 else None) from exc
    audit(request, principal, "dealer.leads.status", f"lead:{lead_id}", status=body.status)
    return StatusOut(
        lead_id=change.lead_id,
        status=change.status,
        previous=change.previous,
        at=change.at,
        first_contact_at=change.first_contact_at,
    )


@router.get(
    "/v1/dealer/kpis", response_model=dict[str, Any], responses={404: documented("the key's dealer is gone")}
)
def own_kpis(
    principal: Annotated[Principal, require("dealer")],
    conn: Conn,
    month: Month | None = None,
) -> dict[str, Any]:
    """This dealer's month against its targets."""
    found = dealer_kpis(conn, _month(month), _own_dealer(principal))
    if not found:
        raise ApiError(404, "no such dealer", code="not_found")
    return found[0].as_json()


@router.get(
    "/v1/dealer/leads.adf",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}, "description": "an ADF 1.0 document"}},
)
def own_leads_adf(
    request: Request,
    principal: Annotated[Principal, require("dealer")],
    conn: Conn,
    status: LeadStatus = "assigned",
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> Response:
    """This dealer's leads of ``status`` (default: assigned, not contacted yet) as ADF XML for its CRM
    (audited)."""
    dealer = _own_dealer(principal)
    rows = list_leads(conn, limit=limit, dealer_id=dealer, status=status)
    audit(request, principal, "dealer.leads.adf", dealer, leads=len(rows))
    return Response(to_adf(rows, dealer_name=dealer_name(conn, dealer)), media_type="application/xml")
