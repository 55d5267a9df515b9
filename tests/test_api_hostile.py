"""The API answers 4xx, never 500, for odd URLs, and serialises every stored float, NaN and Infinity too.

Odd URLs go to the ASGI app directly, byte for byte as a server hands them over: an HTTP client would refuse
a 100 KB URL or re-encode a NUL before the app ever saw it.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.api.deps import Conn
from cloud.api.pagination import encode_cursor
from cloud.privacy import consent
from tests.test_api import auth

HUGE = "a" * 100_000
WINDOW = "since=2026-01-01T00:00:00Z&until=2027-01-01T00:00:00Z"


def _raw_get(
    app: FastAPI, target: str, *, raw_path: bool = True, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, Any]:
    """GET ``target`` (path and query as sent on the wire) from a started app with its admin key (or
    ``headers``): status and JSON body."""
    path, _, query = target.partition("?")
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        # as uvicorn does: path percent-decoded (bad UTF-8 replaced), raw_path and query_string as received
        "path": unquote(path), "raw_path": path.encode("latin-1"), "query_string": query.encode("latin-1"),
        "root_path": "", "headers": [(b"host", b"testserver"), *(app.state.test_headers if headers is None
                                                                else headers)],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80), "state": {},
    }  # fmt: skip
    if not raw_path:
        del scope["raw_path"]
    sent: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
        elif message["type"] == "http.response.body":
            sent["body"] += message.get("body", b"")

    try:
        asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    except Exception:
        return 500, None  # what a server makes of an exception that escapes the app
    return sent["status"], json.loads(sent["body"]) if sent["body"] else None


@pytest.fixture
def app(database_url: str, db: psycopg.Connection) -> Iterator[FastAPI]:
    """A started app over the test run's database, with vehicle ``x`` and one trip of it."""
    db.execute(
        "INSERT INTO vehicles (vehicle_id, first_seen, last_seen) VALUES ('x', now(), now())"
        " ON CONFLICT DO NOTHING"
    )
    db.execute(
        "INSERT INTO trips (vehicle_id, trip_id, seq, started_at, ended_at, distance_km, duration_s,"
        " moving_s, idle_s, max_speed_kmh, avg_speed_kmh, night_share, samples) VALUES"
        " ('x', 'T1', 1, '2026-03-01T08:00Z', '2026-03-01T08:10Z', 5, 600, 550, 50, 60, 30, 0, 6000)"
        " ON CONFLICT DO NOTHING"
    )
    application = create_app(database_url)
    key = auth(database_url)["Authorization"].encode()
    application.state.test_headers = [(b"authorization", key)]
    with TestClient(application):  # runs the lifespan: the pool
        yield application


