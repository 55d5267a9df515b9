"""Routes: health, vehicles, trips, events and latest values (scope ``fleet:read``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request

from cloud.db.telemetry import COLUMNS
from cloud.privacy.audit import personal_subject, record
from edge_agent.protocol import VEHICLE_ID_RE, vss

from .auth import Principal, require
from .deps import Conn
from .errors import ApiError, documented
from .guard import NO_NUL
from .least_data import LOCATION_PREFIX, coarse, coarse_row, fine_location
from .pagination import Cursor, Limit, Page, decode_cursor, encode_cursor, paginate
from .params import UtcTime
from .schemas import EventOut, Health, LatestOut, TripOut, VehicleOut

router = APIRouter()
#: the one route without a key (liveness probes have none)
health_router = APIRouter()
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: documented("no such vehicle (or no telemetry yet)")}

#: a vehicle id as the contract allows it; nothing else can be stored, so it is refused (422), not looked up
VehicleId = Annotated[str, Path(pattern=VEHICLE_ID_RE.pattern)]
TripId = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)]
Fleet = Annotated[Principal, require("fleet:read")]

_TRIP_COLUMNS = (
    "trip_id, started_at, ended_at, distance_km, duration_s, moving_s, idle_s, max_speed_kmh, avg_speed_kmh,"
    " night_share, event_counts, start_lat, start_lon, end_lat, end_lon, odometer_km, fuel_used_pct,"
    " soc_used_pct, fuel_used_l, energy_used_kwh, safety_score, eco_score, feature_usage, dtcs,"
    " driving_style, driving_style_probabilities"
)
_TRIP_POSITION = ("start_lat", "start_lon", "end_lat", "end_lon")


@health_router.get(
    "/healthz",
    response_model=Health,
    responses={503: documented("the database does not answer")},
)
def health(request: Request) -> Health:
    """Liveness; 503 when the database does not answer. The one route that needs no key."""
    try:
        with request.app.state.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        raise HTTPException(status_code=503, detail=f"database unavailable: {exc}") from exc
    return Health(status="ok", database="ok")


def _require_vehicle(conn: Conn, vehicle_id: str) -> None:
    if conn.execute("SELECT 1 FROM vehicles WHERE vehicle_id = %s", (vehicle_id,)).fetchone() is None:
        raise HTTPException(status_code=404, detail=f"vehicle {vehicle_id!r} not found")


def _audit_precise(conn: Conn, principal: Principal, vehicle_id: str, action: str, rows: int) -> None:
    # positions as stored are personal data (where someone was): reading them is audited; coarse ones are not,
    # which keeps the fleet's everyday reads off the audit chain's single head row
    if fine_location(principal) and rows:
        record(
            conn,
            key_id=principal.key_id,
            action=action,
            subject=personal_subject("vehicle", vehicle_id),
            outcome="ok",
            detail={"rows": rows, "positions": "as stored"},
        )


def _iso(value: object) -> str:
    assert isinstance(value, datetime)
    return value.isoformat()


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ApiError(422, "cursor is not a next_cursor of this list", code="invalid_cursor") from exc
    if value.tzinfo is None:
        raise ApiError(422, "cursor is not a next_cursor of this list", code="invalid_cursor")
    return value


@router.get("/v1/vehicles", response_model=Page[VehicleOut])
def list_vehicles(_: Fleet, conn: Conn, limit: Limit = 100, cursor: Cursor = None) -> Page[VehicleOut]:
    """Vehicles the cloud has heard from, by id, a page at a time."""
    after = decode_cursor(cursor, "vehicles", (str,))[0] if cursor else None
    rows = conn.execute(
        "SELECT vehicle_id, first_seen, last_seen, status, agent_version FROM vehicles"
        " WHERE %(after)s::text IS NULL OR vehicle_id > %(after)s ORDER BY vehicle_id LIMIT %(limit)s",
        {"after": after, "limit": limit + 1},
    ).fetchall()
    rows, next_cursor = paginate(rows, limit, lambda r: encode_cursor("vehicles", r["vehicle_id"]))
    return Page(items=[VehicleOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/v1/vehicles/{vehicle_id}/trips", response_model=Page[TripOut], responses=_NOT_FOUND)
def list_trips(
    principal: Fleet,
    conn: Conn,
    vehicle_id: VehicleId,
    since: UtcTime | None = None,
    until: UtcTime | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[TripOut]:
    """A vehicle's trips, newest first, optionally within [since, until); positions per the key's scope."""
    before: tuple[datetime, str] | None = None
    if cursor:
        at, trip_id = decode_cursor(cursor, "trips", (str, str))
        before = (_time(at), trip_id)
    _require_vehicle(conn, vehicle_id)
    rows = conn.execute(
        f"SELECT {_TRIP_COLUMNS} FROM trips WHERE vehicle_id = %(v)s"
        " AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR started_at < %(until)s)"
        " AND (%(b_at)s::timestamptz IS NULL OR (started_at, trip_id) < (%(b_at)s, %(b_id)s::text))"
        " ORDER BY started_at DESC, trip_id DESC LIMIT %(limit)s",
        {
            "v": vehicle_id, "since": since, "until": until, "limit": limit + 1,
            "b_at": before[0] if before else None, "b_id": before[1] if before else None,
        },
    ).fetchall()  # fmt: skip
    rows, next_cursor = paginate(
        rows, limit, lambda r: encode_cursor("trips", _iso(r["started_at"]), r["trip_id"])
    )
    items = [TripOut.model_validate(coarse_row(r, _TRIP_POSITION, principal)) for r in rows]
    _audit_precise(conn, principal, vehicle_id, "trips.read", len(items))
    return Page(items=items, next_cursor=next_cursor)


@router.get(
    "/v1/vehicles/{vehicle_id}/trips/{trip_id}/events", response_model=Page[EventOut], responses=_NOT_FOUND
)
def list_trip_events(
    principal: Fleet,
    conn: Conn,
    vehicle_id: VehicleId,
    trip_id: TripId,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[EventOut]:
    """The driving events of one trip, in time order; positions per the key's scope."""
    after: tuple[datetime, int, int] | None = None
    if cursor:
        at, seq, idx = decode_cursor(cursor, "events", (str, int, int))
        after = (_time(at), seq, idx)
    _require_vehicle(conn, vehicle_id)
    rows = conn.execute(
        "SELECT trip_id, kind, started_at, ended_at, extract(epoch FROM ended_at - started_at) AS duration_s,"
        " peak, peak_unit, lat, lon, seq, idx FROM driving_events"
        " WHERE vehicle_id = %(v)s AND trip_id = %(t)s"
        " AND (%(a_at)s::timestamptz IS NULL OR (started_at, seq, idx) > (%(a_at)s, %(a_seq)s::bigint,"
        " %(a_idx)s::int)) ORDER BY started_at, seq, idx LIMIT %(limit)s",
        {
            "v": vehicle_id, "t": trip_id, "limit": limit + 1, "a_at": after and after[0],
            "a_seq": after and after[1], "a_idx": after and after[2],
        },
    ).fetchall()  # fmt: skip
    rows, next_cursor = paginate(
        rows, limit, lambda r: encode_cursor("events", _iso(r["started_at"]), r["seq"], r["idx"])
    )
    items = [EventOut.model_validate(coarse_row(r, ("lat", "lon"), principal)) for r in rows]
    _audit_precise(conn, principal, vehicle_id, "events.read", len(items))
    return Page(items=items, next_cursor=next_cursor)


@router.get("/v1/vehicles/{vehicle_id}/latest", response_model=LatestOut, responses=_NOT_FOUND)
def latest_values(principal: Fleet, conn: Conn, vehicle_id: VehicleId) -> LatestOut:
    """The newest value of each signal the vehicle has sent (404 when it has sent no telemetry); the position
    per the key's scope."""
    _require_vehicle(conn, vehicle_id)
    row = conn.execute("SELECT * FROM telemetry_latest WHERE vehicle_id = %s", (vehicle_id,)).fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"vehicle {vehicle_id!r} has sent no telemetry yet")
    signals = {signal: row[column] for signal, (column, _kind) in COLUMNS.items() if row[column] is not None}
    signals.update(row["extra"] or {})  # type: ignore[call-overload]
    if not fine_location(principal):
        signals = {
            name: coarse(value) if name in (vss.LATITUDE, vss.LONGITUDE) else value  # type: ignore[arg-type]
            for name, value in signals.items()
            if name in (vss.LATITUDE, vss.LONGITUDE) or not name.startswith(LOCATION_PREFIX)
        }
    _audit_precise(conn, principal, vehicle_id, "latest.read", 1)
    return LatestOut(vehicle_id=vehicle_id, time=row["time"], signals=signals)
