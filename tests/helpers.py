"""Small helpers shared by the integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def count(conn: psycopg.Connection[tuple[object, ...]], sql: str, *params: object) -> int:
    """The single integer a counting query returns."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]
