"""Dependencies shared by the routes: a pooled database connection per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

Row = dict[str, object]


def get_conn(request: Request) -> Iterator[psycopg.Connection[Row]]:
    """Borrow a connection from the app's pool for the duration of a request."""
    pool: ConnectionPool = request.app.state.pool
    with pool.connection() as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        yield conn  # type: ignore[misc]


Conn = Annotated[psycopg.Connection[Row], Depends(get_conn)]


def async_pool(request: Request) -> AsyncConnectionPool:
    """The app's pool for ``async`` routes: autocommit connections, borrowed for a route's queries only.

    A sync route takes ``Conn``, which FastAPI enters, runs the route and leaves in worker threads, three
    thread hops a request; the hottest read (a portrait) awaits this pool on the event loop instead."""
    pool: AsyncConnectionPool = request.app.state.async_pool
    return pool
