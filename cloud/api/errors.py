"""One error body for every 4xx and 5xx answer: ``{"detail": str, "code": str, "errors": [...]}``.

``detail`` is a sentence for people, ``code`` a stable word for programs (``not_found``, ``invalid_request``,
``unauthorized``, ``insufficient_scope``, ``rate_limited``, ...), ``errors`` the parameters a 422 refused
(empty otherwise). FastAPI's own 422 (a list in ``detail``) and Starlette's 404/405 are translated here, so
the OpenAPI document can promise this one shape everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from .responses import SafeJSONResponse

log = logging.getLogger(__name__)

CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    414: "uri_too_long",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class FieldError(BaseModel):
    """One refused parameter: where it is (``["query", "limit"]``), why, and the kind of refusal."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The body of every error answer."""

    detail: str
    code: str
    errors: list[FieldError] = []


class ApiError(HTTPException):
    """An HTTP error with its own ``code`` (else the status's generic one)."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=dict(headers) if headers else None)
        self.code = code or CODES.get(status_code, "error")
        #: per problem ``{"loc", "msg", "type"}``, as a request validation error lists them
        self.errors = errors


def error_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> SafeJSONResponse:
    """The error body as a response."""
    body = {"detail": detail, "code": code or CODES.get(status, "error"), "errors": errors or []}
    return SafeJSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def _allowed_methods(request: Request) -> str:
    # Starlette's 405 names the methods of the first route that matched the path only; a path served by two
    # routes (GET and POST) must name both
    try:
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = list(iter_route_contexts(request.app.routes))
    except ImportError:  # older FastAPI: included routes are in app.routes
        routes = list(request.app.routes)
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods |= set(route_methods)
    return ", ".join(sorted(methods))


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = exc.code if isinstance(exc, ApiError) else None
    errors = exc.errors if isinstance(exc, ApiError) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return error_response(exc.status_code, str(exc.detail), code=code, errors=errors, headers=headers or None)


def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
         "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]  # fmt: skip
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or "invalid request"
    return error_response(422, detail, errors=errors)


def _data_error(_request: Request, exc: Exception) -> Response:
    # a value the database refuses (class 22: a NUL in text, a datetime or number out of its range) is the
    # client's input, not the server's fault
    return error_response(422, f"the database refused a value: {exc}")


def _server_error(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error in the API", exc_info=exc)
    return error_response(500, "internal server error")


def install(app: FastAPI) -> None:
    """Make every error answer of ``app`` an ``ErrorOut``."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(psycopg.errors.DataError, _data_error)
    app.add_exception_handler(Exception, _server_error)


def documented(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry with the error body."""
    return {"model": ErrorOut, "description": description}