ODD_URLS = [
    # NUL, which PostgreSQL text cannot hold, in every kind of path parameter and in query values and keys
    "/v1/vehicles/a%00b/trips",
    "/v1/vehicles/a%00b/latest",
    "/v1/vehicles/x/trips/T%00/events",
    "/v1/customers/c%00/portrait",
    "/v1/vehicles?cursor=%00",
    "/v1/vehicles?cursor=a%00b",
    "/v1/vehicles?a%00=1",
    "/v1/vehicles?cursor=\x00",
    "/v1/vehicles/x/trips?since=2026-01-01T00:00:00%00Z",
    f"/v1/insights?{WINDOW}&by=model%00",
    "/%00",
    # percent-escapes that are not UTF-8
    "/v1/vehicles/%ff/trips",
    "/v1/customers/%ff/portrait",
    "/v1/vehicles?cursor=%ff",
    "/v1/vehicles/x/trips/%c3%28/events",
    # huge values
    f"/v1/vehicles/{HUGE}/trips",
    f"/v1/customers/{HUGE}/portrait",
    f"/v1/vehicles?cursor={HUGE}",
    f"/v1/vehicles?cursor={'a' * 600}",
    "/v1/vehicles?cursor=bm90IGpzb24",
    "/v1/vehicles?cursor=WyJ0cmlwcyIsIngiLCJ5Il0",
    "/v1/vehicles/x/trips?cursor=WyJ0cmlwcyIsIm5vdCBhIHRpbWUiLCJ5Il0",
    "/v1/vehicles/x/trips?cursor=WyJ0cmlwcyIsIjIwMjYtMDEtMDFUMDA6MDA6MDAiLCJ5Il0",
    f"/v1/insights?{WINDOW}&cursor=WyJpbnNpZ2h0cyIsLTFd",
    f"/v1/insights?{WINDOW}&by=",
    f"/v1/insights?{WINDOW}&by=model,",
    f"/v1/insights?{WINDOW}&by=vehicle_id",
    f"/v1/insights?{WINDOW}&by={HUGE}",
    f"/v1/vehicles?limit={10**30}",
    f"/v1/vehicles/x/trips?limit={10**30}",
    f"/v1/vehicles/x/trips?limit=-{10**30}",
    # path parameters the contract would never store
    f"/v1/vehicles/{'v' * 65}/latest",
    "/v1/vehicles/-x/trips",
    f"/v1/vehicles/x/trips/{'t' * 65}/events",
    f"/v1/customers/{'c' * 65}/portrait",
    # datetimes out of range, unparseable or without a UTC offset
    "/v1/vehicles/x/trips?since=99999-01-01",
    "/v1/vehicles/x/trips?until=99999-01-01T00:00:00Z",
    "/v1/vehicles/x/trips?since=-99999999999999",
    "/v1/vehicles/x/trips?since=1e400",
    "/v1/vehicles/x/trips?since=2026-01-01T00:00:00",
    "/v1/vehicles/x/trips?until=2026-01-01",
    "/v1/vehicles/x/trips?until=0.5",  # pydantic alone reads a number as seconds since 1970
    "/v1/insights?since=0&until=1700000000",
    "/v1/insights?since=2026-01-01&until=2027-01-01",
    "/v1/insights?since=99999-01-01T00:00:00Z&until=2027-01-01T00:00:00Z",
    f"/v1/insights?{WINDOW}&min_vehicles=0",
]


@pytest.mark.parametrize("target", ODD_URLS, ids=lambda t: t[:60])
def test_odd_url_is_4xx(app: FastAPI, target: str) -> None:
    status, body = _raw_get(app, target)
    assert 400 <= status < 500, (status, body)
    assert set(body) == {"detail", "code", "errors"} and isinstance(body["detail"], str), body


@pytest.mark.parametrize(
    "target",
    [
        "/v1/vehicles/x/trips?since=0001-01-01T00:00:00Z",
        "/v1/vehicles/x/trips?since=0001-01-01T00:00:00%2B14:00&until=9999-12-31T23:59:59-23:59",
        "/v1/insights?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z&min_vehicles=" + str(10**30),
    ],
    ids=lambda t: t[:60],
)
def test_extreme_but_valid_window_is_answered(app: FastAPI, target: str) -> None:
    # the first and last instants a datetime can say are a window like any other: all trips, not an error
    status, body = _raw_get(app, target)
    assert status == 200, body
    if target.startswith("/v1/vehicles/x/trips"):
        assert "T1" in [t["trip_id"] for t in body["items"]]


def test_guard_checks_a_path_without_raw_path(app: FastAPI) -> None:
    # raw_path is optional in ASGI; a server that leaves it out must not let a NUL through
    for target in ("/v1/vehicles/a%00/latest", "/v1/vehicles?cursor=%00", "/v1/vehicles/%ff/latest"):
        status, body = _raw_get(app, target, raw_path=False)
        assert 400 <= status < 500, (target, status, body)
    assert _raw_get(app, "/v1/vehicles/x/trips", raw_path=False)[0] == 200


