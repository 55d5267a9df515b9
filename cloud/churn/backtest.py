"""Backtest: train on the history before a day, score the customers active that day, judge by what followed.

``train_days`` are snapshots whose outcomes were known by ``test_day`` (their horizon ended by then); the
test rows are the consenting customers active at ``test_day``, labelled by the following ``horizon_days``
(the same derived label, :func:`cloud.churn.features.labels`). Reported: ROC AUC with its 95% interval
(Hanley and McNeil), the top decile's churn rate over the base rate (lift), the Brier score next to the
Brier score of always predicting the training base rate, the reliability of the probabilities in bins, and
the AUC of a one-feature baseline (fewest trips per week in the last four weeks first).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
import psycopg
from sklearn.metrics import brier_score_loss, roc_auc_score

from .config import ChurnConfig
from .features import active, labels
from .model import ChurnModel
from .run import consenting_features, training_rows

#: upper edges of the reliability bins
BINS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


@dataclass(frozen=True)
class Backtest:
    """The figures of one backtest."""

    train_days: list[str]
    test_day: str
    train_rows: int
    test_rows: int
    base_rate: float
    auc: float
    auc_ci: tuple[float, float]
    baseline_auc: float
    top_decile_lift: float
    top_decile_rate: float
    brier: float
    brier_base_rate: float
    reliability: list[dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def auc_interval(auc: float, positives: int, negatives: int) -> tuple[float, float]:
    """95% interval of a ROC AUC (Hanley and McNeil's standard error)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / max(
        positives * negatives, 1
    )
    half = 1.96 * math.sqrt(max(var, 0.0))
    return round(max(0.0, auc - half), 4), round(min(1.0, auc + half), 4)


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """The churn rate among the riskiest tenth, and that over the base rate."""
    top = np.argsort(-p, kind="stable")[: max(1, len(p) // 10)]
    rate = float(y[top].mean())
    return rate, rate / max(float(y.mean()), 1e-12)


def reliability(y: np.ndarray, p: np.ndarray) -> list[dict[str, float]]:
    """Per probability bin: its range, rows, mean predicted and observed churn rate."""
    out = []
    lo = 0.0
    for hi in BINS:
        rows = (p >= lo) & ((p < hi) if hi < 1.0 else (p <= hi))
        if rows.any():
            out.append(
                {
                    "from": lo,
                    "to": hi,
                    "rows": int(rows.sum()),
                    "predicted": round(float(p[rows].mean()), 4),
                    "observed": round(float(y[rows].mean()), 4),
                }
            )
        lo = hi
    return out


def evaluate(y: np.ndarray, p: np.ndarray, base_rate: float, baseline: np.ndarray) -> dict[str, Any]:
    """The figures of predictions ``p`` against outcomes ``y``."""
    auc = float(roc_auc_score(y, p))
    rate, lift = top_decile_lift(y, p)
    return {
        "base_rate": round(float(y.mean()), 5),
        "auc": round(auc, 4),
        "auc_ci": auc_interval(auc, int(y.sum()), int(len(y) - y.sum())),
        "baseline_auc": round(float(roc_auc_score(y, baseline)), 4),
        "top_decile_lift": round(lift, 3),
        "top_decile_rate": round(rate, 4),
        "brier": round(float(brier_score_loss(y, p)), 5),
        "brier_base_rate": round(float(brier_score_loss(y, np.full(len(y), base_rate))), 5),
        "reliability": reliability(y, p),
    }


def backtest(
    conn: psycopg.Connection[Any],
    config: ChurnConfig,
    train_days: list[date],
    test_day: date,
    *,
    seed: int = 0,
) -> Backtest:
    """Train on ``train_days``' snapshots, score ``test_day``'s active customers, judge by what followed."""
    X, y = training_rows(conn, train_days, config)
    model = ChurnModel(config.model, seed).fit(X, y)
    test = consenting_features(conn, test_day, config)
    test = test.rows(active(test, config))
    truth = labels(conn, test, config)
    if truth.min() == truth.max():
        raise ValueError(f"the test day {test_day} has one outcome only; choose an earlier day")
    p = model.predict_proba(test.values)
    figures = evaluate(truth, p, float(y.mean()), -test.column("trips_per_week_4w"))
    return Backtest(
        train_days=[str(d) for d in train_days],
        test_day=str(test_day),
        train_rows=len(y),
        test_rows=len(truth),
        **figures,
    )
