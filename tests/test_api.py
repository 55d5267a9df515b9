"""The HTTP API on the real database: routes, pages, the one error shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from fastapi.testclient import TestClient

from cloud.access.keys import create_key
from cloud.api.app import create_app
from cloud.api.pagination import encode_cursor
from cloud.config import CloudSettings
from cloud.ingest.store import store_batch
from cloud.privacy.audit import personal_subject
from edge_agent.protocol import GeoPoint, Message, TripSummaryV1, decode, encode, uplink_topic


def auth(database_url: str, *scopes: str, name: str = "test") -> dict[str, str]:
    """Headers with a new key of ``scopes`` (default: admin)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        key = create_key(conn, name=name, scopes=list(scopes or ("admin",)))
    return {"Authorization": f"Bearer {key.key}"}


def client(database_url: str, *scopes: str, **settings: object) -> TestClient:
    """A test client of a new app, sending a new key of ``scopes`` (default: admin) with every request."""
    app = create_app(database_url, settings=CloudSettings(**settings))  # type: ignore[arg-type]
    return TestClient(app, headers=auth(database_url, *scopes), raise_server_exceptions=False)


def _trip(vehicle_id: str, seq: int, start: datetime) -> Message:
    body = TripSummaryV1(
        trip_id=f"T{seq}", started_at=start, ended_at=start + timedelta(minutes=10), distance_km=5.0,
        duration_s=600, moving_s=550, idle_s=50, max_speed_kmh=60, avg_speed_kmh=30, night_share=0,
        samples=6000, start_location=GeoPoint(lat=52.520008, lon=13.404954),
    )  # fmt: skip
    return decode(uplink_topic(vehicle_id, "trip"), encode(vehicle_id, seq, body))


def test_health_needs_no_key(database_url: str) -> None:
    with TestClient(create_app(database_url)) as api:
        assert api.get("/healthz").json() == {"status": "ok", "database": "ok"}


def test_unknown_vehicle_is_404_in_the_error_shape(database_url: str) -> None:
    with client(database_url) as api:
        response = api.get("/v1/vehicles/nobody-here/trips")
        assert response.status_code == 404
        body = response.json()
        assert body == {"detail": "vehicle 'nobody-here' not found", "code": "not_found", "errors": []}


def test_every_error_has_the_one_shape(database_url: str) -> None:
    with client(database_url) as api:
        answers = [
            api.get("/v1/vehicles", params={"limit": 0}),  # FastAPI's own 422
            api.get("/v1/vehicles/x/trips", params={"since": "2026-01-01T00:00:00"}),  # the route's 422
            api.get("/v1/vehicles", params={"cursor": "not-a-cursor"}),
            api.get("/v1/nothing-here"),  # Starlette's 404
            api.post("/v1/vehicles"),  # 405
            api.get("/v1/vehicles", headers={"Authorization": "Bearer nope"}),  # 401
        ]
    for response in answers:
        assert 400 <= response.status_code < 500, response.text
        body = response.json()
        assert set(body) == {"detail", "code", "errors"}, body
        assert isinstance(body["detail"], str) and isinstance(body["code"], str)
    limit = answers[0].json()
    assert limit["code"] == "invalid_request" and limit["errors"][0]["loc"] == ["query", "limit"]
    assert answers[2].json()["code"] == "invalid_cursor"


