"""The HTTP API on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.ingest.store import store_batch
from edge_agent.protocol import TripSummaryV1, decode, encode, uplink_topic


def _trip(vehicle_id: str, seq: int, start: datetime) -> None:
    body = TripSummaryV1(
        trip_id=f"T{seq}", started_at=start, ended_at=start + timedelta(minutes=10), distance_km=5.0,
        duration_s=600, moving_s=550, idle_s=50, max_speed_kmh=60, avg_speed_kmh=30, night_share=0,
        samples=6000,
    )  # fmt: skip
    return decode(uplink_topic(vehicle_id, "trip"), encode(vehicle_id, seq, body))  # type: ignore[return-value]


def test_health(database_url: str) -> None:
    with TestClient(create_app(database_url)) as api:
        assert api.get("/healthz").json() == {"status": "ok", "database": "ok"}


def test_unknown_vehicle_is_404(database_url: str) -> None:
    with TestClient(create_app(database_url)) as api:
        response = api.get("/v1/vehicles/nobody-here/trips")
        assert response.status_code == 404
        assert "nobody-here" in response.json()["detail"]


def test_trips_newest_first_with_window_and_limit(
    database_url: str, db: psycopg.Connection, vehicle_prefix: str
) -> None:
    v = vehicle_prefix + "api"
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    store_batch(db, [_trip(v, i, t0 + timedelta(hours=i)) for i in range(1, 6)])  # type: ignore[misc]
    with TestClient(create_app(database_url)) as api:
        all_trips = api.get(f"/v1/vehicles/{v}/trips").json()
        assert [t["trip_id"] for t in all_trips] == ["T5", "T4", "T3", "T2", "T1"]
        window = api.get(
            f"/v1/vehicles/{v}/trips",
            params={
                "since": (t0 + timedelta(hours=2)).isoformat(),
                "until": (t0 + timedelta(hours=4)).isoformat(),
            },
        ).json()
        assert [t["trip_id"] for t in window] == ["T3", "T2"]
        assert len(api.get(f"/v1/vehicles/{v}/trips", params={"limit": 2}).json()) == 2
        assert api.get(f"/v1/vehicles/{v}/trips", params={"limit": 0}).status_code == 422
        vehicles = api.get("/v1/vehicles", params={"after": vehicle_prefix}).json()
        assert v in [x["vehicle_id"] for x in vehicles]


def test_latest_values_by_vss_name(database_url: str, db: psycopg.Connection, vehicle_prefix: str) -> None:
    from edge_agent.protocol import TelemetryV1

    v = vehicle_prefix + "latest"
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    store_batch(db, [_trip(v, 1, t0)])  # type: ignore[list-item]
    with TestClient(create_app(database_url)) as api:
        assert api.get(f"/v1/vehicles/{v}/latest").status_code == 404  # a known car without telemetry
        body = TelemetryV1(
            t0=t0,
            t_ms=[0, 1000],
            signals={"Vehicle.Speed": [50.0, 52.5], "Vehicle.Body.Horn.IsActive": [1.0, None]},
        )
        store_batch(db, [decode(uplink_topic(v, "telemetry"), encode(v, 2, body))])
        latest = api.get(f"/v1/vehicles/{v}/latest").json()
        assert latest == {
            "vehicle_id": v,
            "time": "2026-11-02T08:00:01Z",
            "signals": {"Vehicle.Speed": 52.5, "Vehicle.Body.Horn.IsActive": 1.0},
        }
        assert api.get("/v1/vehicles/nobody-here/latest").status_code == 404
