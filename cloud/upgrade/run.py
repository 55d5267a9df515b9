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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import Any

import numpy as np
import psycopg

from cloud.churn.model import ChurnModel, top_reasons
from cloud.scores import job

from .config import UpgradeConfig
from .features import NAMES, UpgradeFeatures, compute_features, labels

log = logging.getLogger(__name__)


class UpgradeError(RuntimeError):
    """The job cannot run: another run holds the lock, or there is nothing to learn from."""


StoredModel = job.StoredModel[ChurnModel]
"""A model from ``upgrade_models``."""


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
    return job.consenting(conn, matrix)


training_days = job.training_days


def training_rows(
    conn: psycopg.Connection[Any], days: list[date], config: UpgradeConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Stacked features and labels of the consenting car owners at each of ``days``."""

    def rows(d: date) -> tuple[np.ndarray, np.ndarray]:
        matrix = consenting_features(conn, d, config)
        return matrix.values, labels(conn, matrix, config)

    return job.stack(days, rows)


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
    version = job.insert_model(
        conn, "upgrade_models", days, config.horizon_days, NAMES, metrics, model.dumps()
    )
    return job.StoredModel(version, model, metrics, tuple(days))


def latest_model(conn: psycopg.Connection[Any], learnt_by: date | None = None) -> StoredModel | None:
    """The newest stored model whose features are today's :data:`NAMES`, learnt from days up to
    ``learnt_by`` when given (None: none)."""
    return job.latest_model(conn, "upgrade_models", NAMES, ChurnModel.loads, learnt_by)


@dataclass(frozen=True, slots=True)
class Scores:
    """One day's scores: per customer probability and reasons."""

    customers: list[str]
    probability: np.ndarray
    reasons: list[list[dict[str, float | str]]]


def score(stored: StoredModel, matrix: UpgradeFeatures) -> Scores:
    """Probability of buying another car within the horizon and the top three reasons (the features that
    raised the log-odds most, tree SHAP) of every customer of ``matrix``."""
    if not matrix.customers:
        return Scores([], np.zeros(0), [])
    model = stored.model
    p = model.predict_proba(matrix.values)
    reasons = top_reasons(model.contributions(matrix.values), matrix.values, NAMES)
    return Scores(matrix.customers, p, reasons)


def store_scores(cur: psycopg.Cursor[Any], day: date, scores: Scores, version: int) -> None:
    """Replace ``day``'s rows of ``upgrade_scores`` with ``scores`` (COPY)."""
    job.store_rows(
        cur,
        "upgrade_scores",
        ("customer_id", "day", "probability", "reasons", "model_version"),
        day,
        (
            (c, day, float(p), json.dumps(r), version)
            for c, p, r in zip(scores.customers, scores.probability, scores.reasons, strict=True)
        ),
    )


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
    steps = job.Job(
        name="upgrade",
        error=UpgradeError,
        latest=latest_model,
        training_days=partial(training_days, config=config),
        train=lambda conn, d, s: train_model(conn, d, config, seed=s),
        features=partial(consenting_features, config=config),
        score=score,
        store=store_scores,
        tables=("upgrade_scores", "upgrade_models"),
        retrain_after_days=config.retrain_after_days,
        keep_days=config.keep_days,
        say_scored=False,
        time_store=False,
    )
    done = job.run_daily(database_url, steps, day, retrain=retrain, seed=seed, progress=progress or log.info)
    scores, stored = done.scores, done.stored
    mean = round(float(scores.probability.mean()), 5) if len(scores.customers) else 0.0
    return RunReport(
        day, stored.version, done.trained, len(scores.customers), mean, done.seconds, stored.metrics
    )
