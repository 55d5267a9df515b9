"""Request guard: odd URLs get a 4xx before any route runs.

PostgreSQL text cannot hold NUL, so a NUL in a path or query parameter made psycopg raise (a 500); an invalid
UTF-8 escape was silently turned into U+FFFD and looked up as if it were an id; a URL of any length went
through. The guard refuses all three at the edge, on the raw bytes, so no route has to think about them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import documented, error_response

#: the answers every route may give to odd input, for the OpenAPI document
REFUSALS: dict[int | str, dict[str, Any]] = {
    400: documented("a NUL character or invalid UTF-8 in the path or query string"),
    414: documented("a path or query string over 8 KiB"),
    422: documented("a parameter out of its bounds or unparseable, or a value the database cannot take"),
}

#: the pattern of free-text parameters: PostgreSQL text cannot hold NUL (the guard refuses it, 400)
NO_NUL = r"^[^\x00]+$"

#: longest raw path and longest raw query string accepted (the ids and timestamps the routes take are short)
MAX_PATH_BYTES = 8192
MAX_QUERY_BYTES = 8192


def url_problem(raw_path: bytes, query_string: bytes) -> tuple[int, str] | None:
    """Why a raw path and query string are refused, as (status, detail); None when they are fine."""
    if len(raw_path) > MAX_PATH_BYTES:
        return 414, f"path longer than {MAX_PATH_BYTES} bytes"
    if len(query_string) > MAX_QUERY_BYTES:
        return 414, f"query string longer than {MAX_QUERY_BYTES} bytes"
    # '+' means a space only in the query; it cannot hide a NUL or bad UTF-8 either way
    for part, raw in (("path", raw_path), ("query string", query_string)):
        decoded = unquote_to_bytes(raw)
        if b"\x00" in decoded:
            return 400, f"the {part} holds a NUL character"
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError:
            return 400, f"the {part} is not valid UTF-8 once percent-decoded"
    return None


class RequestGuard:
    """ASGI middleware refusing HTTP requests whose path or query string is too long, has NUL or bad UTF-8."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 400 or 414 with a JSON detail for an odd URL; pass everything else on unchanged."""
        if scope["type"] == "http":
            # without raw_path (it is optional in ASGI) re-quote the decoded path so that it is checked alike
            path = str(scope.get("path", ""))
            raw_path = scope.get("raw_path") or quote(path, safe="/", errors="surrogateescape").encode()
            problem = url_problem(raw_path, scope.get("query_string", b""))
            if problem is not None:
                status, detail = problem
                await error_response(status, detail)(scope, receive, send)
                return
        await self.app(scope, receive, send)
