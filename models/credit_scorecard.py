"""A points scorecard: binned inputs (credit_binning.py), a logistic regression on their WoE, points.

The target's 1 is the bad outcome (default); the regression gives the probability of default ``p``, and the
score is ``offset + factor * ln((1 - p) / p)``: the good:bad odds on a log scale, higher is better. With
``factor = pdo / ln 2`` and ``offset = base_score - factor * ln(base_odds)``, an applicant scoring
``base_score`` (600) has odds ``base_odds`` (50:1) and every ``pdo`` (20) points double the odds.

The score is a sum: base points ``offset - factor * intercept`` plus, per input, the points of the
applicant's bin, ``-factor * coefficient * WoE``. So each input's contribution can be read from the points
table, and the reason codes of an applicant are the inputs whose bins cost the most points against the best
bin of the same input (:func:`reason_codes`).

Inputs are chosen in two steps, each dropped one named with its reason: an input whose bins hardly separate
goods from bads (information value below ``MIN_INFORMATION_VALUE``) is left out; then, while the regression
gives an input a coefficient of the wrong sign (more points for bins with more defaults, which happens beside
a correlated input and makes the points table unexplainable), the worst such input is left out and the
regression refitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression

from .credit_binning import MAX_BINS, MIN_BIN_SHARE, InputBinning, fit_binnings, woe_matrix
from .customer_table import TableError

MIN_INFORMATION_VALUE = 0.02
REASONS = 3


@dataclass(frozen=True, slots=True)
class Scaling:
    """Points from odds: ``base_score`` at good:bad odds of ``base_odds``, ``pdo`` points to double them."""

    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0

    @property
    def factor(self) -> float:
        """Points per unit of log odds."""
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        """The score at odds 1:1."""
        return self.base_score - self.factor * math.log(self.base_odds)

    def score(self, probability: np.ndarray) -> np.ndarray:
        """The score of a probability of default."""
        p = np.asarray(probability, dtype=np.float64)
        return self.offset + self.factor * np.log((1 - p) / p)

    def odds(self, score: float) -> float:
        """The good:bad odds at a score."""
        return math.exp((score - self.offset) / self.factor)


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason code: the input, the applicant's bin, its points and the points lost to the best bin."""

    column: str
    bin: str
    points: float
    points_lost: float


@dataclass
class Scorecard:
    """The fitted scorecard. ``X`` given to its methods holds the columns of ``columns``, in that order."""

    binnings: tuple[InputBinning, ...]
    logistic: LogisticRegression
    scaling: Scaling
    dropped: dict[str, str] = field(default_factory=dict)  # input -> why it is not in the model

    @property
    def columns(self) -> tuple[str, ...]:
        """The model's inputs, in order."""
        return tuple(b.column for b in self.binnings)

    @property
    def coefficients(self) -> np.ndarray:
        """The regression's coefficient per input (on WoE; negative: more WoE, fewer defaults)."""
        return np.asarray(self.logistic.coef_[0], dtype=np.float64)

    @property
    def intercept(self) -> float:
        """The regression's intercept."""
        return float(self.logistic.intercept_[0])

    @property
    def base_points(self) -> float:
        """The points every applicant starts with."""
        return self.scaling.offset - self.scaling.factor * self.intercept

    def bin_points(self, j: int) -> np.ndarray:
        """The points of each bin of input ``j``."""
        points = -self.scaling.factor * self.coefficients[j] * self.binnings[j].woe
        return np.asarray(points, dtype=np.float64)

    def best_points(self, j: int) -> float:
        """The most points input ``j`` gives (over bins that held training rows)."""
        return float(max(p for p, b in zip(self.bin_points(j), self.binnings[j].bins, strict=True) if b.rows))

    def woe(self, X: np.ndarray) -> np.ndarray:
        """The WoE of each row per input."""
        return np.asarray(woe_matrix(self.binnings, X), dtype=np.float64)

    def probability(self, X: np.ndarray) -> np.ndarray:
        """The probability of default (scikit-learn's logistic regression on the WoE)."""
        return np.asarray(self.logistic.predict_proba(self.woe(X))[:, 1], dtype=np.float64)

    def points(self, X: np.ndarray) -> np.ndarray:
        """Each row's points per input (float64, one column per input)."""
        return np.asarray(self.woe(X) * (-self.scaling.factor * self.coefficients), dtype=np.float64)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Each row's score: base points plus the points of its bins."""
        return np.asarray(self.base_points + self.points(X).sum(axis=1), dtype=np.float64)

    def points_table(self) -> list[dict[str, object]]:
        """Per input and bin: the bin, its training rows and default rate, WoE and points (JSON-ready)."""
        table: list[dict[str, object]] = []
        for j, binning in enumerate(self.binnings):
            bins = [
                {
                    "bin": b.label, "rows": b.rows,
                    "default_rate": round(b.bads / b.rows, 4) if b.rows else None,
                    "woe": round(b.woe, 4), "points": round(float(p), 1),
                }
                for b, p in zip(binning.bins, self.bin_points(j), strict=True)
            ]  # fmt: skip
            table.append({
                "input": binning.column, "kind": "numeric" if binning.numeric else "categorical",
                "trend": binning.trend, "information_value": round(binning.information_value, 4),
                "coefficient": round(float(self.coefficients[j]), 4), "bins": bins,
            })  # fmt: skip
        return table


