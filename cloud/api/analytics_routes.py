"""Routes for marketing and R&D: a customer's portrait, the segments, insights per vehicle group.

Portraits (``marketing:read``) are shown only for customers whose current consent allows marketing, and
every portrait request is audited, answered or not. Insights (``rd:read``) are aggregates only: groups with
fewer vehicles than ``DRIVESIGHT_API_MIN_GROUP_SIZE`` are left out, and so are fault codes seen on fewer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from psycopg.rows import dict_row
from pydantic import BaseModel

from cloud.analytics.insights import DIMENSIONS, insights
from cloud.privacy.audit import AsyncAuditWriter, AuditUnavailable, personal_subject

from .auth import Principal, require
from .deps import Conn, async_pool
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


#: a portrait in one round trip: whether the customer exists and allows marketing (the current consent, as
#: ``cloud.privacy.consent.allows`` reads it), and only then the rest (features, tags with scores and
#: evidence, category preferences, cluster and its description, segments): nothing personal is read without
#: consent. Seven queries of their own cost more CPU in the API process than the database spent on them.
_PORTRAIT = """
WITH asked AS MATERIALIZED (  -- once: the consent check is used twice below
    SELECT EXISTS (SELECT FROM customers WHERE customer_id = %(id)s) AS known,
           EXISTS (SELECT FROM consent_current
                   WHERE customer_id = %(id)s AND scope = 'marketing' AND granted) AS allowed
)
SELECT asked.known, asked.allowed, p.* FROM asked LEFT JOIN LATERAL (
    SELECT c.customer_id, c.birth_year, c.gender, c.region, c.city, c.income_band, c.education,
           f.features, f.computed_at, k.cluster,
           (SELECT e.d ->> 'description'
            FROM jsonb_array_elements(m.model -> 'clusters') WITH ORDINALITY e (d, i)
            WHERE e.d -> 'cluster' = to_jsonb(k.cluster) ORDER BY e.i LIMIT 1) AS cluster_description,
           t.tags, t.tag_scores, t.tag_evidence, pr.categories, pr.category_scores,
           -- per segment a probe of segment_members' key (segment, customer_id): there is no index by
           -- customer alone, and a search of all the members took most of the query's time
           (SELECT coalesce(array_agg(g.name ORDER BY g.name), '{}') FROM segments g
            WHERE EXISTS (SELECT FROM segment_members s
                          WHERE s.segment = g.name AND s.customer_id = c.customer_id)) AS segments
    FROM customers c
    LEFT JOIN customer_features f ON f.customer_id = c.customer_id
    LEFT JOIN customer_clusters k ON k.customer_id = c.customer_id
    LEFT JOIN cluster_models m ON m.version = k.model_version
    -- arrays, not JSON: a real's NaN or 1.0 arrives as the float it is, as it did from a query of its own
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(tag ORDER BY score DESC, tag), '{}') AS tags,
               coalesce(array_agg(score ORDER BY score DESC, tag), '{}') AS tag_scores,
               coalesce(array_agg(evidence ORDER BY score DESC, tag), '{}') AS tag_evidence
        FROM customer_tags WHERE customer_id = c.customer_id
    ) t
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(category ORDER BY score DESC, category), '{}') AS categories,
               coalesce(array_agg(score ORDER BY score DESC, category), '{}') AS category_scores
        FROM customer_preferences WHERE customer_id = c.customer_id
    ) pr
    WHERE c.customer_id = %(id)s
) p ON asked.allowed
"""

_CUSTOMER = ("customer_id", "birth_year", "gender", "region", "city", "income_band", "education")


async def _audit_portrait(request: Request, principal: Principal, customer_id: str, outcome: str) -> None:
    # committed before the answer leaves, by the process's audit writer together with other requests' rows:
    # appended in the reader's transaction, the log's single head row stayed locked until it committed, and
    # portrait reads queued behind one another (cloud/privacy/audit.py, AuditWriter); the writer of the event
    # loop, so that a read involves no other thread
    writer: AsyncAuditWriter = request.app.state.async_audit
    try:
        await writer.record(
            key_id=principal.key_id,
            action="portrait.read",
            subject=personal_subject("customer", customer_id),
            outcome=outcome,
        )
    except AuditUnavailable as exc:
        raise ApiError(503, "cannot answer now: the audit log cannot be written") from exc


@router.get(
    "/v1/customers/{customer_id}/portrait",
    response_model=PortraitOut,
    responses={404: documented("no such customer, or the customer's consent does not allow marketing")},
)
async def portrait(
    request: Request,
    principal: Annotated[Principal, require("marketing:read")],
    customer_id: Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)],
) -> Response:
    """Features, tags with scores and evidence, cluster, category preferences and segments of one customer
    whose consent allows marketing (404 otherwise, alike for an unknown customer)."""
    # async, on a pool of its own (autocommit: one statement, one snapshot): the busiest route costs no
    # worker-thread hop and holds its connection for its one query only, not while the audit row commits
    async with async_pool(request).connection() as conn:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(_PORTRAIT, {"id": customer_id}, prepare=True)
        row = await cursor.fetchone()
    assert row is not None, "the query answers one row for any id"
    if not row["known"] or not row["allowed"]:
        outcome = "not_found" if not row["known"] else "no_consent"
        await _audit_portrait(request, principal, customer_id, outcome)
        raise ApiError(404, f"no portrait of customer {customer_id!r} that marketing may see")
    answer = PortraitOut(
        customer={name: row[name] for name in _CUSTOMER},
        features=row["features"] or {},
        computed_at=row["computed_at"],
        tags=[
            {"tag": tag, "score": score, "evidence": evidence}
            for tag, score, evidence in zip(row["tags"], row["tag_scores"], row["tag_evidence"], strict=True)
        ],
        cluster=row["cluster"],
        cluster_description=row["cluster_description"],
        preferences=dict(zip(row["categories"], row["category_scores"], strict=True)),
        segments=row["segments"],
    )
    await _audit_portrait(request, principal, customer_id, "ok")
    # returned as a response: FastAPI would validate the model it was just built as once more (the document
    # still names PortraitOut); serialized by pydantic in one step (non-finite floats null, as in every
    # answer), a fifth of the time of a dict passed through SafeJSONResponse
    return Response(answer.model_dump_json(), media_type="application/json")


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
