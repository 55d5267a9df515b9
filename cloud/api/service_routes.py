"""Service reminder routes: the reminder decisions with their reasons, and one customer's service picture.

Both need ``marketing:read`` (after-sales contact is run by the marketing / after-sales team, as campaigns
are; there is no dealer scope yet) and, being reads of personal data, are audited as the campaign decisions
list is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from psycopg.rows import tuple_row
from pydantic import BaseModel

from cloud.privacy.audit import personal_subject, record
from cloud.service.plans import ServicePlans, load_plans
from cloud.service.read import customer_service, list_reminders

from .auth import Principal, require
from .deps import Conn
from .errors import ApiError, documented
from .pagination import Cursor, Limit, Page, decode_cursor, encode_cursor, paginate

router = APIRouter(tags=["service"])

Status = Literal[
    "sending", "sent", "failed", "suppressed", "stopped_by_booking",
    "no_consent", "quiet_hours", "capped", "held", "no_dealer", "no_endpoint",
]  # fmt: skip


class ReminderOut(BaseModel):
    """One reminder decision: why the car was due, the attempt, the outcome and why, the car's feedback."""

    reminder_id: int
    customer_id: str
    vehicle_id: str
    dealer_id: str | None
    channel: str
    reason: str
    fault_code: str | None
    episode: str
    due_at: datetime
    attempt: int
    outcome: str
    suppressed_by: str | None
    why: str
    push_id: str | None
    url: str | None
    decided_at: datetime
    sent_at: datetime | None
    expires_at: datetime | None
    feedback: list[str]


def _plans(request: Request) -> ServicePlans:
    # loaded once per app from the shipped file or DRIVESIGHT_SERVICE_PLANS (the job's own plans)
    plans: ServicePlans | None = getattr(request.app.state, "service_plans", None)
    if plans is None:
        import os
        from pathlib import Path as FilePath

        path = os.environ.get("DRIVESIGHT_SERVICE_PLANS")
        plans = request.app.state.service_plans = load_plans(FilePath(path) if path else None)
    return plans


def _audit(conn: Conn, principal: Principal, action: str, subject: str, detail: dict[str, object]) -> None:
    conn.row_factory = tuple_row  # type: ignore[assignment]
    with conn.transaction():
        record(conn, key_id=principal.key_id, action=action, subject=subject, outcome="ok", detail=detail)


@router.get("/v1/service/reminders", response_model=Page[ReminderOut])
def service_reminders(
    principal: Annotated[Principal, require("marketing:read")],
    conn: Conn,
    vehicle_id: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[^\x00]*$")] = None,
    status: Status | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[ReminderOut]:
    """Reminder decisions, newest first, by car and outcome or suppression reason (audited)."""
    before = decode_cursor(cursor, "reminders", (int,))[0] if cursor else None
    rows = list_reminders(conn, vehicle_id=vehicle_id, status=status, limit=limit + 1, before=before)
    rows, next_cursor = paginate(rows, limit, lambda r: encode_cursor("reminders", r["reminder_id"]))
    subject = personal_subject("vehicle", vehicle_id) if vehicle_id else "service"
    _audit(conn, principal, "service.reminders.read", subject, {"rows": len(rows)})
    return Page(items=[ReminderOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/v1/customers/{customer_id}/service",
    response_model=dict[str, Any],
    responses={404: documented("no such customer")},
)
def customer_service_route(
    request: Request,
    principal: Annotated[Principal, require("marketing:read")],
    conn: Conn,
    customer_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00]*$")],
) -> dict[str, Any]:
    """The customer's cars: plan, last service, odometer, what is due and why; reminder decisions and
    bookings (audited)."""
    found = customer_service(conn, _plans(request), customer_id, datetime.now(UTC))
    _audit(
        conn,
        principal,
        "service.customer.read",
        personal_subject("customer", customer_id),
        {"found": found is not None},
    )
    if found is None:
        raise ApiError(404, f"customer {customer_id!r} not found", code="not_found")
    return found