def fit_scorecard(
    X: np.ndarray,
    y: np.ndarray,
    columns: tuple[str, ...],
    numeric: int,
    scaling: Scaling,
    min_bin_share: float = MIN_BIN_SHARE,
    max_bins: int = MAX_BINS,
) -> Scorecard:
    """Bin every column, choose the inputs, fit the regression; :class:`TableError` if no input is left."""
    binnings = fit_binnings(X, y, columns, numeric, min_bin_share, max_bins)
    dropped: dict[str, str] = {}
    kept: list[int] = []
    for j, binning in enumerate(binnings):
        iv = binning.information_value
        if iv < MIN_INFORMATION_VALUE:
            dropped[binning.column] = f"not predictive: information value {iv:.4f} < {MIN_INFORMATION_VALUE}"
        else:
            kept.append(j)
    while kept:
        chosen = tuple(binnings[j] for j in kept)
        logistic = LogisticRegression(max_iter=1000).fit(woe_matrix(chosen, X[:, kept]), y)
        coefficients = logistic.coef_[0]
        wrong = [k for k, c in enumerate(coefficients) if c >= 0]  # WoE up means fewer defaults: c < 0
        if not wrong:
            return Scorecard(chosen, logistic, scaling, dropped)
        worst = max(wrong, key=lambda k: coefficients[k])
        dropped[binnings[kept[worst]].column] = (
            "left out: beside correlated inputs its coefficient had the wrong sign "
            f"({coefficients[worst]:+.3f})"
        )
        kept.pop(worst)
    reasons = "; ".join(f"{c}: {r}" for c, r in dropped.items())
    raise TableError(f"no input separates defaults from the others ({reasons})")


def reason_codes(card: Scorecard, X: np.ndarray, top: int = REASONS) -> list[list[Reason]]:
    """Per row, the ``top`` inputs that lost the most points against their best bin (none lost: no reason)."""
    points = card.points(X)
    best = np.array([card.best_points(j) for j in range(len(card.binnings))])
    lost = best - points
    bins = [b.bin_index(X[:, j]) for j, b in enumerate(card.binnings)]
    codes = []
    for i in range(len(X)):
        order = np.argsort(-lost[i], kind="stable")[:top]
        codes.append([
            Reason(card.columns[j], card.binnings[j].bins[bins[j][i]].label, round(float(points[i, j]), 1),
                   round(float(lost[i, j]), 1))
            for j in order
            if lost[i, j] > 1e-9
        ])  # fmt: skip
    return codes
