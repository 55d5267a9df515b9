"""Recommendations served online: one fitted recommender per algorithm and process, refitted when older than
its time to live, so that a request costs a ranking (about a millisecond), not a fit (seconds at scale).

Only the offer kinds a campaign's recommended slot offers (``content.RECOMMENDABLE_KINDS``) are ranked:
online content (articles) teaches the model but is never recommended. Fitting happens on the first request
after the model expired, under a lock (other requests for the same algorithm wait for it instead of fitting
too); a model is never older than ``ttl_s`` plus one fit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from cloud.recommend.base import BaseRecommender

from .content import RECOMMENDABLE_KINDS, fit_recommender

#: the default time to live of a fitted model (DRIVESIGHT_RECOMMEND_CACHE_S)
DEFAULT_TTL_S = 600.0


@dataclass(frozen=True, slots=True)
class Fitted:
    """A fitted recommender and when it was fitted."""

    model: BaseRecommender
    fitted_at: datetime
    fit_seconds: float


class RecommenderCache:
    """Fitted recommenders by algorithm, refitted after ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._models: dict[str, tuple[float, Fitted]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, conn: psycopg.Connection[Any], name: str) -> Fitted:
        """The fitted recommender ``name``, fitting it now if there is none or it expired."""
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            cached = self._models.get(name)
            if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
                return cached[1]
            started = time.monotonic()
            now = datetime.now(UTC)
            # the same offer kinds as a campaign's recommended slot: online articles teach, never fill it
            recommendable = [
                str(r[0])
                for r in conn.cursor(row_factory=tuple_row).execute(
                    "SELECT item_id FROM content_items WHERE kind = ANY(%s)", (sorted(RECOMMENDABLE_KINDS),)
                )
            ]
            model = fit_recommender(conn, name, now, recommendable)
            fitted = Fitted(model, now, time.monotonic() - started)
            self._models[name] = (time.monotonic(), fitted)
            return fitted