def test_a_value_the_database_refuses_is_422(database_url: str) -> None:
    app = create_app(database_url)

    @app.get("/test/refused")
    def refused(conn: Conn) -> None:
        conn.execute("SELECT %s::text", ("a\x00b",))  # psycopg.errors.DataError, as any class-22 refusal

    with TestClient(app, raise_server_exceptions=False) as api:
        response = api.get("/test/refused")
    assert response.status_code == 422
    assert "NUL" in response.json()["detail"]


@pytest.fixture
def stored_non_finite(db: psycopg.Connection, vehicle_prefix: str) -> str:
    """A vehicle (with status, model, customer) whose trip, event, latest values, tags hold NaN/Infinity."""
    v = vehicle_prefix + "nan"
    db.execute("INSERT INTO customers (customer_id) VALUES (%s)", (v,))
    # four more cars of the model, so that its R&D insight group is large enough to be shown
    for vehicle in (v, *(f"{v}-{i}" for i in range(2, 6))):
        db.execute(
            "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, status, model, powertrain, customer_id)"
            " VALUES (%s, now(), now(), 'online', %s, 'ev', %s)",
            (vehicle, v + "-model", v),
        )
        db.execute(
            "INSERT INTO trips (vehicle_id, trip_id, seq, started_at, ended_at, distance_km, duration_s,"
            " moving_s, idle_s, max_speed_kmh, avg_speed_kmh, night_share, samples, start_lat, odometer_km,"
            " energy_used_kwh, safety_score, feature_usage, driving_style_probabilities, event_counts) VALUES"
            " (%s, 'T1', 1, '2031-05-01T08:00Z', '2031-05-01T08:10Z', 'NaN', 'Infinity', '-Infinity', 'NaN',"
            " 'Infinity', 'NaN', 'NaN', 10, 'NaN', 'Infinity', 'NaN', 'NaN',"
            ' \'{"Vehicle.Body.Horn.IsActive": {"count": 1}}\', \'{"calm": 1}\', \'{"harsh_brake": 2}\')',
            (vehicle,),
        )
    db.execute(
        "INSERT INTO driving_events (vehicle_id, seq, idx, trip_id, kind, started_at, ended_at, peak,"
        " peak_unit, lat, lon) VALUES (%s, 2, 0, 'T1', 'harsh_brake', '2031-05-01T08:01Z',"
        " '2031-05-01T08:01:02Z', 'NaN', 'm/s2', 'Infinity', '-Infinity')",
        (v,),
    )
    db.execute(
        "INSERT INTO telemetry_latest (time, vehicle_id, speed_kmh, soc_pct, odometer_km, lat)"
        " VALUES ('2031-05-01T08:10Z', %s, 'NaN', 50, 'Infinity', '-Infinity')",
        (v,),
    )
    db.execute(
        "INSERT INTO customer_tags (customer_id, tag, score, evidence, config_version)"
        " VALUES (%s, 'commuter', 'NaN', '{}', 1)",
        (v,),
    )
    db.execute(
        "INSERT INTO customer_preferences (customer_id, category, score) VALUES (%s, 'ev', 'NaN')", (v,)
    )
    consent.record(db, v, "marketing", True, "app")
    return v


def _is_null(value: object) -> bool:
    # json.loads reads the non-JSON NaN and Infinity as floats; only a real null is None
    return value is None


