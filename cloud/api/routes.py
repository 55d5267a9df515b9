"""Routes: health, vehicles, trips, events and latest values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request

from cloud.db.telemetry import COLUMNS
from edge_agent.protocol import VEHICLE_ID_RE

from .deps import Conn
from .schemas import EventOut, Health, LatestOut, TripOut, VehicleOut

router = APIRouter()
_NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"description": "no such vehicle (or no telemetry yet)"}
}

#: a vehicle id as the contract allows it; nothing else can be stored, so it is refused (422), not looked up
VehicleId = Annotated[str, Path(pattern=VEHICLE_ID_RE.pattern)]
TripId = Annotated[str, Path(min_length=1, max_length=64)]

_TRIP_COLUMNS = (
    "trip_id, started_at, ended_at, distance_km, duration_s, moving_s, idle_s, max_speed_kmh, avg_speed_kmh,"
    " night_share, event_counts, start_lat, start_lon, end_lat, end_lon, odometer_km, fuel_used_pct,"
    " soc_used_pct, fuel_used_l, energy_used_kwh, safety_score, eco_score, feature_usage, dtcs,"
    " driving_style, driving_style_probabilities"
)


@router.get("/healthz", response_model=Health)
def health(request: Request) -> Health:
    """Liveness; 503 when the database does not answer."""
    try:
        with request.app.state.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        raise HTTPException(status_code=503, detail=f"database unavailable: {exc}") from exc
    return Health(status="ok", database="ok")


def _require_vehicle(conn: Conn, vehicle_id: str) -> None:
    if conn.execute("SELECT 1 FROM vehicles WHERE vehicle_id = %s", (vehicle_id,)).fetchone() is None:
        raise HTTPException(status_code=404, detail=f"vehicle {vehicle_id!r} not found")


@router.get("/v1/vehicles", response_model=list[VehicleOut])
def list_vehicles(
    conn: Conn,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(description="page: vehicle ids after this one")] = None,
) -> list[VehicleOut]:
    """Vehicles the cloud has heard from, by id."""
    rows = conn.execute(
        "SELECT vehicle_id, first_seen, last_seen, status, agent_version FROM vehicles"
        " WHERE %(after)s::text IS NULL OR vehicle_id > %(after)s ORDER BY vehicle_id LIMIT %(limit)s",
        {"after": after, "limit": limit},
    ).fetchall()
    return [VehicleOut.model_validate(r) for r in rows]


@router.get("/v1/vehicles/{vehicle_id}/trips", response_model=list[TripOut], responses=_NOT_FOUND)
def list_trips(
    conn: Conn,
    vehicle_id: VehicleId,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TripOut]:
    """A vehicle's trips, newest first, optionally within [since, until)."""
    # without an offset the database would read the time in its own session time zone, whatever that is
    if (since is not None and since.tzinfo is None) or (until is not None and until.tzinfo is None):
        raise HTTPException(status_code=422, detail="give since and until with a UTC offset")
    _require_vehicle(conn, vehicle_id)
    rows = conn.execute(
        f"SELECT {_TRIP_COLUMNS} FROM trips WHERE vehicle_id = %(v)s"
        " AND (%(since)s::timestamptz IS NULL OR started_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR started_at < %(until)s)"
        " ORDER BY started_at DESC LIMIT %(limit)s",
        {"v": vehicle_id, "since": since, "until": until, "limit": limit},
    ).fetchall()
    return [TripOut.model_validate(r) for r in rows]


@router.get(
    "/v1/vehicles/{vehicle_id}/trips/{trip_id}/events", response_model=list[EventOut], responses=_NOT_FOUND
)
def list_trip_events(conn: Conn, vehicle_id: VehicleId, trip_id: TripId) -> list[EventOut]:
    """The driving events of one trip, in time order."""
    _require_vehicle(conn, vehicle_id)
    rows = conn.execute(
        "SELECT trip_id, kind, started_at, ended_at, extract(epoch FROM ended_at - started_at) AS duration_s,"
        " peak, peak_unit, lat, lon FROM driving_events"
        " WHERE vehicle_id = %s AND trip_id = %s ORDER BY started_at",
        (vehicle_id, trip_id),
    ).fetchall()
    return [EventOut.model_validate(r) for r in rows]


@router.get("/v1/vehicles/{vehicle_id}/latest", response_model=LatestOut, responses=_NOT_FOUND)
def latest_values(conn: Conn, vehicle_id: VehicleId) -> LatestOut:
    """The newest value of each signal the vehicle has sent (404 when it has sent no telemetry)."""
    _require_vehicle(conn, vehicle_id)
    row = conn.execute("SELECT * FROM telemetry_latest WHERE vehicle_id = %s", (vehicle_id,)).fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"vehicle {vehicle_id!r} has sent no telemetry yet")
    signals = {signal: row[column] for signal, (column, _kind) in COLUMNS.items() if row[column] is not None}
    signals.update(row["extra"] or {})  # type: ignore[call-overload]
    return LatestOut(vehicle_id=vehicle_id, time=row["time"], signals=signals)
