"""Privacy routes: one person's export, two-step erasure, and consent (cloud/privacy/).

All need ``privacy:admin``, except recording consent collected in the app or at a dealer, which marketing
does (``marketing:write``, its own route). An erasure is confirmed by a second key: the key that requested it
is refused (403). Every call is audited in the same transaction as what it did, refusals included.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from psycopg.rows import tuple_row
from pydantic import AwareDatetime, BaseModel, Field

from cloud.config import CloudSettings
from cloud.privacy import consent, erasure, export

from .auth import Principal, require
from .deps import Conn
from .errors import ApiError, documented

router = APIRouter(tags=["privacy"])

CustomerId = Annotated[str, Path(min_length=1, max_length=64)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: documented("no such customer")}


class ErasureRequestOut(BaseModel):
    """A stored erasure request; ``token`` is shown only now (only its SHA-256 is kept)."""

    request_id: int
    token: str
    expires_at: datetime
    confirm: str = Field(description="where a second privacy:admin key confirms it, with the token")


class ConfirmIn(BaseModel):
    """The token the erasure request returned."""

    token: str = Field(min_length=1, max_length=200)


class ErasureOut(BaseModel):
    """A done erasure: its ledger entry and how many rows went per table."""

    request_id: int
    erasure_id: int
    rows: dict[str, int]


class ConsentIn(BaseModel):
    """A grant or withdrawal of one scope; ``at`` is when the person decided (default now)."""

    scope: Literal["marketing", "profiling", "location", "rd", "dealer_sharing"]
    granted: bool
    source: Literal["app", "dealer", "import"]
    at: AwareDatetime | None = None


class MarketingConsentIn(ConsentIn):
    """Consent marketing collected: in the app or at a dealer."""

    source: Literal["app", "dealer"]


class ConsentEventOut(BaseModel):
    """One grant or withdrawal as stored."""

    scope: str
    granted: bool
    at: datetime
    source: str
    key_id: int | None
    vehicle_id: str | None
    recorded_at: datetime


class ConsentOut(BaseModel):
    """A customer's current consent per scope (no event: not granted) and every event."""

    customer_id: str
    current: dict[str, bool]
    history: list[ConsentEventOut]


def _event(e: consent.ConsentEvent) -> ConsentEventOut:
    return ConsentEventOut(
        scope=e.scope,
        granted=e.granted,
        at=e.at,
        source=e.source,
        key_id=e.key_id,
        vehicle_id=e.vehicle_id,
        recorded_at=e.recorded_at,
    )


def _tuples(conn: Conn) -> Conn:
    # the privacy modules (and cloud.db.dialect) read rows by position
    conn.row_factory = tuple_row  # type: ignore[assignment]
    return conn


@router.get(
    "/v1/privacy/customers/{customer_id}/export",
    response_model=dict[str, Any],
    responses=_NOT_FOUND,
)
def export_customer(
    principal: Annotated[Principal, require("privacy:admin")], conn: Conn, customer_id: CustomerId
) -> dict[str, Any]:
    """Everything held about one person as one JSON document (``drivesight.export.v1``: CRM record, consent,
    identities and merges, interactions, complaints, portrait, per vehicle trips, events, fault codes, push
    feedback and telemetry as counts, latest values and hourly/daily rollups; dead letters naming them)."""
    try:
        return export.export_customer(_tuples(conn), customer_id, key_id=principal.key_id)
    except export.CustomerNotFound as exc:
        raise ApiError(404, str(exc)) from exc


def _erasure_error(exc: erasure.ErasureError) -> ApiError:
    codes = {404: "not_found", 409: "already_confirmed", 410: "expired"}
    code = codes.get(exc.status) or ("same_key" if isinstance(exc, erasure.SameKey) else "wrong_token")
    return ApiError(exc.status, str(exc), code=code)


