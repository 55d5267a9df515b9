"""Reading a score table (``customer_id, day, probability, ..., reasons, model_version``): the newest scored
day, a keyset page of one day, one customer's newest rows. Only customers whose current consent allows
marketing are read (a consent withdrawn after the day was scored counts at once)."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from psycopg.rows import tuple_row

CONSENTING = (
    "EXISTS (SELECT FROM consent_current k WHERE k.customer_id = s.customer_id"
    " AND k.scope = 'marketing' AND k.granted)"
)


def latest_day(conn: psycopg.Connection[Any], table: str) -> date | None:
    """The newest day with scores in ``table`` (None: never scored)."""
    row = conn.cursor(row_factory=tuple_row).execute(f"SELECT max(day) FROM {table}").fetchone()
    return row[0] if row else None


def page_rows(
    conn: psycopg.Connection[Any],
    table: str,
    columns: str,
    condition: str,
    params: dict[str, Any],
    *,
    limit: int,
    after: tuple[float, str] | None,
    day: date | None,
) -> list[tuple[Any, ...]]:
    """``columns`` of ``table`` (alias ``s``) on ``day`` (default: the newest) where ``condition`` holds (with
    ``params``), likeliest first, after the (probability, customer) key ``after`` (keyset pages)."""
    day = day or latest_day(conn, table)
    if day is None:
        return []
    return (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT {columns}"
            f" FROM {table} s WHERE s.day = %(day)s AND {condition}"
            " AND (%(p)s::real IS NULL OR (s.probability, %(c)s::text) < (%(p)s::real, s.customer_id))"
            f" AND {CONSENTING}"
            " ORDER BY s.probability DESC, s.customer_id LIMIT %(limit)s",
            {
                "day": day,
                **params,
                "p": after[0] if after else None,
                "c": after[1] if after else None,
                "limit": limit,
            },
        )
        .fetchall()
    )


def customer_rows(
    conn: psycopg.Connection[Any], table: str, columns: str, customer_id: str, days: int
) -> list[tuple[Any, ...]]:
    """``columns`` of the customer's rows of the last ``days`` scored days, newest first (none: the customer
    does not allow marketing or has none)."""
    return (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT {columns}"
            f" FROM {table} s WHERE s.customer_id = %s AND {CONSENTING} ORDER BY s.day DESC LIMIT %s",
            (customer_id, days),
        )
        .fetchall()
    )


def trend(history: list[tuple[Any, ...]]) -> float | None:
    """The probability's (each entry's second) change from the first day of ``history`` to the newest (None:
    one day only)."""
    if len(history) < 2:
        return None
    return round(float(history[-1][1]) - float(history[0][1]), 6)
