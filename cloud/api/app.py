"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from psycopg_pool import ConnectionPool
from starlette.responses import Response

from edge_agent.protocol.conventions import package_version

from .analytics_routes import router as analytics_router
from .guard import REFUSALS, RequestGuard, SafeJSONResponse
from .routes import router


def _data_error(_request: Request, exc: Exception) -> Response:
    # a value the database refuses (class 22: a NUL in text, a datetime or number out of its range) is the
    # client's input, not the server's fault
    return SafeJSONResponse({"detail": f"the database refused a value: {exc}"}, status_code=422)


def create_app(database_url: str, *, pool_size: int = 8) -> FastAPI:
    """An app whose routes read from the database at ``database_url`` through a connection pool."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ConnectionPool(database_url, min_size=1, max_size=pool_size, open=False)
        pool.open(wait=True, timeout=30)
        app.state.pool = pool
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="drivesight",
        version=package_version(),
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.include_router(router, responses=REFUSALS)
    app.include_router(analytics_router, responses=REFUSALS)
    app.add_exception_handler(psycopg.errors.DataError, _data_error)
    app.add_middleware(RequestGuard)
    return app
