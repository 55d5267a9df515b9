"""Push routes: the catalogue, campaigns (create, preview, launch, pause, results, decisions).

Reading needs ``marketing:read``; changing (catalogue items, campaigns, launching) ``marketing:write``. Every
write is audited in its own transaction; the list of one campaign's per-customer decisions is a read of
personal data and is audited too. A launch publishes to the cars through the broker identity the API has
(``DRIVESIGHT_MQTT_URL``: the downlink identity in deploy/), connected on first use.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import Response
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, field_validator

from cloud.analytics.imports import CatalogueRow, ImportError_, RowErrors, import_rows
from cloud.config import CloudSettings
from cloud.privacy.audit import AsyncAuditWriter, AuditUnavailable, personal_subject, record
from cloud.push import campaigns as campaign_ops
from cloud.push.engine import CampaignError, RunReport, Sender, WebhookChannel, load_campaign
from cloud.push.results import campaign_results
from cloud.push.serving import RecommenderCache
from cloud.push.spec import CampaignSpec, SpecError

from .auth import Principal, require
from .deps import Conn, async_pool
from .errors import ApiError, documented
from .pagination import Cursor, Limit, Page, decode_cursor, encode_cursor, paginate

router = APIRouter(tags=["push"])

CampaignId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: documented("no such campaign")}
_REFUSED: dict[int | str, dict[str, Any]] = {
    409: documented("the campaign cannot be changed so (exists already, finished, not running)"),
    422: documented("the campaign or item is invalid: every problem with its place"),
}
_sender_lock = threading.Lock()


class CatalogueItemOut(BaseModel):
    """A catalogue item as stored."""

    item_id: str
    kind: str
    title: str | None
    body: str | None
    url: str | None
    category: str | None
    tags: list[str]
    target_models: list[str]
    target_regions: list[str]
    valid_from: datetime | None
    valid_until: datetime | None
    cost_per_send: float
    value_per_conversion: float


class CatalogueItemIn(CatalogueRow):
    """A catalogue item as JSON: the ``catalogue`` import's fields, without a file cell's spellings (an empty
    string is not "nothing" and ``a;b`` is not a list here: JSON says null and arrays) and strict types (a
    number is not a time, ``true`` is not a price)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("valid_from", "valid_until", mode="before")
    @classmethod
    def _time_text(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("a time as an ISO 8601 string with its UTC offset")
        return datetime.fromisoformat(value)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value

    @field_validator("tags", "target_models", "target_regions", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return value

    @field_validator("categories", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return value


class ImportedOut(BaseModel):
    """How many items were stored (created or updated)."""

    imported: int


class CampaignOut(BaseModel):
    """A campaign's status, schedule and how many customers it decided and sent to."""

    campaign_id: str
    name: str
    status: str
    priority: int
    starts_at: str
    ends_at: str
    decided: int
    sent: int


class RunOut(BaseModel):
    """What one run of a campaign decided (per decision) and sent."""

    campaign_id: str
    audience: int
    decided: dict[str, int]
    published: int
    acknowledged: int
    seconds: float


class DecisionOut(BaseModel):
    """One customer's decision in a campaign, with its reason and what the car reported."""

    customer_id: str
    arm: str
    decision: str
    reason: str
    item_id: str | None
    vehicle_id: str | None
    push_id: str | None
    decided_at: datetime
    sent_at: datetime | None
    expires_at: datetime | None
    feedback: list[str]


def _audit(conn: Conn, principal: Principal, action: str, subject: str, detail: dict[str, object]) -> None:
    conn.row_factory = tuple_row  # type: ignore[assignment]
    record(conn, key_id=principal.key_id, action=action, subject=subject, outcome="ok", detail=detail)


@router.post(
    "/v1/catalogue",
    response_model=ImportedOut,
    responses={
        422: documented("invalid items"),
        503: documented(
            "imports need the erasure ledger key (DRIVESIGHT_PRIVACY_LEDGER_KEY) once it holds entries"
        ),
    },
)
def import_catalogue(
    principal: Annotated[Principal, require("marketing:write")],
    conn: Conn,
    request: Request,
    rows: Annotated[list[CatalogueItemIn], Body(max_length=10_000)],
) -> ImportedOut:
    """Create or update catalogue items (the fields of the ``catalogue`` import); every item is validated
    first and nothing is stored unless all are valid."""
    conn.row_factory = tuple_row  # type: ignore[assignment]
    try:
        with conn.transaction():
            imported = import_rows(
                conn, "catalogue", list(rows), ledger_key=_settings(request).ledger_key_if_set()
            )
            _audit(conn, principal, "catalogue.import", "catalogue", {"items": imported.imported})
    except RowErrors as exc:  # an item twice in the body: refused whole
        errors = [{"loc": ["body", line - 1], "msg": msg, "type": "invalid_item"} for line, msg in exc.errors]
        raise ApiError(422, f"{len(errors)} invalid item(s); nothing stored", errors=errors) from exc
    except ImportError_ as exc:  # the import cannot run here (no erasure ledger key while it holds entries)
        raise ApiError(503, str(exc), code="unavailable") from exc
    return ImportedOut(imported=imported.imported)


@router.get("/v1/catalogue", response_model=Page[CatalogueItemOut])
def list_catalogue(
    _: Annotated[Principal, require("marketing:read")], conn: Conn, limit: Limit = 100, cursor: Cursor = None
) -> Page[CatalogueItemOut]:
    """The catalogue by item id."""
    after = decode_cursor(cursor, "catalogue", (str,))[0] if cursor else None
    rows = conn.execute(
        "SELECT item_id, kind, title, body, url, category, tags, target_models, target_regions, valid_from,"
        " valid_until, cost_per_send::float8 AS cost_per_send,"
        " value_per_conversion::float8 AS value_per_conversion FROM content_items"
        " WHERE %(after)s::text IS NULL OR item_id > %(after)s ORDER BY item_id LIMIT %(limit)s",
        {"after": after, "limit": limit + 1},
    ).fetchall()
    rows, next_cursor = paginate(rows, limit, lambda r: encode_cursor("catalogue", r["item_id"]))
    return Page(items=[CatalogueItemOut.model_validate(r) for r in rows], next_cursor=next_cursor)


def _campaign_error(exc: Exception) -> ApiError:
    if isinstance(exc, SpecError):
        return ApiError(422, str(exc), code="invalid_campaign")
    if isinstance(exc, campaign_ops.CampaignExists):
        return ApiError(409, str(exc), code="exists")
    if str(exc).startswith("unknown campaign"):
        return ApiError(404, str(exc), code="not_found")
    return ApiError(409, str(exc), code="conflict")


@router.post("/v1/campaigns", response_model=CampaignOut, status_code=201, responses=_REFUSED | _NOT_FOUND)
def create_campaign(
    principal: Annotated[Principal, require("marketing:write")],
    conn: Conn,
    parsed: CampaignSpec,
) -> CampaignOut:
    """Create a campaign as a draft (the JSON of cloud/push/spec.py), refused whole when it cannot run: an
    unknown or empty audience, an unknown or expired item, a schedule that is over."""
    conn.row_factory = tuple_row  # type: ignore[assignment]
    try:
        with conn.transaction():
            campaign_ops.create(conn, parsed, key_id=principal.key_id)
            _audit(conn, principal, "campaign.create", f"campaign:{parsed.campaign_id}", {})
    except (SpecError, CampaignError) as exc:
        raise _campaign_error(exc) from exc
    return _campaign(conn, parsed.campaign_id)


def _campaign(conn: Conn, campaign_id: str) -> CampaignOut:
    found = [c for c in campaign_ops.list_campaigns(conn) if c["campaign_id"] == campaign_id]
    if not found:
        raise ApiError(404, f"unknown campaign {campaign_id!r}", code="not_found")
    return CampaignOut.model_validate(found[0])


@router.get("/v1/campaigns", response_model=Page[CampaignOut])
def list_campaigns(
    _: Annotated[Principal, require("marketing:read")], conn: Conn, limit: Limit = 100, cursor: Cursor = None
) -> Page[CampaignOut]:
    """Every campaign with its status and counts, by id."""
    conn.row_factory = tuple_row  # type: ignore[assignment]
    after = decode_cursor(cursor, "campaigns", (str,))[0] if cursor else None
    every = sorted(campaign_ops.list_campaigns(conn), key=lambda c: c["campaign_id"])
    rows = [c for c in every if after is None or c["campaign_id"] > after][: limit + 1]
    rows, next_cursor = paginate(rows, limit, lambda c: encode_cursor("campaigns", c["campaign_id"]))
    return Page(items=[CampaignOut.model_validate(c) for c in rows], next_cursor=next_cursor)


@router.get(
    "/v1/campaigns/{campaign_id}/preview", response_model=dict[str, Any], responses=_NOT_FOUND | _REFUSED
)
def preview_campaign(
    _: Annotated[Principal, require("marketing:read")], conn: Conn, request: Request, campaign_id: CampaignId
) -> dict[str, Any]:
    """What launching now would decide: counts per decision, arm and item, and a sample with reasons;
    nothing is written or sent."""
    conn.row_factory = tuple_row  # type: ignore[assignment]
    try:
        return campaign_ops.preview(
            conn, campaign_id, sample=0, global_control_share=_settings(request).push_global_control_share
        )
    except (SpecError, CampaignError) as exc:
        raise _campaign_error(exc) from exc


def _settings(request: Request) -> CloudSettings:
    settings: CloudSettings = request.app.state.settings
    return settings


def _sender(request: Request) -> Sender:
    """The API process's MQTT sender, connected on first use with the API's broker identity."""
    with _sender_lock:
        sender: Sender | None = getattr(request.app.state, "push_sender", None)
        if sender is None:
            from cloud.downlink import BrokerRefused, DownlinkPublisher, connect_service

            settings: CloudSettings = request.app.state.settings
            try:
                client = connect_service(settings)
            except (BrokerRefused, TimeoutError, OSError, SystemExit) as exc:
                raise ApiError(503, f"the broker cannot be reached: {exc}", code="unavailable") from exc
            sender = campaign_ops.mqtt_sender(DownlinkPublisher(client))
            request.app.state.push_sender = sender
        return sender


def _run(report: RunReport) -> RunOut:
    return RunOut(
        campaign_id=report.campaign_id,
        audience=report.audience,
        decided=report.decided,
        published=report.published,
        acknowledged=report.acknowledged,
        seconds=round(report.seconds, 3),
    )


@router.post(
    "/v1/campaigns/{campaign_id}/launch",
    response_model=RunOut,
    responses=_NOT_FOUND | _REFUSED | {503: documented("the broker cannot be reached")},
)
def launch_campaign(
    principal: Annotated[Principal, require("marketing:write")],
    conn: Conn,
    request: Request,
    campaign_id: CampaignId,
) -> RunOut:
    """Set the campaign running and run it once (decide, record, publish); calling it again sends to whoever
    became sendable since and never sends anything twice."""
    conn.row_factory = tuple_row  # type: ignore[assignment]
    try:
        load_campaign(conn, campaign_id)  # an unknown campaign is a 404 before the broker is involved
    except CampaignError as exc:
        raise _campaign_error(exc) from exc
    sender = _sender(request)
    conn.commit()
    conn.autocommit = True
    try:
        secret = _settings(request).webhook_secret()
        report = campaign_ops.launch(
            conn,
            campaign_id,
            sender,
            global_control_share=_settings(request).push_global_control_share,
            webhook=None if secret is None else WebhookChannel(secret),
        )
    except (SpecError, CampaignError) as exc:
        raise _campaign_error(exc) from exc
    finally:
        conn.autocommit = False
    with conn.transaction():
        _audit(conn, principal, "campaign.launch", f"campaign:{campaign_id}", dict(report.decided))
    return _run(report)


@router.post("/v1/campaigns/{campaign_id}/pause", response_model=CampaignOut, responses=_NOT_FOUND | _REFUSED)
def pause_campaign(
    principal: Annotated[Principal, require("marketing:write")], conn: Conn, campaign_id: CampaignId
) -> CampaignOut:
    """Stop sending; decisions and results stay; launch again to resume."""
    conn.row_factory = tuple_row  # type: ignore[assignment]
    try:
        with conn.transaction():
            campaign_ops.set_status(conn, campaign_id, "paused")
            _audit(conn, principal, "campaign.pause", f"campaign:{campaign_id}", {})
    except CampaignError as exc:
        raise _campaign_error(exc) from exc
    return _campaign(conn, campaign_id)


@router.get("/v1/campaigns/{campaign_id}/results", response_model=dict[str, Any], responses=_NOT_FOUND)
def campaign_results_route(
    _: Annotated[Principal, require("marketing:read")], conn: Conn, request: Request, campaign_id: CampaignId
) -> dict[str, Any]:
    """Per arm: the funnel, CTR and conversion with intervals, uplift against the holdout with its interval
    and p-value, the minimum detectable effect, cost and ROI; the sample-ratio check
    (cloud/push/results.py)."""
    conn.row_factory = tuple_row  # type: ignore[assignment]
    try:
        return campaign_results(
            conn, campaign_id, global_control_share=_settings(request).push_global_control_share
        )
    except CampaignError as exc:
        raise _campaign_error(exc) from exc


@router.get("/v1/campaigns/{campaign_id}/decisions", response_model=Page[DecisionOut], responses=_NOT_FOUND)
def campaign_decisions(
    principal: Annotated[Principal, require("marketing:read")],
    conn: Conn,
    campaign_id: CampaignId,
    decision: Annotated[
        Literal[
            "sent",
            "sending",
            "holdout",
            "global_control",
            "expired",
            "no_consent",
            "no_vehicle",
            "no_content",
            "held",
            "quiet_hours",
            "capped",
        ]
        | None,
        Query(),
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[DecisionOut]:
    """Each customer's decision with its reason and the car's feedback, by customer id (audited)."""
    if conn.execute("SELECT 1 FROM campaigns WHERE campaign_id = %s", (campaign_id,)).fetchone() is None:
        raise ApiError(404, f"unknown campaign {campaign_id!r}", code="not_found")
    after = decode_cursor(cursor, "decisions", (str,))[0] if cursor else None
    rows = conn.execute(
        "SELECT d.customer_id, d.arm, d.decision, d.reason, d.item_id, d.vehicle_id, d.push_id, d.decided_at,"
        " d.sent_at, d.expires_at, coalesce((SELECT array_agg(DISTINCT f.action ORDER BY f.action)"
        "  FROM push_feedback f WHERE f.push_id = d.push_id), '{}') AS feedback"
        " FROM campaign_decisions d WHERE d.campaign_id = %(c)s"
        " AND (%(decision)s::text IS NULL OR d.decision = %(decision)s)"
        " AND (%(after)s::text IS NULL OR d.customer_id > %(after)s) ORDER BY d.customer_id LIMIT %(limit)s",
        {"c": campaign_id, "decision": decision, "after": after, "limit": limit + 1},
    ).fetchall()
    rows, next_cursor = paginate(rows, limit, lambda r: encode_cursor("decisions", r["customer_id"]))
    with conn.transaction():
        _audit(conn, principal, "campaign.decisions.read", f"campaign:{campaign_id}", {"rows": len(rows)})
    return Page(items=[DecisionOut.model_validate(r) for r in rows], next_cursor=next_cursor)


class RecommendedItemOut(BaseModel):
    """One recommended catalogue item, its score and why."""

    item_id: str
    score: float
    reasons: list[str]
    title: str | None
    kind: str | None


class RecommendationsOut(BaseModel):
    """A customer's top items by one algorithm, and when that model was fitted."""

    customer_id: str
    algorithm: str
    fitted_at: datetime
    items: list[RecommendedItemOut]


def _recommenders(request: Request) -> RecommenderCache:
    # made on first use, on the event loop (the only place it is used: no lock needed)
    cache: RecommenderCache | None = getattr(request.app.state, "recommenders", None)
    if cache is None:
        settings: CloudSettings = request.app.state.settings
        cache = request.app.state.recommenders = RecommenderCache(settings.recommend_cache_s)
    return cache


#: what a request needs of the database, in one round trip: whether the customer exists and allows marketing
#: (the current consent, as ``cloud.privacy.consent.allows`` reads it), and only then the items they converted
#: on (nothing personal is read without consent)
_ASKED = """
WITH asked AS MATERIALIZED (
    SELECT EXISTS (SELECT FROM customers WHERE customer_id = %(id)s) AS known,
           EXISTS (SELECT FROM consent_current
                   WHERE customer_id = %(id)s AND scope = 'marketing' AND granted) AS allowed
)
SELECT asked.known, asked.allowed,
       CASE WHEN asked.allowed
            THEN ARRAY(SELECT DISTINCT item_id FROM conversions WHERE customer_id = %(id)s) END AS converted
FROM asked
"""


@router.get(
    "/v1/customers/{customer_id}/recommendations",
    response_model=RecommendationsOut,
    responses={404: documented("no such customer, or the customer's consent does not allow marketing")},
)
async def recommendations(
    request: Request,
    principal: Annotated[Principal, require("marketing:read")],
    customer_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00]*$")],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    algorithm: Literal["personalized", "popularity", "itemknn", "als"] = "personalized",
) -> Response:
    """The customer's top ``k`` catalogue items with scores and reasons (items they converted on and items
    not valid now left out), from a model refitted every ``DRIVESIGHT_RECOMMEND_CACHE_S`` (audited)."""
    # async on the portraits' pool, one query, rankings computed at fit time (cloud/push/serving.py): the
    # sync route's three thread hops, four queries and a ranking of its own cost 1.4-5.8 ms of CPU a request
    async with async_pool(request).connection() as conn:
        cursor = conn.cursor(row_factory=tuple_row)
        await cursor.execute(_ASKED, {"id": customer_id}, prepare=True)
        row = await cursor.fetchone()
    assert row is not None, "the query answers one row for any id"
    known, allowed, converted = row
    if not known or not allowed:
        raise ApiError(404, f"customer {customer_id!r} not found", code="not_found")
    pool: ConnectionPool = request.app.state.pool
    fitted = await _recommenders(request).get(pool.connection, algorithm)
    at = time.time()
    ranked = fitted.top(customer_id, k, converted, at)
    if ranked is None:  # deeper than the lists of the fit: ranked now (milliseconds)
        ranked = fitted.model.recommend(customer_id, k, converted, at=at)
    index = fitted.model.catalogue_.item_index
    answer = RecommendationsOut(
        customer_id=customer_id,
        algorithm=algorithm,
        fitted_at=fitted.fitted_at,
        items=[
            RecommendedItemOut(
                item_id=x.item,
                score=x.score,
                reasons=list(x.reasons),
                title=fitted.titles[index[x.item]],
                kind=fitted.kinds[index[x.item]],
            )
            for x in ranked
        ],
    )
    # committed before the answer leaves, by the event loop's group-committing writer (as a portrait read's)
    writer: AsyncAuditWriter = request.app.state.async_audit
    subject = personal_subject("customer", customer_id)
    try:
        await writer.record(
            key_id=principal.key_id, action="recommendations.read", subject=subject, outcome="ok"
        )
    except AuditUnavailable as exc:
        raise ApiError(503, "cannot answer now: the audit log cannot be written") from exc
    # pre-serialized, as a portrait: FastAPI would validate the model it was just built as once more
    return Response(answer.model_dump_json(), media_type="application/json")
