"""Pages of list answers: ``{"items": [...], "next_cursor": str | null}`` and the opaque cursor.

A cursor is base64url JSON of ``[kind, sort key...]``: the sort key of the last item of the page, so the next
page starts after it whatever was inserted meanwhile (keyset pagination, no OFFSET scan). ``kind`` keeps a
cursor of one list from being taken by another. Clients must treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from .errors import ApiError

T = TypeVar("T")
R = TypeVar("R")

MAX_CURSOR = 512

Limit = Annotated[int, Query(ge=1, le=1000, description="items per page (1-1000)")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR,
        pattern=r"^[A-Za-z0-9_-]*$",
        description="`next_cursor` of the previous page, as it came (base64url); omit (or empty) for the"
        " first page. Anything else is refused (422, code `invalid_cursor`).",
    ),
]


class Page(BaseModel, Generic[T]):
    """One page of a list; ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(kind: str, *key: object) -> str:
    """An opaque cursor for the item whose sort key is ``key``."""
    raw = json.dumps([kind, *key], separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, kind: str, types: tuple[type, ...]) -> list[Any]:
    """The sort key in ``cursor``, which must be a ``kind`` cursor of values of ``types``; else a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _invalid() from exc
    if (
        not isinstance(value, list)
        or len(value) != len(types) + 1
        or value[0] != kind
        or not all(type(v) is t for v, t in zip(value[1:], types, strict=True))
        or not all(_storable(v) for v in value[1:])
    ):
        raise _invalid()
    return value[1:]


def _storable(value: object) -> bool:
    # JSON can spell what no stored sort key holds: a lone surrogate ("\ud800", which psycopg cannot encode:
    # a 500), a NUL (PostgreSQL text refuses it) or an integer past bigint. A cursor this server made has none
    # of them, so such a cursor is forged: the same 422 as any other, before the query is built
    if isinstance(value, str):
        return "\x00" not in value and not any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return True


def _invalid() -> ApiError:
    return ApiError(422, "cursor is not a next_cursor of this list", code="invalid_cursor")


def paginate(rows: list[R], limit: int, cursor_of: Callable[[R], str]) -> tuple[list[R], str | None]:
    """The first ``limit`` of ``rows`` (fetched ``limit + 1``: one more says that a next page exists) and the
    cursor of the next page (None on the last)."""
    shown = rows[:limit]
    return shown, cursor_of(shown[-1]) if len(rows) > limit and shown else None