def test_trips_newest_first_with_window_and_pages(
    database_url: str, db: psycopg.Connection, vehicle_prefix: str
) -> None:
    v = vehicle_prefix + "api"
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    store_batch(db, [_trip(v, i, t0 + timedelta(hours=i)) for i in range(1, 6)])
    with client(database_url, "fleet:read") as api:
        first = api.get(f"/v1/vehicles/{v}/trips").json()
        assert [t["trip_id"] for t in first["items"]] == ["T5", "T4", "T3", "T2", "T1"]
        assert first["next_cursor"] is None
        window = api.get(
            f"/v1/vehicles/{v}/trips",
            params={
                "since": (t0 + timedelta(hours=2)).isoformat(),
                "until": (t0 + timedelta(hours=4)).isoformat(),
            },
        ).json()
        assert [t["trip_id"] for t in window["items"]] == ["T3", "T2"]
        seen, cursor = [], None
        for _ in range(5):
            page = api.get(f"/v1/vehicles/{v}/trips", params={"limit": 2, "cursor": cursor}).json()
            seen.append([t["trip_id"] for t in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [["T5", "T4"], ["T3", "T2"], ["T1"]]
        assert api.get(f"/v1/vehicles/{v}/trips", params={"limit": 0}).status_code == 422
        # a cursor of another list is refused, not misread
        wrong = api.get(f"/v1/vehicles/{v}/trips", params={"cursor": encode_cursor("vehicles", v)})
        assert wrong.status_code == 422 and wrong.json()["code"] == "invalid_cursor"


def test_vehicles_page_through_all(database_url: str, db: psycopg.Connection, vehicle_prefix: str) -> None:
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    mine = [vehicle_prefix + f"p{i}" for i in range(5)]
    store_batch(db, [_trip(v, 1, t0) for v in mine])
    with client(database_url, "fleet:read") as api:
        ids, cursor = [], None
        while True:
            page = api.get("/v1/vehicles", params={"limit": 3, "cursor": cursor}).json()
            ids += [x["vehicle_id"] for x in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert ids == sorted(set(ids)) and set(mine) <= set(ids)


def test_positions_are_coarse_unless_admin(
    database_url: str, db: psycopg.Connection, vehicle_prefix: str
) -> None:
    from edge_agent.protocol import TelemetryV1

    v = vehicle_prefix + "where"
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    body = TelemetryV1(
        t0=t0,
        t_ms=[0],
        signals={
            "Vehicle.CurrentLocation.Latitude": [52.520008],
            "Vehicle.CurrentLocation.Longitude": [13.404954],
            "Vehicle.CurrentLocation.Altitude": [34.5],
            "Vehicle.Speed": [50.0],
        },
    )
    store_batch(db, [_trip(v, 1, t0), decode(uplink_topic(v, "telemetry"), encode(v, 2, body))])
    with client(database_url, "fleet:read") as fleet, client(database_url, "admin") as admin:
        coarse = fleet.get(f"/v1/vehicles/{v}/latest").json()["signals"]
        assert coarse == {
            "Vehicle.CurrentLocation.Latitude": 52.52,
            "Vehicle.CurrentLocation.Longitude": 13.4,
            "Vehicle.Speed": 50.0,
        }
        fine = admin.get(f"/v1/vehicles/{v}/latest").json()["signals"]
        assert fine["Vehicle.CurrentLocation.Latitude"] == 52.520008
        assert fine["Vehicle.CurrentLocation.Altitude"] == 34.5
        (trip,) = fleet.get(f"/v1/vehicles/{v}/trips").json()["items"]
        assert (trip["start_lat"], trip["start_lon"]) == (52.52, 13.4)
        (trip,) = admin.get(f"/v1/vehicles/{v}/trips").json()["items"]
        assert (trip["start_lat"], trip["start_lon"]) == (52.520008, 13.404954)
    # reading positions as stored is audited (the admin's two reads), coarse ones are not
    actions = db.execute(
        "SELECT action, outcome FROM audit_log WHERE subject = %s ORDER BY id",
        (personal_subject("vehicle", v),),
    ).fetchall()
    assert actions == [("latest.read", "ok"), ("trips.read", "ok")]


def test_latest_values_by_vss_name(database_url: str, db: psycopg.Connection, vehicle_prefix: str) -> None:
    from edge_agent.protocol import TelemetryV1

    v = vehicle_prefix + "latest"
    t0 = datetime(2026, 11, 2, 8, tzinfo=UTC)
    store_batch(db, [_trip(v, 1, t0)])
    with client(database_url, "fleet:read") as api:
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


def test_405_names_every_method_of_the_path(database_url: str) -> None:
    # Starlette's 405 named only the first route matching the path; this path has a GET and a POST route
    with client(database_url) as api:
        response = api.put("/v1/privacy/customers/c1/consent")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}
