"""The daily churn job: train when needed, score every customer whose consent allows marketing, keep history.

:func:`train_model` learns from the database's own history: the features of a few earlier days
(``snapshots``, ``snapshot_step_days`` apart, the last ``horizon_days`` before the scoring day, so that each
one's outcome is known) against what followed each (:func:`cloud.churn.features.labels`). :func:`run_churn`
scores one day: customers whose current ``marketing`` consent is granted (erased customers are gone from
``customers``; a withdrawn consent is not scored, and that day's earlier row of theirs is replaced away),
stores probability, tier and top three reasons per customer in ``churn_scores`` for that day (a second run
of the same day replaces the day), one run at a time per database.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import tuple_row

from .config import ChurnConfig
from .features import NAMES, ChurnFeatures, active, compute_features, labels
from .model import ChurnModel, top_reasons

log = logging.getLogger(__name__)


class ChurnError(RuntimeError):
    """The job cannot run: another run holds the lock, or there is nothing to learn from."""


@dataclass(frozen=True, slots=True)
class StoredModel:
    """A model from ``churn_models``."""

    version: int
    model: ChurnModel
    metrics: dict[str, Any]


@dataclass
class RunReport:
    """What a run did."""

    day: date
    model_version: int
    trained: bool
    scored: int
    tiers: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def _allowed(conn: psycopg.Connection[Any], customers: list[str]) -> set[str]:
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT customer_id FROM consent_current WHERE scope = 'marketing' AND granted"
            " AND customer_id = ANY(%s)",
            (customers,),
        )
        .fetchall()
    )
    return {str(r[0]) for r in rows}


def consenting_features(
    conn: psycopg.Connection[Any], day: date, config: ChurnConfig, customers: list[str] | None = None
) -> ChurnFeatures:
    """Features as of ``day`` of the car owners among ``customers`` (None: all) who allow marketing now."""
    matrix = compute_features(conn, day, config, customers)
    allowed = _allowed(conn, matrix.customers)
    return matrix.rows(np.array([c in allowed for c in matrix.customers], dtype=bool))


def training_days(day: date, config: ChurnConfig) -> list[date]:
    """The snapshot days a model for scoring ``day`` learns from, oldest first (outcomes known by ``day``)."""
    last = day - timedelta(days=config.horizon_days)
    return [last - timedelta(days=config.snapshot_step_days * k) for k in reversed(range(config.snapshots))]


def training_rows(
    conn: psycopg.Connection[Any], days: list[date], config: ChurnConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Stacked features and labels of the customers active at each of ``days`` (consenting ones only)."""
    xs, ys = [], []
    for d in days:
        matrix = consenting_features(conn, d, config)
        matrix = matrix.rows(active(matrix, config))
        xs.append(matrix.values)
        ys.append(labels(conn, matrix, config))
    return np.vstack(xs), np.concatenate(ys)


def train_model(
    conn: psycopg.Connection[Any], day: date, config: ChurnConfig, *, seed: int = 0
) -> StoredModel:
    """Fit a model for scoring ``day`` on the snapshots before it and store it in ``churn_models``."""
    days = training_days(day, config)
    X, y = training_rows(conn, days, config)
    if len(y) == 0 or y.min() == y.max():
        raise ChurnError(
            f"nothing to learn from before {day}: {len(y)} active customers on {days[0]}..{days[-1]},"
            f" {int(y.sum()) if len(y) else 0} of them churned within {config.horizon_days} days"
        )
    model = ChurnModel(config.model, seed).fit(X, y)
    metrics = {"rows": len(y), "churned": int(y.sum()), "base_rate": round(float(y.mean()), 5)}
    row = conn.execute(
        "INSERT INTO churn_models (as_of, horizon_days, features, metrics, model)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING version",
        (days, config.horizon_days, list(NAMES), json.dumps(metrics), model.dumps()),
    ).fetchone()
    assert row is not None
    return StoredModel(int(row[0]), model, metrics)


