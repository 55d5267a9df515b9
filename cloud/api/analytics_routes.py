"""Routes for marketing and R&D: a customer's portrait, the segments, insights per vehicle group."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from cloud.analytics.insights import DIMENSIONS, insights

from .deps import Conn
from .schemas import PortraitOut, SegmentOut

router = APIRouter()


@router.get(
    "/v1/customers/{customer_id}/portrait",
    response_model=PortraitOut,
    responses={404: {"description": "no such customer"}},
)
def portrait(conn: Conn, customer_id: Annotated[str, Path(min_length=1, max_length=64)]) -> PortraitOut:
    """Features, tags with scores and evidence, cluster, category preferences and segments of one customer."""
    customer = conn.execute(
        "SELECT customer_id, birth_year, gender, region, city, income_band, education FROM customers"
        " WHERE customer_id = %s",
        (customer_id,),
    ).fetchone()
    if customer is None:
        raise HTTPException(status_code=404, detail=f"customer {customer_id!r} not found")
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
    return PortraitOut(
        customer=dict(customer),
        features=features["features"] if features else {},
        computed_at=features["computed_at"] if features else None,
        tags=[dict(t) for t in tags],
        cluster=cluster["cluster"] if cluster else None,
        cluster_description=words,
        preferences={str(p["category"]): float(str(p["score"])) for p in preferences},
        segments=[str(s["segment"]) for s in segments],
    )


@router.get("/v1/segments", response_model=list[SegmentOut])
def list_segments(conn: Conn) -> list[SegmentOut]:
    """Every segment with its expression, size and when it was computed."""
    rows = conn.execute("SELECT name, expression, size, computed_at FROM segments ORDER BY name").fetchall()
    return [SegmentOut.model_validate(r) for r in rows]


@router.get("/v1/insights")
def get_insights(
    conn: Conn,
    since: datetime,
    until: datetime,
    by: Annotated[str, Query(description=f"comma-separated: {', '.join(DIMENSIONS)}")] = "model",
    min_vehicles: Annotated[int, Query(ge=1)] = 30,
) -> list[dict[str, Any]]:
    """R&D insights per vehicle group over [since, until): usage, faults, efficiency, harsh driving."""
    if since.tzinfo is None or until.tzinfo is None:
        raise HTTPException(status_code=422, detail="give since and until with a UTC offset")
    try:
        return insights(conn, tuple(by.split(",")), since, until, min_vehicles=min_vehicles)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
