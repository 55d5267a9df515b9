"""Recommendations served online: one fitted recommender per algorithm and process, refitted when older than
its time to live, with every customer's ranking computed at fit time, so that a request costs a lookup and a
filter (microseconds), not a ranking (milliseconds) nor a fit (seconds at scale).

Only the offer kinds a campaign's recommended slot offers (``content.RECOMMENDABLE_KINDS``) are ranked:
online content (articles) teaches the model but is never recommended. At fit time every customer the model
knows gets their top :data:`DEPTH` items (``recommend_all``, vectorised, items not valid yet included) with
scores and reasons (``explain_many``, vectorised; stored as indexes into a table of the distinct reason
tuples); everyone else gets the one list an unknown customer gets (popularity). A request takes the
customer's list, leaves out what they converted on and what is not valid at that moment (per-item validity
arrays: an item that expired since the fit is not served), and keeps the first ``k``: the same items,
order, scores and reasons as ``recommend`` gives, which the request asks instead when ``k`` is deeper than
the list or the exclusions left fewer than ``k`` of a list that was cut at :data:`DEPTH`.

Fitting runs in a worker thread (it takes seconds at scale; the event loop keeps serving), one fit per
algorithm at a time: requests wait for an algorithm's first fit; once a model expired, the first request
starts its refit and requests are answered from the previous model until it is done, so a model served is
never older than ``ttl_s`` plus one fit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import tuple_row

from cloud.recommend.base import BaseRecommender, Recommendation

from .content import RECOMMENDABLE_KINDS, fit_recommender

#: the default time to live of a fitted model (DRIVESIGHT_RECOMMEND_CACHE_S)
DEFAULT_TTL_S = 600.0
#: items kept per customer: the route's k is at most 100 and mostly 10; a margin for the items a request
#: leaves out (converted on, expired since the fit). 100,000 customers cost 80 MB per algorithm at 50.
DEPTH = 50
#: the user id the unknown customers' list is computed for (customer ids cannot hold NUL)
_UNKNOWN = "\x00unknown"

log = logging.getLogger(__name__)

#: a connection to fit on, borrowed for the fit: a pool's ``connection`` method, say
Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


@dataclass(frozen=True, slots=True)
class Fitted:
    """A fitted recommender, when it was fitted, and every customer's ranking as of then.

    Row ``r`` of ``items``/``scores``/``reasons`` is the customer with code ``r`` in ``model.users_``; the
    last row is an unknown customer's. ``items`` are item codes (-1 pads a row that held every eligible
    item), ``reasons`` indexes into ``reason_table``. ``valid_from``/``valid_until`` per item code (-inf /
    +inf: open), ``titles``/``kinds`` per item code from the catalogue as of the fit."""

    model: BaseRecommender
    fitted_at: datetime
    fit_seconds: float
    items: np.ndarray
    scores: np.ndarray
    reasons: np.ndarray
    reason_table: tuple[tuple[str, ...], ...]
    valid_from: list[float]
    valid_until: list[float]
    titles: tuple[str | None, ...]
    kinds: tuple[str | None, ...]
    #: whether the rows are as long as the catalogue (a full row then held every eligible item too)
    whole: bool

    def top(
        self, customer_id: str, k: int, exclude: Collection[str], at: float
    ) -> list[Recommendation] | None:
        """The customer's first ``k`` items as ``model.recommend(customer_id, k, exclude, at=at)`` ranks
        them, from the lists of the fit; None when the list cannot tell (the caller asks the model)."""
        row = self.model.users_.user_index.get(customer_id, len(self.items) - 1)
        index = self.model.catalogue_.item_index
        gone = {index[i] for i in exclude if i in index}
        valid_from, valid_until = self.valid_from, self.valid_until
        codes: list[int] = self.items[row].tolist()
        picked: list[int] = []
        for position, code in enumerate(codes):
            if code < 0:  # the list held every eligible item: fewer than k is the answer
                break
            # the window as Catalogue.valid_at checks it, for this moment
            if code in gone or valid_from[code] > at or valid_until[code] <= at:
                continue
            picked.append(position)
            if len(picked) == k:
                break
        else:
            if len(picked) < k and not self.whole:  # cut at DEPTH: items further down may be the rest
                return None
        scores: list[float] = self.scores[row, picked].tolist()
        reasons: list[int] = self.reasons[row, picked].tolist()
        ids, table = self.model.catalogue_.item_ids, self.reason_table
        return [
            Recommendation(ids[codes[p]], score, table[reason])
            for p, score, reason in zip(picked, scores, reasons, strict=True)
        ]


def fit(conn: psycopg.Connection[Any], name: str, depth: int = DEPTH) -> Fitted:
    """Recommender ``name`` fitted on the database as of now, with every known customer's top ``depth``
    and the unknown customers' list, scores and reasons (blocking: seconds at scale)."""
    started = time.monotonic()
    now = datetime.now(UTC)
    catalogue = {
        str(r[0]): (r[1], r[2])
        for r in conn.cursor(row_factory=tuple_row).execute("SELECT item_id, title, kind FROM content_items")
    }
    # the same offer kinds as a campaign's recommended slot: online articles teach, never fill it
    recommendable = [i for i, (_, kind) in catalogue.items() if kind in RECOMMENDABLE_KINDS]
    model = fit_recommender(conn, name, now, recommendable)
    users = [*model.users_.user_ids, _UNKNOWN]
    # items not valid yet are kept in the lists (a request checks each item's window): lists computed as of
    # the fit would otherwise miss an item that becomes valid before the next one
    ranked = model.recommend_all(users, depth, at=now.timestamp(), upcoming=True)
    rows, columns = np.nonzero(ranked.items >= 0)
    said = model.explain_many(
        [users[r] for r in rows.tolist()], [ranked.item_ids[c] for c in ranked.items[rows, columns].tolist()]
    )
    table: dict[tuple[str, ...], int] = {}
    reasons = np.full(ranked.items.shape, -1, dtype=np.int32)
    reasons[rows, columns] = [table.setdefault(r, len(table)) for r in said]
    item_ids = model.catalogue_.item_ids
    return Fitted(
        model=model,
        fitted_at=now,
        fit_seconds=time.monotonic() - started,
        items=ranked.items.astype(np.int32),
        scores=ranked.scores,
        reasons=reasons,
        reason_table=tuple(table),
        valid_from=np.nan_to_num(model.catalogue_.valid_from, nan=-np.inf).tolist(),
        valid_until=np.nan_to_num(model.catalogue_.valid_until, nan=np.inf).tolist(),
        titles=tuple(catalogue.get(i, (None, None))[0] for i in item_ids),
        kinds=tuple(catalogue.get(i, (None, None))[1] for i in item_ids),
        whole=ranked.items.shape[1] == len(item_ids),
    )


