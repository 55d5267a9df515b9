"""Routes for marketing and R&D: a customer's portrait, the segments, insights per vehicle group.

Portraits (``marketing:read``) are shown only for customers whose current consent allows marketing, and
every portrait request is audited, answered or not. Insights (``rd:read``) are aggregates only: groups with
fewer vehicles than ``DRIVESIGHT_API_MIN_GROUP_SIZE`` are left out, and so are fault codes seen on fewer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from cloud.analytics.insights import DIMENSIONS, insights
from cloud.privacy.audit import AuditUnavailable, AuditWriter, personal_subject, record
from cloud.privacy.consent import allows

from .auth import Principal, require
from .deps import Conn
from .errors import ApiError, documented
from .guard import NO_NUL
from .least_data import suppress_small_groups
from .pagination import Cursor, Limit, Page, decode_cursor, encode_cursor, paginate
from .params import UtcTime
from .schemas import PortraitOut, SegmentOut

router = APIRouter()

_DIMENSION = "|".join(DIMENSIONS)


class InsightsPage(BaseModel):
    """A page of insight groups; ``suppressed_groups`` groups had fewer than ``min_group_size`` vehicles."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    suppressed_groups: int
    min_group_size: int


def _portrait_refused(conn: Conn, principal: Principal, customer_id: str, outcome: str) -> ApiError:
    # the refusal is audited too, and committed before the 404 rolls the request's transaction back
    record(
        conn,
        key_id=principal.key_id,
        action="portrait.read",
        subject=personal_subject("customer", customer_id),
        outcome=outcome,
    )
    conn.commit()
    return ApiError(404, f"no portrait of customer {customer_id!r} that marketing may see")


@router.get(
    "/v1/customers/{customer_id}/portrait",
    response_model=PortraitOut,
    responses={404: documented("no such customer, or the customer's consent does not allow marketing")},
)
def portrait(
    request: Request,
    principal: Annotated[Principal, require("marketing:read")],
    conn: Conn,
    customer_id: Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)],
) -> PortraitOut:
    """Features, tags with scores and evidence, cluster, category preferences and segments of one customer
    whose consent allows marketing (404 otherwise, alike for an unknown customer)."""
    customer = conn.execute(
        "SELECT customer_id, birth_year, gender, region, city, income_band, education FROM customers"
        " WHERE customer_id = %s",
        (customer_id,),
    ).fetchone()
    if customer is None:
        raise _portrait_refused(conn, principal, customer_id, "not_found")
    if not allows(conn, customer_id, "marketing"):
        raise _portrait_refused(conn, principal, customer_id, "no_consent")
    features = conn.execute(
        "SELECT features, computed_at FROM customer_features WHERE customer_id = %s", (customer_id,)
    ).fetchone()
    tags = conn.execute(
        "SELECT tag, score, evidence FROM customer_tags WHERE customer_id = %s ORDER BY score DESC, tag",
        (customer_id,),
    ).fetchall()
    cluster = conn.execute(
        "SELECT k.cluster, m.model FROM customer_clusters k"
        " JOIN cluster_models m ON m.version = k.model_version WHERE k.customer_id = %s",
        (customer_id,),
    ).fetchone()
    preferences = conn.execute(
        "SELECT category, score FROM customer_preferences WHERE customer_id = %s ORDER BY score DESC",
        (customer_id,),
    ).fetchall()
    segments = conn.execute(
        "SELECT segment FROM segment_members WHERE customer_id = %s ORDER BY segment", (customer_id,)
    ).fetchall()
    words = None
    if cluster is not None:
        model: Any = cluster["model"]
        words = next(c["description"] for c in model["clusters"] if c["cluster"] == cluster["cluster"])
    answer = PortraitOut(
        customer=dict(customer),
        features=features["features"] if features else {},
        computed_at=features["computed_at"] if features else None,
        tags=[dict(t) for t in tags],
        cluster=cluster["cluster"] if cluster else None,
        cluster_description=words,
        preferences={str(p["category"]): float(str(p["score"])) for p in preferences},
        segments=[str(s["segment"]) for s in segments],
    )
    # committed before the answer leaves, by the process's audit writer together with other requests' rows:
    # appended in this transaction, the log's single head row stayed locked until it committed, and portrait
    # reads queued behind one another (cloud/privacy/audit.py, AuditWriter)
    writer: AuditWriter = request.app.state.audit
    try:
        writer.record(
            key_id=principal.key_id,
            action="portrait.read",
            subject=personal_subject("customer", customer_id),
            outcome="ok",
        )
    except AuditUnavailable as exc:
        raise ApiError(503, "cannot answer now: the audit log cannot be written") from exc
    return answer


@router.get("/v1/segments", response_model=Page[SegmentOut])
def list_segments(
    _: Annotated[Principal, require("marketing:read")], conn: Conn, limit: Limit = 100, cursor: Cursor = None
) -> Page[SegmentOut]:
    """Every segment with its expression, size and when it was computed, by name."""
    after = decode_cursor(cursor, "segments", (str,))[0] if cursor else None
    rows = conn.execute(
        "SELECT name, expression, size, computed_at FROM segments"
        " WHERE %(after)s::text IS NULL OR name > %(after)s ORDER BY name LIMIT %(limit)s",
        {"after": after, "limit": limit + 1},
    ).fetchall()
    rows, next_cursor = paginate(rows, limit, lambda r: encode_cursor("segments", r["name"]))
    return Page(items=[SegmentOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/v1/insights", response_model=InsightsPage)
def get_insights(
    _: Annotated[Principal, require("rd:read")],
    request: Request,
    conn: Conn,
    since: UtcTime,
    until: UtcTime,
    by: Annotated[
        str,
        Query(
            description=f"comma-separated: {', '.join(DIMENSIONS)}",
            pattern=f"^({_DIMENSION})(,({_DIMENSION}))*$",
            max_length=200,
        ),
    ] = "model",
    min_vehicles: Annotated[
        int, Query(ge=1, description="groups with fewer vehicles are flagged small_sample")
    ] = 30,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> InsightsPage:
    """R&D insights per vehicle group over [since, until): usage, faults, efficiency, harsh driving.

    Aggregates only: a group with fewer vehicles than the server's minimum group size is left out (counted in
    ``suppressed_groups``), and so is a fault code seen on fewer vehicles. The cursor is an offset into the
    groups of the same query."""
    offset = decode_cursor(cursor, "insights", (int,))[0] if cursor else 0
    if offset < 0:
        raise ApiError(422, "cursor is not a next_cursor of this list", code="invalid_cursor")
    try:
        groups = insights(conn, tuple(by.split(",")), since, until, min_vehicles=min_vehicles)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from exc
    min_size: int = request.app.state.settings.api_min_group_size
    kept, suppressed = suppress_small_groups(groups, min_size)
    shown = kept[offset : offset + limit]
    more = offset + limit < len(kept)
    return InsightsPage(
        items=shown,
        next_cursor=encode_cursor("insights", offset + limit) if more else None,
        suppressed_groups=suppressed,
        min_group_size=min_size,
    )
