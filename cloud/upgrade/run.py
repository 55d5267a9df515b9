"""The daily upgrade job: train when needed, score every car owner whose consent allows marketing, keep
history.

:func:`train_model` learns from the database's own history: the features of a few earlier days
(``snapshots``, ``snapshot_step_days`` apart, the last ``horizon_days`` before the scoring day, so that each
one's outcome is known) against what followed each (:func:`cloud.upgrade.features.labels`: another car
bought within the horizon). The model is the churn job's calibrated gradient boosting with its tree SHAP
reasons (:mod:`cloud.churn.model`), fitted on these features and this label. :func:`run_upgrade` scores one
day: car owners whose current ``marketing`` consent is granted (erased customers are gone from
``customers``), stores probability and top three reasons per customer in ``upgrade_scores`` for that day (a
second run of the same day replaces the day), one run at a time per database.
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

from cloud.churn.model import ChurnModel, top_reasons

from .config import UpgradeConfig
from .features import NAMES, UpgradeFeatures, compute_features, labels

log = logging.getLogger(__name__)


class UpgradeError(RuntimeError):
    """The job cannot run: another run holds the lock, or there is nothing to learn from."""


@dataclass(frozen=True, slots=True)
class StoredModel:
    """A model from ``upgrade_models``."""

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
    mean_probability: float
    seconds: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def consenting_features(
    conn: psycopg.Connection[Any], day: date, config: UpgradeConfig, customers: list[str] | None = None
) -> UpgradeFeatures:
    """Features as of ``day`` of the car owners among ``customers`` (None: all) who allow marketing now."""
    matrix = compute_features(conn, day, config, customers)
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT customer_id FROM consent_current WHERE scope = 'marketing' AND granted"
            " AND customer_id = ANY(%s)",
            (matrix.customers,),
        )
        .fetchall()
    )
    allowed = {str(r[0]) for r in rows}
    return matrix.rows(np.array([c in allowed for c in matrix.customers], dtype=bool))


def training_days(day: date, config: UpgradeConfig) -> list[date]:
    """The snapshot days a model for scoring ``day`` learns from, oldest first (outcomes known by ``day``)."""
    last = day - timedelta(days=config.horizon_days)
    return [last - timedelta(days=config.snapshot_step_days * k) for k in reversed(range(config.snapshots))]


def training_rows(
    conn: psycopg.Connection[Any], days: list[date], config: UpgradeConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Stacked features and labels of the consenting car owners at each of ``days``."""
    xs, ys = [], []
    for d in days:
        matrix = consenting_features(conn, d, config)
        xs.append(matrix.values)
        ys.append(labels(conn, matrix, config))
    return np.vstack(xs), np.concatenate(ys)


def train_model(
    conn: psycopg.Connection[Any], day: date, config: UpgradeConfig, *, seed: int = 0
) -> StoredModel:
    """Fit a model for scoring ``day`` on the snapshots before it and store it in ``upgrade_models``."""
    days = training_days(day, config)
    X, y = training_rows(conn, days, config)
    if len(y) == 0 or y.min() == y.max():
        raise UpgradeError(
            f"nothing to learn from before {day}: {len(y)} owner-days on {days[0]}..{days[-1]},"
            f" {int(y.sum()) if len(y) else 0} of them followed by a purchase within"
            f" {config.horizon_days} days"
        )
    model = ChurnModel(config.model, seed).fit(X, y)
    metrics = {"rows": len(y), "bought": int(y.sum()), "base_rate": round(float(y.mean()), 5)}
    row = conn.execute(
        "INSERT INTO upgrade_models (as_of, horizon_days, features, metrics, model)"
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
            "SELECT version, model, metrics FROM upgrade_models WHERE features = %s"
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
    """One day's scores: per customer probability and reasons."""

    customers: list[str]
    probability: np.ndarray
    reasons: list[list[dict[str, float | str]]]


def score(model: ChurnModel, matrix: UpgradeFeatures) -> Scores:
    """Probability of buying another car within the horizon and the top three reasons (the features that
    raised the log-odds most, tree SHAP) of every customer of ``matrix``."""
    if not matrix.customers:
        return Scores([], np.zeros(0), [])
    p = model.predict_proba(matrix.values)
    reasons = top_reasons(model.contributions(matrix.values), matrix.values, NAMES)
    return Scores(matrix.customers, p, reasons)


def store_scores(cur: psycopg.Cursor[Any], day: date, scores: Scores, version: int) -> None:
    """Replace ``day``'s rows of ``upgrade_scores`` with ``scores`` (COPY)."""
    cur.execute("DELETE FROM upgrade_scores WHERE day = %s", (day,))
    with cur.copy(
        "COPY upgrade_scores (customer_id, day, probability, reasons, model_version) FROM STDIN"
    ) as copy:
        for c, p, r in zip(scores.customers, scores.probability, scores.reasons, strict=True):
            copy.write_row((c, day, float(p), json.dumps(r), version))


def run_upgrade(
    database_url: str,
    config: UpgradeConfig,
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
        locked = conn.execute("SELECT pg_try_advisory_lock(hashtext('drivesight-upgrade'))").fetchone()
        if not locked or not locked[0]:
            raise UpgradeError("another upgrade run holds the lock on this database; try again when it ends")
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
        scores = score(stored.model, matrix)
        seconds["score"] = round(time.perf_counter() - started, 3)
        with conn.transaction(), conn.cursor() as cur:
            store_scores(cur, day, scores, stored.version)
    mean = round(float(scores.probability.mean()), 5) if len(scores.customers) else 0.0
    return RunReport(day, stored.version, trained, len(scores.customers), mean, seconds, stored.metrics)