class RecommenderCache:
    """Fitted recommenders by algorithm, refitted after ``ttl_s`` seconds; for one event loop."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._models: dict[str, tuple[float, Fitted]] = {}
        self._fits: dict[str, asyncio.Task[Fitted]] = {}

    async def get(self, connect: Connect, name: str) -> Fitted:
        """The fitted recommender ``name``: fitted now (awaited) if there is none, the previous one while a
        refit started by the first request after it expired runs."""
        cached = self._models.get(name)
        if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        fitting = self._fits.get(name)
        if fitting is None:
            fitting = self._fits[name] = asyncio.create_task(self._fit(connect, name), name=f"fit {name}")
            # a refit nobody awaits: its failure is logged in _fit, not left to a warning of the collector
            fitting.add_done_callback(lambda task: task.cancelled() or task.exception())
        if cached is not None:
            return cached[1]
        # shielded: a request whose client went away must not cancel the fit the others wait for
        return await asyncio.shield(fitting)

    async def _fit(self, connect: Connect, name: str) -> Fitted:
        try:
            fitted = await asyncio.to_thread(_fit_on, connect, name)
        except Exception:
            # a failed refit leaves the previous model in service (the next request tries again); a first
            # fit's failure is the waiting requests' error
            log.exception("fitting recommender %s failed", name)
            raise
        finally:
            del self._fits[name]
        self._models[name] = (time.monotonic(), fitted)
        log.info("recommender %s fitted in %.1f s", name, fitted.fit_seconds)
        return fitted


def _fit_on(connect: Connect, name: str) -> Fitted:
    with connect() as conn:
        return fit(conn, name)
