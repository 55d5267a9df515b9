"""Dependencies shared by the routes: a pooled database connection per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

Row = dict[str, object]


def get_conn(request: Request) -> Iterator[psycopg.Connection[Row]]:
    """Borrow a connection from the app's pool for the duration of a request."""
    pool: ConnectionPool = request.app.state.pool
    with pool.connection() as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        yield conn  # type: ignore[misc]


Conn = Annotated[psycopg.Connection[Row], Depends(get_conn)]