@router.post(
    "/v1/privacy/customers/{customer_id}/erasure",
    response_model=ErasureRequestOut,
    status_code=201,
    responses=_NOT_FOUND,
)
def request_erasure(
    principal: Annotated[Principal, require("privacy:admin")], conn: Conn, customer_id: CustomerId
) -> ErasureRequestOut:
    """Step one of an erasure: a request with a one-time token that expires in 24 hours."""
    try:
        stored = erasure.request_erasure(_tuples(conn), customer_id, key_id=principal.key_id)
    except erasure.ErasureError as exc:
        raise _erasure_error(exc) from exc
    return ErasureRequestOut(
        request_id=stored.request_id,
        token=stored.token,
        expires_at=stored.expires_at,
        confirm=f"/v1/privacy/erasures/{stored.request_id}/confirm",
    )


def _ledger_key(settings: CloudSettings) -> bytes:
    try:
        return settings.ledger_key()
    except SystemExit as exc:  # the settings' refusal, meant for a CLI; here the service is not set up
        raise ApiError(503, f"erasure is not configured: {exc}", code="unavailable") from exc


@router.post(
    "/v1/privacy/erasures/{request_id}/confirm",
    response_model=ErasureOut,
    responses={
        403: documented("the token is wrong, or the key that requested the erasure tries to confirm it"),
        404: documented("no such erasure request"),
        409: documented("the request was confirmed before, or its person is erased already"),
        410: documented("the request expired: request the erasure again"),
        503: documented("no erasure ledger key is configured (DRIVESIGHT_PRIVACY_LEDGER_KEY)"),
    },
)
def confirm_erasure(
    principal: Annotated[Principal, require("privacy:admin")],
    conn: Conn,
    request: Request,
    request_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: ConfirmIn,
) -> ErasureOut:
    """Step two, by a second key: deletes every row of the person in one transaction, records the erasure in
    the ledger (keyed hashes only) and the audit log."""
    settings: CloudSettings = request.app.state.settings
    key = _ledger_key(settings)
    try:
        done = erasure.confirm_erasure(
            _tuples(conn),
            request_id,
            body.token,
            key_id=principal.key_id,
            ledger_key=key,
            ledger_file=settings.privacy_ledger_file,
        )
    except erasure.ErasureError as exc:
        raise _erasure_error(exc) from exc
    return ErasureOut(request_id=done.request_id, erasure_id=done.erasure_id, rows=done.rows)


@router.get("/v1/privacy/customers/{customer_id}/consent", response_model=ConsentOut, responses=_NOT_FOUND)
def read_consent(
    principal: Annotated[Principal, require("privacy:admin")], conn: Conn, customer_id: CustomerId
) -> ConsentOut:
    """The current consent per scope (derived from the history; no event: not granted) and every event."""
    try:
        now, events = consent.read(_tuples(conn), customer_id, key_id=principal.key_id)
    except consent.ConsentError as exc:
        raise ApiError(404, str(exc)) from exc
    return ConsentOut(customer_id=customer_id, current=now, history=[_event(e) for e in events])


def _record(conn: Conn, principal: Principal, customer_id: str, body: ConsentIn) -> ConsentEventOut:
    try:
        event = consent.change(
            _tuples(conn),
            customer_id,
            body.scope,
            body.granted,
            body.source,
            at=body.at,
            key_id=principal.key_id,
        )
    except consent.ConsentError as exc:
        raise ApiError(404, str(exc)) from exc
    return _event(event)


@router.post(
    "/v1/privacy/customers/{customer_id}/consent",
    response_model=ConsentEventOut,
    status_code=201,
    responses=_NOT_FOUND,
)
def record_consent(
    principal: Annotated[Principal, require("privacy:admin")],
    conn: Conn,
    customer_id: CustomerId,
    body: ConsentIn,
) -> ConsentEventOut:
    """Record a grant or withdrawal from the app, a dealer or an import (cars report their own)."""
    return _record(conn, principal, customer_id, body)


@router.post(
    "/v1/customers/{customer_id}/consent",
    response_model=ConsentEventOut,
    status_code=201,
    responses=_NOT_FOUND,
)
def record_marketing_consent(
    principal: Annotated[Principal, require("marketing:write")],
    conn: Conn,
    customer_id: CustomerId,
    body: MarketingConsentIn,
) -> ConsentEventOut:
    """Record a grant or withdrawal marketing collected in the app or at a dealer."""
    return _record(conn, principal, customer_id, body)
