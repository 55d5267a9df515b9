"""Schemathesis hooks for the API contract test (loaded by the schemathesis process via schemathesis.toml).

The list routes take an opaque ``cursor``: the OpenAPI document can say only "base64url, at most 512
characters", yet only a cursor this server made for that list is a valid one, anything else is a documented
422 (``invalid_cursor``). Left alone, schemathesis' positive mode sends forged cursors such as ``"0000"`` and
its ``positive_data_acceptance`` check flags the 422. Pinning the cursor to ``""`` (as a first run by hand
did) silences that, but then no cursor is ever decoded in the run, and that hid a 500 (a cursor spelling a
lone surrogate). So instead a positive case's cursor becomes a well-formed cursor *of that list* whose sort
key is built from what schemathesis generated: the decoding and the keyset query run on every such case.
Negative cases keep their malformed cursors (those must be a 422, never a 5xx), and
``tests/test_api_contract.py`` sends forged cursors of every kind directly.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode

from cloud.api.pagination import encode_cursor


def _moment(text: str) -> str:
    # a time anywhere from 1970 to about 2106, different per generated text
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=zlib.crc32(text.encode()))).isoformat()


def list_cursor(path: str, text: str) -> str | None:
    """A cursor of the list served at ``path`` (an OpenAPI path template) whose sort key comes from
    ``text``; None for a path that is no list."""
    if path == "/v1/vehicles":
        return encode_cursor("vehicles", text)
    if path == "/v1/segments":
        return encode_cursor("segments", text)
    if path.endswith("/trips"):
        return encode_cursor("trips", _moment(text), text)
    if path.endswith("/events"):
        return encode_cursor("events", _moment(text), len(text), zlib.adler32(text.encode()) % 1000)
    if path == "/v1/insights":
        return encode_cursor("insights", len(text))
    if path == "/v1/catalogue":
        return encode_cursor("catalogue", text)
    if path == "/v1/campaigns":
        return encode_cursor("campaigns", text)
    if path.endswith("/decisions"):
        return encode_cursor("decisions", text)
    if path == "/v1/churn":
        return encode_cursor("churn", len(text) / 100, text)
    if path == "/v1/service/reminders":
        return encode_cursor("reminders", zlib.crc32(text.encode()))
    if path == "/v1/upgrade":
        return encode_cursor("upgrade", len(text) / 100, text)
    if path in ("/v1/leads", "/v1/dealer/leads"):
        return encode_cursor("leads", zlib.crc32(text.encode()))
    return None


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Give a positive case with a non-empty cursor a well-formed cursor of its own list."""
    query = case.query or {}
    cursor = query.get("cursor")
    meta = getattr(case, "meta", None) or getattr(case, "_meta", None)
    mode = meta.generation.mode if meta is not None else None
    if isinstance(cursor, str) and cursor and mode == GenerationMode.POSITIVE:
        replaced = list_cursor(case.operation.path, cursor)
        if replaced is not None:
            case.query = {**query, "cursor": replaced}
    return case
