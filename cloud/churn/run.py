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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any

import numpy as np
import psycopg

from cloud.scores import job

from .config import TIERS, ChurnConfig
from .features import NAMES, ChurnFeatures, active, compute_features, labels
from .model import ChurnModel, top_reasons

log = logging.getLogger(__name__)


class ChurnError(RuntimeError):
    """The job cannot run: another run holds the lock, or there is nothing to learn from."""


StoredModel = job.StoredModel[ChurnModel]
"""A model from ``churn_models``."""


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
    thresholds: dict[str, float] = field(default_factory=dict)  # the tiers' probability thresholds used
    why_trained: str = ""  # empty: the stored model was used
    pruned: dict[str, int] = field(default_factory=dict)  # what the history's bound deleted


def consenting_features(
    conn: psycopg.Connection[Any], day: date, config: ChurnConfig, customers: list[str] | None = None
) -> ChurnFeatures:
    """Features as of ``day`` of the car owners among ``customers`` (None: all) who allow marketing now."""
    matrix = compute_features(conn, day, config, customers)
    return job.consenting(conn, matrix)


training_days = job.training_days


def training_rows(
    conn: psycopg.Connection[Any], days: list[date], config: ChurnConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Stacked features and labels of the customers active at each of ``days`` (consenting ones only)."""

    def rows(d: date) -> tuple[np.ndarray, np.ndarray]:
        matrix = consenting_features(conn, d, config)
        matrix = matrix.rows(active(matrix, config))
        return matrix.values, labels(conn, matrix, config)

    return job.stack(days, rows)


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
    version = job.insert_model(conn, "churn_models", days, config.horizon_days, NAMES, metrics, model.dumps())
    return job.StoredModel(version, model, metrics, tuple(days))


def latest_model(conn: psycopg.Connection[Any], learnt_by: date | None = None) -> StoredModel | None:
    """The newest stored model whose features are today's :data:`NAMES`, learnt from days up to
    ``learnt_by`` when given (None: none)."""
    return job.latest_model(conn, "churn_models", NAMES, ChurnModel.loads, learnt_by)


@dataclass(frozen=True, slots=True)
class Scores:
    """One day's scores: per customer probability, tier and reasons, and the probability thresholds used."""

    customers: list[str]
    probability: np.ndarray
    tiers: list[str]
    reasons: list[list[dict[str, float | str]]]
    thresholds: dict[str, float] = field(default_factory=dict)


def lapsed(matrix: ChurnFeatures, config: ChurnConfig) -> np.ndarray:
    """Which customers have left already by the label's own definition: neither a trip nor a service visit
    for longer than the horizon. A warning comes too late for them; they are a win-back audience."""
    return (matrix.column("days_since_last_trip") > config.horizon_days) & (
        matrix.column("days_since_service") > config.horizon_days
    )


def score(stored: StoredModel, matrix: ChurnFeatures, config: ChurnConfig) -> Scores:
    """Probability, tier and top three reasons of every customer of ``matrix``.

    - ``lapsed`` (:func:`lapsed`): probability 1, gone already;
    - ``quiet``: not active (:func:`cloud.churn.features.active`) and not lapsed: the model's probability,
      but no risk tier: the model learnt from active customers only, so the rank of a customer silent for
      two weeks is an extrapolation, and an in-car offer does not reach a car nobody drives;
    - the active customers: the calibrated probability and the tier its thresholds give (``tiers`` in
      churn.toml: by default the riskiest tenth is ``high``).

    The reasons say what the trees saw, for every customer."""
    empty = np.zeros(0)
    if not matrix.customers:
        high, medium = config.tiers.thresholds(stored.metrics.get("base_rate"), empty)
        return Scores([], empty, [], [], {"high": high, "medium": medium})
    model = stored.model
    gone = lapsed(matrix, config)
    current = active(matrix, config)
    p = np.where(gone, 1.0, model.predict_proba(matrix.values))
    high, medium = config.tiers.thresholds(stored.metrics.get("base_rate"), p[current])
    reasons = top_reasons(model.contributions(matrix.values), matrix.values, NAMES)
    tiers = np.where(p >= high, "high", np.where(p >= medium, "medium", "low"))
    tiers = np.where(current, tiers, np.where(gone, "lapsed", "quiet"))
    thresholds = {"high": high, "medium": medium}
    return Scores(matrix.customers, p, tiers.tolist(), reasons, thresholds)


def store_scores(cur: psycopg.Cursor[Any], day: date, scores: Scores, version: int) -> None:
    """Replace ``day``'s rows of ``churn_scores`` with ``scores`` (COPY)."""
    job.store_rows(
        cur,
        "churn_scores",
        ("customer_id", "day", "probability", "tier", "reasons", "model_version"),
        day,
        (
            (c, day, float(p), t, json.dumps(r), version)
            for c, p, t, r in zip(
                scores.customers, scores.probability, scores.tiers, scores.reasons, strict=True
            )
        ),
    )


def run_churn(
    database_url: str,
    config: ChurnConfig,
    day: date,
    *,
    retrain: bool = False,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """Score ``day`` (training a model first on ``retrain``, when none learnt before the day or the newest
    is older than ``retrain_after_days``) and store the scores, keeping ``keep_days`` of history."""
    steps = job.Job(
        name="churn",
        error=ChurnError,
        latest=latest_model,
        training_days=partial(training_days, config=config),
        train=lambda conn, d, s: train_model(conn, d, config, seed=s),
        features=partial(consenting_features, config=config),
        score=partial(score, config=config),
        store=store_scores,
        tables=("churn_scores", "churn_models"),
        retrain_after_days=config.retrain_after_days,
        keep_days=config.keep_days,
    )
    done = job.run_daily(database_url, steps, day, retrain=retrain, seed=seed, progress=progress or log.info)
    scores, stored = done.scores, done.stored
    tiers = {t: scores.tiers.count(t) for t in TIERS}
    return RunReport(
        day,
        stored.version,
        done.trained,
        len(scores.customers),
        tiers,
        done.seconds,
        stored.metrics,
        scores.thresholds,
        done.why_trained,
        done.pruned or {},
    )
