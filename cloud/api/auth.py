"""Who is asking: a scoped API key per request (``Authorization: Bearer ds_...``), checked by ``require``.

``require(scope)`` is the dependency every route but ``/healthz`` takes::

    principal: Annotated[Principal, require("privacy:admin")]

It answers 401 (with ``WWW-Authenticate: Bearer``) for a missing, malformed, unknown, expired or revoked key,
429 (with ``Retry-After``) when the key spent its token bucket, and 403 when the key lacks the scope
(``admin`` has every scope). Keys are read from the database through a small pool of their own (autocommit,
so that marking a key used never waits on a request's transaction) and trusted for
``DRIVESIGHT_API_KEY_CACHE_S`` seconds (default 2): a revocation takes effect within that time in every
process. Requests that miss the cache together share one lookup; a key that cannot be checked (the database
does not answer) is 503. The cache and the token buckets are touched only on the event loop (this
dependency is async), so they need no lock, and a cached key costs no thread hop and no database round trip
(about 6 microseconds a request, measured).

The OpenAPI document declares the bearer scheme and, per operation, its scope (``security`` and
``x-required-scope``); ``route_access(app)`` is how tests and the document find every route's scope.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
import psycopg
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool, PoolTimeout

from cloud.access.cache import KeyCache
from cloud.access.keys import KEY_RE, SCOPES, KeyInfo, Scope, lookup_key
from cloud.access.ratelimit import TokenBuckets
from cloud.config import CloudSettings

from .errors import ApiError, documented

__all__ = [
    "AUTH_REFUSALS", "Access", "Principal", "RouteAccess", "install_openapi", "require", "required_scope",
    "route_access",
]  # fmt: skip

SCHEME = "bearerAuth"
#: the longest Authorization value looked at; a real key is 55 characters
MAX_CREDENTIALS = 200
#: the share of the cache time after which a cached key in use is read again in the background
REFRESH_AFTER = 0.75

#: what every protected route may answer besides its own results, for the OpenAPI document
AUTH_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: documented("no key, or a malformed, unknown, expired or revoked key (see WWW-Authenticate)"),
    403: documented("the key lacks the scope this route requires"),
    429: documented("too many requests with this key; retry after Retry-After seconds"),
    503: documented("the key cannot be checked: the database does not answer"),
}

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name=SCHEME,
    bearerFormat="ds_<prefix>_<secret>",
    description="An API key from `drivesight cloud keys create`, sent as `Authorization: Bearer <key>`.",
)


@dataclass(frozen=True)
class Principal:
    """The key a request was made with."""

    key_id: int
    name: str
    scopes: frozenset[str]
    dealer_id: str | None = None  # a ``dealer`` key's dealer: the only one whose leads it may see

    def has(self, scope: str) -> bool:
        """True when the key has ``scope`` or ``admin``."""
        return scope in self.scopes or Scope.ADMIN in self.scopes


class Access:
    """Per app: the key cache, the token buckets, and the pool keys are looked up through."""

    def __init__(self, settings: CloudSettings) -> None:
        self.cache = KeyCache(settings.api_key_cache_s)
        self.buckets = TokenBuckets(settings.api_rate_per_s, settings.api_rate_burst)
        self.pool: ConnectionPool | None = None
        # lookups under way, by token digest: requests that miss the cache together share one
        self._pending: dict[bytes, asyncio.Future[tuple[KeyInfo | None, float]]] = {}
        # by token digest of a key found: when its entry is old enough to be read again ahead of its expiry
        self._refresh_at: dict[bytes, float] = {}
        self.lookups = 0  # database lookups made (for tests and metrics)

    def open(self, database_url: str) -> None:
        """Open the key lookup pool (two connections: lookups are rare, one per key every few seconds)."""
        self.pool = ConnectionPool(
            database_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False, name="api-keys"
        )
        self.pool.open(wait=True, timeout=30)

    def close(self) -> None:
        """Close the pool."""
        if self.pool is not None:
            self.pool.close()

    def _lookup(self, token: str) -> tuple[KeyInfo | None, float]:
        assert self.pool is not None, "the app's lifespan opens the pool"
        read_at = self.cache.clock()  # taken before the read: an entry never outlives its ttl after it
        with self.pool.connection(timeout=5) as conn:
            return lookup_key(conn, token), read_at

    async def key(self, token: str) -> KeyInfo | None:
        """The stored key of ``token`` (cached), or None; a 503 when the database cannot say."""
        return (await self.key_and_source(token))[0]

    async def key_and_source(self, token: str) -> tuple[KeyInfo | None, bool]:
        """``key(token)`` and whether it came from the cache (False: this request waited for a lookup)."""
        fresh, info = self.cache.get(token)
        if fresh:
            if info is not None and self.cache.clock() >= self._refresh_at.get(
                self.cache.slot(token), math.inf
            ):
                # read again ahead of expiry, in the background, while this request goes on with the entry:
                # a key in use then never makes requests wait for its lookup (they waited 4-20 ms every
                # ttl, 1 % of the reads under load: the p99); the entry still expires ttl after its read
                self._lookup_shared(token)
            return info, True
        try:
            # shielded: a waiter whose client went away does not cancel the others' lookup
            info, _read_at = await asyncio.shield(self._lookup_shared(token))
        except (psycopg.Error, PoolTimeout) as exc:
            raise ApiError(503, "cannot check the API key now: the database does not answer") from exc
        return info, False

    def _lookup_shared(self, token: str) -> asyncio.Future[tuple[KeyInfo | None, float]]:
        """The lookup of ``token`` under way, else a new one; its answer goes into the cache when it comes."""
        slot = self.cache.slot(token)
        pending = self._pending.get(slot)
        if pending is None:
            self.lookups += 1
            pending = asyncio.ensure_future(anyio.to_thread.run_sync(self._lookup, token))
            self._pending[slot] = pending
            pending.add_done_callback(lambda done: self._looked_up(token, slot, done))
        return pending

    def _looked_up(self, token: str, slot: bytes, done: asyncio.Future[tuple[KeyInfo | None, float]]) -> None:
        self._pending.pop(slot, None)
        if done.cancelled() or done.exception() is not None:
            return  # the waiters see the error; a background refresh's is seen when the entry expires
        info, read_at = done.result()
        self.cache.put(token, info, read_at)
        if info is None:
            self._refresh_at.pop(slot, None)  # made-up tokens are not refreshed (nor remembered here)
        else:
            self._refresh_at[slot] = read_at + REFRESH_AFTER * self.cache.ttl_s


def _unauthorized(detail: str, error: str | None) -> ApiError:
    challenge = 'Bearer realm="drivesight"' + (f', error="{error}"' if error else "")
    return ApiError(401, detail, code="unauthorized", headers={"WWW-Authenticate": challenge})


class _Require:
    """The dependency ``require`` returns; ``scope`` is what ``required_scope`` reads."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        started = time.perf_counter()
        header = request.headers.get("authorization")
        if header is None:
            raise _unauthorized("an API key is required: send Authorization: Bearer <key>", None)
        token = credentials.credentials if credentials is not None else ""
        if len(token) > MAX_CREDENTIALS or KEY_RE.match(token) is None:
            raise _unauthorized(
                "the Authorization header is not Bearer ds_<prefix>_<secret>", "invalid_request"
            )
        access: Access = request.app.state.access
        info, cached = await access.key_and_source(token)
        if info is None:
            raise _unauthorized("unknown API key", "invalid_token")
        if info.revoked_at is not None:
            raise _unauthorized("this API key was revoked", "invalid_token")
        if info.expires_at is not None and datetime.now(UTC) >= info.expires_at:
            raise _unauthorized("this API key has expired", "invalid_token")
        wait = access.buckets.take(info.key_id)
        if wait is not None:
            raise ApiError(
                429,
                f"too many requests with this key (over {access.buckets.rate_per_s:g}/s)",
                code="rate_limited",
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        principal = Principal(info.key_id, info.name, info.scopes, info.dealer_id)
        if not principal.has(self.scope):
            raise ApiError(
                403,
                f"this key lacks the scope {self.scope!r} (it has {', '.join(sorted(info.scopes))})",
                code="insufficient_scope",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{self.scope}"'},
            )
        request.state.principal = principal
        # for the Server-Timing header (DRIVESIGHT_API_SERVER_TIMING): this check's own time, and whether the
        # key was cached or looked up; only granted requests carry it (a refusal's time would tell nothing)
        request.state.auth_timing = (time.perf_counter() - started, cached)
        return principal


def require(scope: str) -> Any:
    """A FastAPI dependency: the request's ``Principal``, which must have ``scope`` (or ``admin``)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    return Depends(_Require(scope))


def _scopes(dependant: Dependant) -> list[str]:
    found = [dependant.call.scope] if isinstance(dependant.call, _Require) else []
    for sub in dependant.dependencies:
        found.extend(_scopes(sub))
    return found


def required_scope(route: Any) -> str | None:
    """The scope an API route (anything with a ``dependant``) requires, or None for an open route."""
    found = _scopes(route.dependant)
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class RouteAccess:
    """One API route as served: its path, methods and required scope (None: open)."""

    path: str
    methods: frozenset[str]
    scope: str | None
    include_in_schema: bool


def route_access(app: FastAPI) -> list[RouteAccess]:
    """Every API route of ``app`` with the scope it requires, routers included (their own dependencies
    too)."""
    try:  # FastAPI keeps included routers as such and resolves each route's effective form on demand
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = [
            c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)
        ]
    except ImportError:  # older FastAPI copies included routes into app.routes
        routes = [r for r in app.routes if isinstance(r, APIRoute)]
    return [
        RouteAccess(
            str(r.path_format), frozenset(r.methods or ()), required_scope(r), bool(r.include_in_schema)
        )
        for r in routes
    ]


def install_openapi(app: FastAPI) -> None:
    """Generate ``app``'s OpenAPI document with each operation's scope, and open routes marked open."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for route in route_access(app):
            if not route.include_in_schema:
                continue
            for method in route.methods:
                operation = schema["paths"].get(route.path, {}).get(method.lower())
                if operation is None:
                    continue
                if route.scope is None:
                    operation["security"] = []  # open on purpose: only /healthz (a test holds this)
                    continue
                operation["security"] = [{SCHEME: [route.scope]}]
                operation["x-required-scope"] = route.scope
                note = f"Requires an API key with scope `{route.scope}` (or `admin`)."
                operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{note}".lstrip()
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
