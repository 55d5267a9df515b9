"""Backtest: train on the history before a day, score the car owners of that day, judge by what followed.

``train_days`` are snapshots whose outcomes were known by ``test_day`` (their horizon ended by then); the
test rows are the consenting car owners at ``test_day``, labelled by a purchase within the following
``horizon_days`` (the same derived label, :func:`cloud.upgrade.features.labels`). The figures are the
churn backtest's (:func:`cloud.churn.backtest.evaluate`): ROC AUC with its 95% interval, top-decile lift,
Brier score beside the base rate's, reliability per bin, and the AUC of a one-feature baseline (the oldest
car first), in the churn backtest's :class:`~cloud.churn.backtest.Backtest`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

from cloud.churn.backtest import Backtest, evaluate
from cloud.churn.model import ChurnModel

from .config import UpgradeConfig
from .features import labels
from .run import consenting_features, training_rows


def backtest(
    conn: psycopg.Connection[Any],
    config: UpgradeConfig,
    train_days: list[date],
    test_day: date,
    *,
    seed: int = 0,
) -> Backtest:
    """Train on ``train_days``' snapshots, score ``test_day``'s car owners, judge by what followed."""
    X, y = training_rows(conn, train_days, config)
    if len(y) == 0 or y.min() == y.max():
        raise ValueError(f"the training days {train_days[0]}..{train_days[-1]} hold one outcome only")
    model = ChurnModel(config.model, seed).fit(X, y)
    test = consenting_features(conn, test_day, config)
    truth = labels(conn, test, config)
    if len(truth) == 0 or truth.min() == truth.max():
        raise ValueError(f"the test day {test_day} has one outcome only; choose an earlier day")
    p = model.predict_proba(test.values)
    figures = evaluate(truth, p, float(y.mean()), test.column("vehicle_age_years"))
    return Backtest(
        train_days=[str(d) for d in train_days],
        test_day=str(test_day),
        train_rows=len(y),
        test_rows=len(truth),
        **figures,
    )
