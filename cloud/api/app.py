"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

from .analytics_routes import router as analytics_router
from .routes import router


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

    app = FastAPI(title="drivesight", version="0.1.0", lifespan=lifespan)
    app.include_router(router)
    app.include_router(analytics_router)
    return app