def test_non_finite_values_are_null(database_url: str, stored_non_finite: str) -> None:
    v = stored_non_finite
    with TestClient(
        create_app(database_url), raise_server_exceptions=False, headers=auth(database_url)
    ) as api:
        vehicles = api.get("/v1/vehicles", params={"cursor": encode_cursor("vehicles", v[:-1])})
        assert vehicles.status_code == 200, vehicles.text
        assert {"vehicle_id": v, "status": "online"}.items() <= vehicles.json()["items"][0].items()

        trips = api.get(f"/v1/vehicles/{v}/trips")
        assert trips.status_code == 200, trips.text
        (trip,) = trips.json()["items"]
        for key in ("distance_km", "duration_s", "moving_s", "idle_s", "max_speed_kmh", "avg_speed_kmh"):
            assert _is_null(trip[key]), key
        for key in ("night_share", "start_lat", "odometer_km", "energy_used_kwh", "safety_score"):
            assert _is_null(trip[key]), key
        assert trip["driving_style_probabilities"] == {"calm": 1.0}

        events = api.get(f"/v1/vehicles/{v}/trips/T1/events")
        assert events.status_code == 200, events.text
        assert [(e["peak"], e["lat"], e["lon"]) for e in events.json()["items"]] == [(None, None, None)]

        latest = api.get(f"/v1/vehicles/{v}/latest")
        assert latest.status_code == 200, latest.text
        assert latest.json()["signals"] == {
            "Vehicle.Speed": None,
            "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed": 50.0,
            "Vehicle.TraveledDistance": None,
            "Vehicle.CurrentLocation.Latitude": None,
        }

        portrait = api.get(f"/v1/customers/{v}/portrait")
        assert portrait.status_code == 200, portrait.text
        assert _is_null(portrait.json()["tags"][0]["score"])
        assert portrait.json()["preferences"] == {"ev": None}

        insights = api.get(
            "/v1/insights",
            params={"since": "2031-05-01T00:00:00Z", "until": "2031-05-02T00:00:00Z", "min_vehicles": 1},
        )
        assert insights.status_code == 200, insights.text
        (group,) = [g for g in insights.json()["items"] if g["model"] == v + "-model"]
        assert _is_null(group["distance_km"])
        assert _is_null(group["harsh_per_100km"]["rate"])
        assert group["harsh_per_100km"]["ci95"] == [None, None]
        assert group["harsh_per_100km"]["events"] == 10
        assert [group["efficiency"][p] for p in ("p10", "p50", "p90")] == [None, None, None]


def test_a_plain_response_encodes_non_finite_floats_as_null(database_url: str) -> None:
    # a route without a response model goes through the app's default response class, not pydantic
    app = create_app(database_url)

    @app.get("/test/plain", response_model=None)
    def plain() -> object:
        return {"nan": math.nan, "values": [math.inf, -math.inf, 1.5], "nested": {"x": (math.nan,)}}

    with TestClient(app, raise_server_exceptions=False) as api:
        response = api.get("/test/plain")
    assert response.status_code == 200
    assert response.json() == {"nan": None, "values": [None, None, 1.5], "nested": {"x": [None]}}


def test_every_route_documents_its_refusals() -> None:
    """OpenAPI names the 4xx answers of every route, and the 404 of the vehicle and customer routes."""
    schema = create_app("postgresql://unused").openapi()
    for path, methods in schema["paths"].items():
        for operation in methods.values():
            assert {"400", "414", "422"} <= set(operation["responses"]), path
            if "{vehicle_id}" in path or "{customer_id}" in path:
                assert "404" in operation["responses"], path


def test_an_unexpected_error_is_500_in_the_error_shape(database_url: str) -> None:
    app = create_app(database_url)

    @app.get("/test/broken")
    def broken() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as api:
        response = api.get("/test/broken")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error", "code": "internal_error", "errors": []}


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer ds_\x00",
        b"Bearer ds_0000000\x00_" + b"A" * 43,
        b"Bearer \xff\xfe",
        b"Bearer " + b"A" * 100_000,
    ],
    ids=["nul", "nul-in-prefix", "not-ascii", "huge"],
)
def test_odd_authorization_bytes_are_401(app: FastAPI, value: bytes) -> None:
    # as a server hands them over (an HTTP client would refuse to send most of these)
    status, body = _raw_get(app, "/v1/vehicles", headers=[(b"authorization", value)])
    assert status == 401, body
    assert body["code"] == "unauthorized"
