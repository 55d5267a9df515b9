"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.config import CloudSettings
from cloud.privacy.audit import AsyncAuditWriter, AuditWriter
from edge_agent.protocol.conventions import package_version

from . import errors
from .analytics_routes import router as analytics_router
from .auth import AUTH_REFUSALS, Access, install_openapi
from .churn_routes import router as churn_router
from .forecast_routes import router as forecast_router
from .guard import REFUSALS, RequestGuard
from .lead_routes import router as lead_router
from .privacy_routes import router as privacy_router
from .push_routes import router as push_router
from .responses import SafeJSONResponse
from .routes import health_router, router
from .service_routes import router as service_router
from .upgrade_routes import router as upgrade_router

DESCRIPTION = """\
Vehicles, trips and events for fleet teams, portraits and segments for marketing, aggregate insights for
product R&D. Every route but `/healthz` needs an API key (`drivesight cloud keys create`) sent as
`Authorization: Bearer <key>`, with the scope the route names. Every error answer has one body:
`{"detail": str, "code": str, "errors": [...]}`. Lists come a page at a time: `limit`, and `cursor` set to
the previous page's `next_cursor`.
"""


def create_app(database_url: str, *, pool_size: int = 8, settings: CloudSettings | None = None) -> FastAPI:
    """An app whose routes read from the database at ``database_url`` through a connection pool; API limits
    (rate per key, key cache, minimum group size) from ``settings`` (default: the environment)."""
    settings = settings or CloudSettings()
    access = Access(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ConnectionPool(database_url, min_size=1, max_size=pool_size, open=False)
        pool.open(wait=True, timeout=30)
        app.state.pool = pool
        # for async routes (deps.async_pool); autocommit: their reads are single statements, and a connection
        # comes back without a rollback round trip
        async_pool = AsyncConnectionPool(
            database_url, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False
        )
        await async_pool.open(wait=True, timeout=30)
        app.state.async_pool = async_pool
        access.open(database_url)
        audit = AuditWriter(database_url)
        audit.open()
        app.state.audit = audit  # for sync routes
        async_audit = AsyncAuditWriter(database_url)  # for async ones, on this loop
        async_audit.open()
        app.state.async_audit = async_audit
        try:
            yield
        finally:
            await async_audit.close()
            audit.close()
            access.close()
            await async_pool.close()
            pool.close()

    app = FastAPI(
        title="drivesight",
        version=package_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.settings = settings
    app.state.access = access
    app.include_router(health_router, responses=REFUSALS)
    app.include_router(router, responses=REFUSALS | AUTH_REFUSALS)
    app.include_router(analytics_router, responses=REFUSALS | AUTH_REFUSALS)
    app.include_router(privacy_router, responses=REFUSALS | AUTH_REFUSALS)
    app.include_router(push_router, responses=REFUSALS | AUTH_REFUSALS)
    app.include_router(service_router, responses=REFUSALS | AUTH_REFUSALS)
    app.include_router(churn_router, responses=REFUSALS | AUTH_REFUSALS)
    app.include_router(upgrade_router, responses=REFUSALS | AUTH_REFUSALS)
    app.include_router(lead_router, responses=REFUSALS | AUTH_REFUSALS)
    app.include_router(forecast_router, responses=REFUSALS | AUTH_REFUSALS)
    errors.install(app)
    install_openapi(app)
    app.add_middleware(RequestGuard)
    if settings.api_server_timing:
        app.add_middleware(ServerTiming)
    return app


class ServerTiming:
    """ASGI middleware adding ``Server-Timing: auth;dur=<ms>;desc="cached"|"lookup"`` to answers of requests
    whose key was checked (the time ``require`` took in the server): authentication measured under load."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the header to its answer when ``require`` recorded a time."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # the dict request.state writes to: made here so that this middleware and the route share it
        state: dict[str, object] = scope.setdefault("state", {})

        async def send_timed(message: Message) -> None:
            timing = state.get("auth_timing")
            if message["type"] == "http.response.start" and isinstance(timing, tuple):
                seconds, cached = timing
                value = f'auth;dur={seconds * 1000:.3f};desc="{"cached" if cached else "lookup"}"'
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"server-timing", value.encode())],
                }
            await send(message)

        await self.app(scope, receive, send_timed)


def app_from_environment() -> FastAPI:
    """The app for ``DRIVESIGHT_DATABASE_URL``, as a factory a multi-process server can import in each worker:
    ``uvicorn --factory cloud.api.app:app_from_environment --workers 4`` (each worker has its own pools, key
    cache and rate buckets)."""
    settings = CloudSettings()
    return create_app(settings.require_database_url(), settings=settings)
