"""Access to the API: every route but /healthz needs a key with a scope (the route walk and the scope matrix),
401/403/429 as promised, revocation within the cache time, least data per role, audited portrait reads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from cloud.access.keys import SCOPES, create_key, revoke_key
from cloud.api.app import create_app
from cloud.api.auth import RouteAccess, require, route_access
from cloud.config import CloudSettings
from cloud.privacy import consent
from cloud.privacy.audit import personal_subject, verify

WINDOW = {"since": "2033-01-01T00:00:00Z", "until": "2033-01-02T00:00:00Z"}


@dataclass(frozen=True)
class World:
    """What the matrix reads: a vehicle with a trip, an event and telemetry, a consenting customer, a segment,
    five cars of one model (an insight group just large enough) and one car of another (too small)."""

    vehicle: str
    customer: str
    refuser: str
    model: str
    lone_model: str


@pytest.fixture(scope="module")
def world(database_url: str) -> World:
    p = f"m{uuid.uuid4().hex[:8]}-"
    w = World(p + "car", p + "cust", p + "refuser", p + "model", p + "lone")
    with psycopg.connect(database_url, autocommit=True) as db:
        for customer in (w.customer, w.refuser):
            db.execute(
                "INSERT INTO customers (customer_id, birth_year, city, name, phone, email)"
                " VALUES (%s, 1980, 'Berlin', 'Erika Muster', '491701234567', 'erika@example.com')",
                (customer,),
            )
        consent.record(db, w.customer, "marketing", True, "app")
        consent.record(db, w.refuser, "marketing", False, "app")
        cars = [(w.vehicle, w.model), *((f"{p}m{i}", w.model) for i in range(4)), (p + "alone", w.lone_model)]
        for i, (vehicle, model) in enumerate(cars):
            db.execute(
                "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, model, powertrain, customer_id)"
                " VALUES (%s, now(), now(), %s, 'ev', %s)",
                (vehicle, model, w.customer),
            )
            db.execute(
                "INSERT INTO trips (vehicle_id, trip_id, seq, started_at, ended_at, distance_km, duration_s,"
                " moving_s, idle_s, max_speed_kmh, avg_speed_kmh, night_share, samples, start_lat,"
                " start_lon) VALUES (%s, 'T1', 1, '2033-01-01T08:00Z', '2033-01-01T08:10Z', 5, 600, 550,"
                " 50, 60, 30, 0, 6000, 52.520008, 13.404954)",
                (vehicle,),
            )
            # one fault code on a single car of the large group: fewer cars than the minimum, left out
            if i == 0:
                db.execute(
                    "INSERT INTO dtc_reports (vehicle_id, seq, idx, code, first_seen)"
                    " VALUES (%s, 3, 0, 'P0420', '2033-01-01T08:05Z')",
                    (vehicle,),
                )
        db.execute(
            "INSERT INTO driving_events (vehicle_id, seq, idx, trip_id, kind, started_at, ended_at, peak,"
            " peak_unit, lat, lon) VALUES (%s, 2, 0, 'T1', 'harsh_brake', '2033-01-01T08:01Z',"
            " '2033-01-01T08:01:02Z', 4.2, 'm/s2', 52.520008, 13.404954)",
            (w.vehicle,),
        )
        db.execute(
            "INSERT INTO telemetry_latest (time, vehicle_id, speed_kmh, lat, lon)"
            " VALUES ('2033-01-01T08:10Z', %s, 50, 52.520008, 13.404954)",
            (w.vehicle,),
        )
        db.execute(
            "INSERT INTO segments (name, expression, size, computed_at) VALUES (%s, '{}', 1, now())"
            " ON CONFLICT DO NOTHING",
            (p + "segment",),
        )
    return w


@dataclass(frozen=True)
class Sample:
    """A request a route answers with ``status`` once the key has its scope (a 404 from a missing row
    shows as well as a 200 that the key got past the scope check: its code is not insufficient_scope)."""

    target: str
    body: Any = None
    status: int = 200
    #: what an admin key gets, when not ``status``: a dealer route needs a key bound to a dealer, and an admin
    #: key is bound to none
    admin_status: int | None = None


def _campaign_body() -> dict[str, Any]:
    return {
        "campaign_id": "matrix",
        "name": "matrix",
        "audience": {"segment": "no such segment"},
        "arms": [{"name": "a", "content": {"item": "M1"}}],
        "starts_at": "2030-01-01T00:00:00Z",
        "ends_at": "2030-02-01T00:00:00Z",
    }


def samples(w: World) -> dict[tuple[str, str], Sample]:
    """(method, route path) -> a sample request. Every route must be here: the matrix fails on a route it
    has no sample for."""
    consent_body = {"scope": "marketing", "granted": True, "source": "app"}
    return {
        ("GET", "/v1/vehicles"): Sample("/v1/vehicles"),
        ("GET", "/v1/vehicles/{vehicle_id}/trips"): Sample(f"/v1/vehicles/{w.vehicle}/trips"),
        ("GET", "/v1/vehicles/{vehicle_id}/trips/{trip_id}/events"): Sample(
            f"/v1/vehicles/{w.vehicle}/trips/T1/events"
        ),
        ("GET", "/v1/vehicles/{vehicle_id}/latest"): Sample(f"/v1/vehicles/{w.vehicle}/latest"),
        ("GET", "/v1/customers/{customer_id}/portrait"): Sample(f"/v1/customers/{w.customer}/portrait"),
        ("GET", "/v1/segments"): Sample("/v1/segments"),
        ("GET", "/v1/insights"): Sample(f"/v1/insights?since={WINDOW['since']}&until={WINDOW['until']}"),
        ("POST", "/v1/customers/{customer_id}/consent"): Sample(
            f"/v1/customers/{w.customer}/consent", consent_body, 201
        ),
        ("GET", "/v1/privacy/customers/{customer_id}/export"): Sample(
            f"/v1/privacy/customers/{w.customer}/export"
        ),
        ("GET", "/v1/privacy/customers/{customer_id}/consent"): Sample(
            f"/v1/privacy/customers/{w.customer}/consent"
        ),
        ("POST", "/v1/privacy/customers/{customer_id}/consent"): Sample(
            f"/v1/privacy/customers/{w.customer}/consent", consent_body, 201
        ),
        # an erasure is requested of a customer nobody has (404 past the scope check), and confirmed for a
        # request that does not exist: the matrix must not erase the customer the other routes read
        ("POST", "/v1/privacy/customers/{customer_id}/erasure"): Sample(
            "/v1/privacy/customers/nobody-here/erasure", None, 404
        ),
        ("POST", "/v1/privacy/erasures/{request_id}/confirm"): Sample(
            "/v1/privacy/erasures/999999999/confirm", {"token": "x"}, 404
        ),
        ("POST", "/v1/catalogue"): Sample(
            "/v1/catalogue", [{"item_id": "M1", "kind": "offer", "title": "T"}]
        ),
        ("GET", "/v1/catalogue"): Sample("/v1/catalogue"),
        # a campaign refused whole (no such segment): past the scope check, nothing created
        ("POST", "/v1/campaigns"): Sample("/v1/campaigns", _campaign_body(), 422),
        ("GET", "/v1/campaigns"): Sample("/v1/campaigns"),
        ("GET", "/v1/campaigns/{campaign_id}/preview"): Sample("/v1/campaigns/nothing/preview", None, 404),
        ("POST", "/v1/campaigns/{campaign_id}/launch"): Sample("/v1/campaigns/nothing/launch", None, 404),
        ("POST", "/v1/campaigns/{campaign_id}/pause"): Sample("/v1/campaigns/nothing/pause", None, 404),
        ("GET", "/v1/campaigns/{campaign_id}/results"): Sample("/v1/campaigns/nothing/results", None, 404),
        ("GET", "/v1/campaigns/{campaign_id}/decisions"): Sample(
            "/v1/campaigns/nothing/decisions", None, 404
        ),
        ("GET", "/v1/customers/{customer_id}/recommendations"): Sample(
            "/v1/customers/nobody-here/recommendations", None, 404
        ),
        ("GET", "/v1/service/reminders"): Sample(f"/v1/service/reminders?vehicle_id={w.vehicle}&status=sent"),
        ("GET", "/v1/customers/{customer_id}/service"): Sample(f"/v1/customers/{w.customer}/service"),
        ("GET", "/v1/churn"): Sample("/v1/churn?tier=high"),
        # the matrix's customer has no churn score: 404 past the scope check
        ("GET", "/v1/customers/{customer_id}/churn"): Sample(f"/v1/customers/{w.customer}/churn", None, 404),
        ("GET", "/v1/upgrade"): Sample("/v1/upgrade?min_probability=0.5"),
        # nor an upgrade score: 404 past the scope check
        ("GET", "/v1/customers/{customer_id}/upgrade"): Sample(
            f"/v1/customers/{w.customer}/upgrade", None, 404
        ),
        ("GET", "/v1/leads"): Sample("/v1/leads"),
        ("GET", "/v1/leads/stats"): Sample("/v1/leads/stats?since=2026-01-01&until=2026-02-01"),
        ("GET", "/v1/dealers/kpis"): Sample("/v1/dealers/kpis?month=2026-01"),
        ("GET", "/v1/dealer/leads"): Sample("/v1/dealer/leads", admin_status=403),
        # no such lead of this dealer: 404 past the scope check
        ("POST", "/v1/dealer/leads/{lead_id}/status"): Sample(
            "/v1/dealer/leads/999999999/status", {"status": "contacted"}, 404, admin_status=403
        ),
        ("GET", "/v1/dealer/kpis"): Sample("/v1/dealer/kpis?month=2026-01", admin_status=403),
        ("GET", "/v1/dealer/leads.adf"): Sample("/v1/dealer/leads.adf", admin_status=403),
        ("GET", "/v1/forecast"): Sample("/v1/forecast?by=total&horizon=2"),
    }


def _routes(app: FastAPI) -> Iterator[tuple[str, RouteAccess]]:
    for route in route_access(app):
        for method in sorted(route.methods):
            yield method, route


def test_every_route_but_healthz_declares_a_scope(database_url: str) -> None:
    app = create_app(database_url)
    routes = list(_routes(app))
    assert len(routes) >= 8
    for method, route in routes:
        if (method, route.path) == ("GET", "/healthz"):
            assert route.scope is None
        else:
            assert route.scope in SCOPES, f"{method} {route.path} declares no scope: add require(...)"


def test_the_only_routes_outside_the_api_are_the_docs(database_url: str) -> None:
    # a plain Starlette route (app.add_route, a mount) would bypass require(): none but the docs may exist
    from fastapi.routing import APIRoute, iter_route_contexts

    app = create_app(database_url)
    plain = {
        getattr(c, "path", None)
        for c in iter_route_contexts(app.routes)
        if not isinstance(c.original_route, APIRoute)
    }
    assert plain == {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    with TestClient(app) as api:
        assert api.get("/openapi.json").status_code == 200  # open, like /healthz


def test_the_route_walk_catches_an_open_route(database_url: str) -> None:
    # the walk above is only worth something if it notices a route someone forgot to protect
    app = create_app(database_url)
    extra = APIRouter()

    @extra.get("/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    @extra.get("/v1/remembered", dependencies=[require("rd:read")])
    def remembered() -> dict[str, str]:
        return {}

    app.include_router(extra)
    access = {r.path: r.scope for _m, r in _routes(app)}
    assert [path for path, scope in access.items() if scope is None] == ["/healthz", "/v1/forgotten"]
    assert access["/v1/remembered"] == "rd:read"


def test_openapi_declares_the_scheme_scopes_and_error_bodies(database_url: str) -> None:
    schema = create_app(database_url).openapi()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert set(schema["components"]["schemas"]["ErrorOut"]["required"]) == {"detail", "code"}
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            if path == "/healthz":
                assert operation["security"] == [], where
            else:
                scope = operation["x-required-scope"]
                assert operation["security"] == [{"bearerAuth": [scope]}], where
                assert f"`{scope}`" in operation["description"], where
                assert {"401", "403", "429", "503"} <= set(operation["responses"]), where
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorOut", (where, status)


@pytest.mark.parametrize("scope", SCOPES)
def test_scope_matrix(database_url: str, world: World, scope: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        dealer = None
        if scope == "dealer":  # a dealer key is bound to a dealer
            dealer = f"matrix-{uuid.uuid4().hex[:8]}"
            conn.execute("INSERT INTO dealers (dealer_id, name) VALUES (%s, 'matrix')", (dealer,))
        key = create_key(conn, name=f"matrix {scope}", scopes=[scope], dealer_id=dealer).key
    # with a ledger key, so that an erasure confirmation gets past its configuration check
    app = create_app(database_url, settings=CloudSettings(privacy_ledger_key="k" * 32))
    targets = samples(world)
    with TestClient(app, raise_server_exceptions=False) as api:
        for method, route in _routes(app):
            if route.path == "/healthz":
                continue
            sample = targets.get((method, route.path))
            assert sample is not None, f"{method} {route.path} has no sample in the scope matrix: add one"
            response = api.request(
                method, sample.target, json=sample.body, headers={"Authorization": f"Bearer {key}"}
            )
            expected = sample.status if scope in (route.scope, "admin") else 403
            if scope == "admin" and sample.admin_status is not None:
                expected = sample.admin_status
            assert response.status_code == expected, (scope, method, sample.target, response.text)
            if expected == 403:
                assert response.json()["code"] == "insufficient_scope", response.text
            elif expected >= 400:  # refused for what it asked, after the scope check let it through
                assert response.json()["code"] in ("not_found", "invalid_campaign"), response.text
            anonymous = api.request(method, sample.target, json=sample.body)
            assert anonymous.status_code == 401, (method, sample.target)
            assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")


def _app(database_url: str, **settings: Any) -> FastAPI:
    return create_app(database_url, settings=CloudSettings(**settings))


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer ds_00000000_" + "A" * 43,  # well formed, unknown
        "Bearer ds_zzzzzzzz_" + "A" * 43,
        "Bearer " + "x" * 8000,
        "bearer ds_00000000_" + "A" * 42,
        "Bearer ds_00000000_" + "A" * 43 + " extra",
    ],
    ids=lambda h: h[:30] or "empty",
)
def test_bad_credentials_are_401(database_url: str, header: str) -> None:
    with TestClient(_app(database_url), raise_server_exceptions=False) as api:
        response = api.get("/v1/vehicles", headers={"Authorization": header})
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="drivesight"')
    assert response.json()["code"] == "unauthorized"


def test_expired_and_revoked_keys_are_401(database_url: str, db: psycopg.Connection) -> None:
    expired = create_key(db, name="expired", scopes=["admin"], expires_days=1)
    db.execute("UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE key_id = %s", (expired.id,))
    revoked = create_key(db, name="revoked", scopes=["admin"])
    revoke_key(db, revoked.id)
    with TestClient(_app(database_url), raise_server_exceptions=False) as api:
        for key, why in ((expired, "expired"), (revoked, "revoked")):
            response = api.get("/v1/vehicles", headers={"Authorization": f"Bearer {key.key}"})
            assert response.status_code == 401 and why in response.json()["detail"]
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_revoked_key_stops_working_within_the_cache_time(database_url: str, db: psycopg.Connection) -> None:
    key = create_key(db, name="soon revoked", scopes=["fleet:read"])
    headers = {"Authorization": f"Bearer {key.key}"}
    with TestClient(_app(database_url, api_key_cache_s=1.0), raise_server_exceptions=False) as api:
        assert api.get("/v1/vehicles", headers=headers).status_code == 200  # now cached
        revoke_key(db, key.id)
        revoked_at = time.monotonic()
        while api.get("/v1/vehicles", headers=headers).status_code == 200:
            assert time.monotonic() - revoked_at < 1.5, "still accepted after the cache time"
            time.sleep(0.05)
        assert time.monotonic() - revoked_at <= 1.1 + 0.2


def test_requests_that_miss_the_cache_together_share_one_lookup(
    database_url: str, db: psycopg.Connection
) -> None:
    import asyncio

    import httpx

    key = create_key(db, name="crowd", scopes=["fleet:read"])
    app = _app(database_url)

    async def crowd() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key.key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as client:
            answers = await asyncio.gather(*(client.get("/v1/vehicles?limit=1") for _ in range(20)))
        return [a.status_code for a in answers]

    with TestClient(app):  # the lifespan opens the pools
        assert asyncio.run(crowd()) == [200] * 20
    assert app.state.access.lookups == 1


def test_a_key_that_cannot_be_checked_is_503(database_url: str, db: psycopg.Connection) -> None:
    key = create_key(db, name="unlucky", scopes=["fleet:read"])
    app = _app(database_url)
    with TestClient(app, raise_server_exceptions=False) as api:
        app.state.access.pool.close()  # as if the database were gone
        response = api.get("/v1/vehicles", headers={"Authorization": f"Bearer {key.key}"})
    assert response.status_code == 503 and response.json()["code"] == "unavailable"


def test_last_used_is_recorded(database_url: str, db: psycopg.Connection) -> None:
    key = create_key(db, name="used", scopes=["fleet:read"])
    with TestClient(_app(database_url), raise_server_exceptions=False) as api:
        for _ in range(3):
            api.get("/v1/vehicles", headers={"Authorization": f"Bearer {key.key}"})
    row = db.execute("SELECT last_used_at FROM api_keys WHERE key_id = %s", (key.id,)).fetchone()
    assert row is not None and row[0] is not None


def test_too_many_requests_is_429_with_retry_after(database_url: str, db: psycopg.Connection) -> None:
    busy = create_key(db, name="busy", scopes=["fleet:read"])
    calm = create_key(db, name="calm", scopes=["fleet:read"])
    app = _app(database_url, api_rate_per_s=0.5, api_rate_burst=3)
    with TestClient(app, raise_server_exceptions=False) as api:
        codes = [
            api.get("/v1/vehicles", headers={"Authorization": f"Bearer {busy.key}"}).status_code
            for _ in range(5)
        ]
        assert codes == [200, 200, 200, 429, 429]
        refused = api.get("/v1/vehicles", headers={"Authorization": f"Bearer {busy.key}"})
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 2
        # the limit is per key
        assert api.get("/v1/vehicles", headers={"Authorization": f"Bearer {calm.key}"}).status_code == 200


def test_portraits_need_marketing_consent_and_every_read_is_audited(
    database_url: str, db: psycopg.Connection, world: World
) -> None:
    key = create_key(db, name="marketing", scopes=["marketing:read"])
    headers = {"Authorization": f"Bearer {key.key}"}
    with TestClient(_app(database_url), raise_server_exceptions=False) as api:
        shown = api.get(f"/v1/customers/{world.customer}/portrait", headers=headers)
        assert shown.status_code == 200
        customer = shown.json()["customer"]
        assert customer["city"] == "Berlin"
        assert not {"name", "phone", "email"} & set(customer)  # contact data is never in a portrait
        refused = api.get(f"/v1/customers/{world.refuser}/portrait", headers=headers)
        unknown = api.get("/v1/customers/nobody-at-all/portrait", headers=headers)
        assert refused.status_code == unknown.status_code == 404
        assert refused.json()["code"] == unknown.json()["code"] == "not_found"
        # consent withdrawn now: the next read is refused
        consent.record(db, world.customer, "marketing", False, "app")
        try:
            assert api.get(f"/v1/customers/{world.customer}/portrait", headers=headers).status_code == 404
        finally:
            consent.record(db, world.customer, "marketing", True, "app")
    rows = db.execute(
        "SELECT action, subject, outcome FROM audit_log WHERE key_id = %s ORDER BY id", (key.id,)
    ).fetchall()
    assert rows == [
        ("portrait.read", personal_subject("customer", world.customer), "ok"),
        ("portrait.read", personal_subject("customer", world.refuser), "no_consent"),
        ("portrait.read", personal_subject("customer", "nobody-at-all"), "not_found"),
        ("portrait.read", personal_subject("customer", world.customer), "no_consent"),
    ]
    assert verify(db).ok


def test_rd_sees_large_groups_only_and_nothing_personal(database_url: str, world: World) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        key = create_key(conn, name="r&d", scopes=["rd:read"]).key
    with TestClient(_app(database_url), raise_server_exceptions=False) as api:
        response = api.get("/v1/insights", params=WINDOW, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    body = response.json()
    models = [g["model"] for g in body["items"]]
    assert world.model in models and world.lone_model not in models
    assert body["suppressed_groups"] >= 1 and body["min_group_size"] == 5
    (group,) = [g for g in body["items"] if g["model"] == world.model]
    assert group["vehicles"] == 5 and group["top_codes"] == []  # P0420 was on one car only
    allowed = {"model", "vehicles", "trips", "distance_km", "small_sample", "harsh_per_100km", "efficiency",
               "feature_usage", "dtc_vehicles_per_1000", "top_codes"}  # fmt: skip
    for g in body["items"]:
        assert set(g) <= allowed, set(g) - allowed
    text = response.text
    for personal in (world.customer, world.vehicle, "Erika", "491701234567", "erika@example.com", "52.52"):
        assert personal not in text
