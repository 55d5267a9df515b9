"""The churn model: gradient-boosted trees, calibrated on rows they were not fitted on, explained per row.

- ``boost_``: scikit-learn's ``GradientBoostingClassifier`` (log loss) on ``1 - calibration_share`` of rows;
- ``calibrator_``: a monotone map from the trees' log-odds to a probability, fitted on the rows kept apart
  (Platt's sigmoid, a logistic regression on the log-odds; or isotonic regression). Boosted trees fitted to
  their own rows are over-confident; the map is learnt where they were not;
- :meth:`ChurnModel.contributions`: per customer and feature, the exact Shapley values of the trees'
  log-odds (tree SHAP, ``shap.TreeExplainer``, path-dependent): with the expected log-odds they add up to the
  customer's log-odds. The calibration is monotone: the features that raise the log-odds raise the
  probability.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from .config import ModelSettings

#: trees with more splits than this are explained row by row (their patterns would not fit a table)
_MAX_PATTERN_SPLITS = 16


class ChurnModel:
    """Calibrated gradient boosting with per-feature contributions (scikit-learn conventions)."""

    def __init__(self, settings: ModelSettings, seed: int = 0) -> None:
        self.settings = settings
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> ChurnModel:
        """Fit the trees on part of the rows and the calibration on the rest (stratified by label)."""
        y = np.asarray(y, dtype=np.int64)
        if len(np.unique(y)) < 2:
            raise ValueError("the training rows hold one class only: nobody churned, or everybody did")
        rng = np.random.default_rng(self.seed)
        calibrate = np.zeros(len(y), dtype=bool)
        for label in (0, 1):  # stratified, so that a rare churn is in both parts
            rows = np.flatnonzero(y == label)
            take = max(1, round(len(rows) * self.settings.calibration_share))
            calibrate[rng.choice(rows, size=min(take, len(rows) - 1), replace=False)] = True
        s = self.settings
        self.boost_ = GradientBoostingClassifier(
            n_estimators=s.n_estimators,
            max_depth=s.max_depth,
            learning_rate=s.learning_rate,
            # leaves of one or two rows let a rare churner's Newton step divide by almost nothing: log-odds
            # of 1e136 were seen on a 1,500-customer world (and wrecked the calibration after them)
            min_samples_leaf=s.min_samples_leaf,
            subsample=0.8,
            random_state=self.seed,
        ).fit(X[~calibrate], y[~calibrate])
        raw = self.boost_.decision_function(X[calibrate])
        if s.calibration == "isotonic":
            self.calibrator_: Any = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                raw, y[calibrate]
            )
        else:
            self.calibrator_ = LogisticRegression(C=1e6).fit(raw.reshape(-1, 1), y[calibrate])
        self.n_features_in_ = X.shape[1]
        return self

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        """The trees' raw score (log-odds of churn, before calibration)."""
        out: np.ndarray = self.boost_.decision_function(X)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability of churning within the horizon, one per row."""
        raw = self.log_odds(X)
        if isinstance(self.calibrator_, IsotonicRegression):
            p: np.ndarray = self.calibrator_.predict(raw)
        else:
            p = self.calibrator_.predict_proba(raw.reshape(-1, 1))[:, 1]
        clipped: np.ndarray = np.clip(p, 0.0, 1.0)
        return clipped

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per row and feature, the tree SHAP value of the trees' log-odds (rows x features).

        A tree's path-dependent SHAP values of a row depend on the row only through the way it goes at each
        of the tree's splits (no more than 2 ** splits patterns), so each small tree is explained once per
        pattern that occurs (``shap.TreeExplainer`` on one row of each) and the rows take their pattern's
        values: the same values as explaining every row (up to the order of the additions, 1e-14), several
        times faster at 100,000 rows."""
        import shap  # numba compiles on import (seconds): only where reasons are made

        ensemble = shap.TreeExplainer(self.boost_).model
        X = np.asarray(X, dtype=np.float64)
        if max(int(np.sum(t.children_left >= 0)) for t in ensemble.trees) > _MAX_PATTERN_SPLITS:
            values = shap.TreeExplainer(self.boost_).shap_values(X, check_additivity=False)
            out: np.ndarray = np.asarray(values, dtype=np.float64).reshape(len(X), self.n_features_in_)
            return out
        # the values the trees compare, as the explainer sees them (cast to its input type)
        x = np.asarray(X, dtype=ensemble.input_dtype).astype(np.float64)
        missing = np.isnan(x)
        n = len(x)
        out = np.zeros((n, self.n_features_in_))
        for tree in ensemble.trees:
            splits = np.flatnonzero(tree.children_left >= 0)
            pattern = np.zeros(n, dtype=np.int64)
            for bit, node in enumerate(splits):
                j = tree.features[node]
                left = np.where(
                    missing[:, j],
                    tree.children_default[node] == tree.children_left[node],
                    x[:, j] <= tree.thresholds[node],
                )
                pattern |= left.astype(np.int64) << bit
            first = np.full(1 << len(splits), -1, dtype=np.int64)
            first[pattern[::-1]] = np.arange(n - 1, -1, -1)  # the first row of each pattern
            seen = np.flatnonzero(first >= 0)
            slot = np.zeros(len(first), dtype=np.int64)
            slot[seen] = np.arange(len(seen))
            phi = shap.TreeExplainer([tree]).shap_values(x[first[seen]], check_additivity=False)
            out += np.asarray(phi, dtype=np.float64).reshape(len(seen), self.n_features_in_)[slot[pattern]]
        return out

    def expected_log_odds(self) -> float:
        """The log-odds every contribution starts from (the trees' mean over their training background)."""
        import shap

        return float(np.ravel(shap.TreeExplainer(self.boost_).expected_value)[0])

    def dumps(self) -> bytes:
        """The fitted model as bytes (pickle: only ever loaded from the churn job's own table)."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes) -> ChurnModel:
        """A model :meth:`dumps` made."""
        model = pickle.loads(data)  # trusted: written by this package into churn_models only
        assert isinstance(model, ChurnModel)
        return model


def top_reasons(
    contributions: np.ndarray, values: np.ndarray, names: tuple[str, ...], k: int = 3
) -> list[list[dict[str, float | str]]]:
    """Per row, up to ``k`` features with the largest positive contributions (those that raised the risk),
    largest first, with the feature's value and its contribution in log-odds."""
    order = np.argsort(-contributions, axis=1)[:, :k]
    out = []
    for r in range(len(contributions)):
        reasons: list[dict[str, float | str]] = []
        for j in order[r]:
            c = float(contributions[r, j])
            if c <= 0:
                break
            reasons.append(
                {"feature": names[j], "value": round(float(values[r, j]), 4), "contribution": round(c, 4)}
            )
        out.append(reasons)
    return out