def latest_model(conn: psycopg.Connection[Any]) -> StoredModel | None:
    """The newest stored model whose features are today's :data:`NAMES` (None: none)."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT version, model, metrics FROM churn_models WHERE features = %s"
            " ORDER BY version DESC LIMIT 1",
            (list(NAMES),),
        )
        .fetchone()
    )
    if row is None:
        return None
    version, blob, metrics = row
    assert isinstance(version, int) and isinstance(blob, bytes) and isinstance(metrics, dict)
    return StoredModel(version, ChurnModel.loads(blob), metrics)


@dataclass(frozen=True, slots=True)
class Scores:
    """One day's scores: per customer probability, tier and reasons."""

    customers: list[str]
    probability: np.ndarray
    tiers: list[str]
    reasons: list[list[dict[str, float | str]]]


def score(model: ChurnModel, matrix: ChurnFeatures, config: ChurnConfig) -> Scores:
    """Probability, tier and top three reasons of every customer of ``matrix`` (a customer who has churned
    already, silent for longer than the horizon, has probability 1; the reasons say what the trees saw)."""
    if not matrix.customers:
        return Scores([], np.zeros(0), [], [])
    # a customer silent for longer than the horizon (no trip, no visit) has churned by the label's own
    # definition: probability 1, not the model's guess about rows unlike any it was trained on (active ones)
    lapsed = (matrix.column("days_since_last_trip") > config.horizon_days) & (
        matrix.column("days_since_service") > config.horizon_days
    )
    p = np.where(lapsed, 1.0, model.predict_proba(matrix.values))
    reasons = top_reasons(model.contributions(matrix.values), matrix.values, NAMES)
    tiers = np.where(p >= config.tiers.high, "high", np.where(p >= config.tiers.medium, "medium", "low"))
    return Scores(matrix.customers, p, tiers.tolist(), reasons)


def store_scores(cur: psycopg.Cursor[Any], day: date, scores: Scores, version: int) -> None:
    """Replace ``day``'s rows of ``churn_scores`` with ``scores`` (COPY)."""
    cur.execute("DELETE FROM churn_scores WHERE day = %s", (day,))
    with cur.copy(
        "COPY churn_scores (customer_id, day, probability, tier, reasons, model_version) FROM STDIN"
    ) as copy:
        for c, p, t, r in zip(
            scores.customers, scores.probability, scores.tiers, scores.reasons, strict=True
        ):
            copy.write_row((c, day, float(p), t, json.dumps(r), version))


def run_churn(
    database_url: str,
    config: ChurnConfig,
    day: date,
    *,
    retrain: bool = False,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """Score ``day`` (training a model first when there is none or on ``retrain``) and store the scores."""
    say = progress or log.info
    seconds: dict[str, float] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(hashtext('drivesight-churn'))").fetchone()
        if not locked or not locked[0]:
            raise ChurnError("another churn run holds the lock on this database; try again when it ends")
        started = time.perf_counter()
        stored = None if retrain else latest_model(conn)
        trained = stored is None
        if stored is None:
            say(f"training on {', '.join(str(d) for d in training_days(day, config))}")
            stored = train_model(conn, day, config, seed=seed)
            say(f"model {stored.version}: {stored.metrics}")
        seconds["train"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        matrix = consenting_features(conn, day, config)
        seconds["features"] = round(time.perf_counter() - started, 3)
        say(f"features of {len(matrix.customers)} customers: {seconds['features']:.1f} s")
        started = time.perf_counter()
        scores = score(stored.model, matrix, config)
        seconds["score"] = round(time.perf_counter() - started, 3)
        say(f"scores and reasons: {seconds['score']:.1f} s")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            store_scores(cur, day, scores, stored.version)
        seconds["store"] = round(time.perf_counter() - started, 3)
    tiers = {t: scores.tiers.count(t) for t in ("high", "medium", "low")}
    return RunReport(day, stored.version, trained, len(scores.customers), tiers, seconds, stored.metrics)
