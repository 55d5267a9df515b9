"""How good a risk score is on held-out customers: ranking (ROC AUC with a bootstrap interval), the top
decile's precision and lift, calibration (Brier score against always predicting the base rate) and the lift
of each decile.

Deciles rank customers by risk, highest first, in ten parts whose sizes differ by at most one row; ties keep
the input order (a stable sort), so the table is the same on every run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score

DECILES = 10
BOOTSTRAP_RESAMPLES = 200


@dataclass(frozen=True, slots=True)
class Decile:
    """One tenth of the held-out customers by risk (1 = highest)."""

    decile: int
    rows: int
    positives: int
    rate: float
    lift: float
    mean_risk: float


@dataclass(frozen=True)
class RiskReport:
    """Held-out metrics of a risk score with their baselines."""

    roc_auc: float
    roc_auc_ci95: tuple[float, float]
    precision_at_top_decile: float
    top_decile_lift: float
    base_rate: float
    brier_score: float
    brier_baseline: float  # the Brier score of predicting the base rate for everyone
    rows: int
    positives: int
    deciles: tuple[Decile, ...]

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready values."""
        report = asdict(self)
        report["roc_auc_ci95"] = list(self.roc_auc_ci95)
        report["deciles"] = [asdict(d) for d in self.deciles]
        return report


def decile_table(truth: np.ndarray, risk: np.ndarray) -> tuple[Decile, ...]:
    """Rows, positives, positive rate and lift over the base rate per decile of risk."""
    order = np.argsort(-risk, kind="stable")
    base = float(truth.mean())
    table = []
    for number, part in enumerate(np.array_split(order, DECILES), start=1):
        positives = int(truth[part].sum())
        rate = positives / len(part) if len(part) else 0.0
        table.append(
            Decile(
                decile=number, rows=len(part), positives=positives, rate=round(rate, 6),
                lift=round(rate / base, 4) if base else 0.0,
                mean_risk=round(float(risk[part].mean()), 6) if len(part) else 0.0,
            )
        )  # fmt: skip
    return tuple(table)


def auc_interval(truth: np.ndarray, risk: np.ndarray, seed: int) -> tuple[float, float]:
    """95% bootstrap interval of the ROC AUC (resamples holding one class only are skipped)."""
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        pick = rng.integers(0, len(truth), len(truth))
        if 0 < truth[pick].sum() < len(pick):
            aucs.append(roc_auc_score(truth[pick], risk[pick]))
    low, high = np.quantile(aucs, [0.025, 0.975])
    return round(float(low), 4), round(float(high), 4)


def risk_report(truth: np.ndarray, risk: np.ndarray, seed: int) -> RiskReport:
    """The metrics of ``risk`` (probability of the positive class) against 0/1 ``truth``."""
    truth = np.asarray(truth, dtype=np.int64)
    risk = np.asarray(risk, dtype=np.float64)
    base = float(truth.mean())
    top = np.argsort(-risk, kind="stable")[: max(1, len(risk) // DECILES)]
    precision = float(truth[top].mean())
    return RiskReport(
        roc_auc=round(float(roc_auc_score(truth, risk)), 4),
        roc_auc_ci95=auc_interval(truth, risk, seed),
        precision_at_top_decile=round(precision, 4),
        top_decile_lift=round(precision / base, 4),
        base_rate=round(base, 4),
        brier_score=round(float(brier_score_loss(truth, risk)), 4),
        brier_baseline=round(base * (1 - base), 4),
        rows=len(truth),
        positives=int(truth.sum()),
        deciles=decile_table(truth, risk),
    )
