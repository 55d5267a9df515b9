"""The churn configuration (``churn.toml``): label horizon, training snapshots, tier thresholds, model.

Loaded and checked once per run; an error names the entry and says what is wrong.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloud.settings_file import load_toml

#: the tiers. ``lapsed``: gone already (no trip and no service visit for longer than the horizon); ``quiet``:
#: silent for longer than ``active_days`` but not yet lapsed (the model learnt from active customers only, and
#: an in-car offer does not reach a car nobody drives); the risk tiers of the active customers
TIERS = ("lapsed", "quiet", "high", "medium", "low")
Tier = Literal["lapsed", "quiet", "high", "medium", "low"]


class ConfigError(ValueError):
    """A churn configuration that cannot be used; the message names the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tiers(_Strict):
    """Where the risk tiers of the active customers start; ``basis`` says what ``high`` and ``medium`` are.

    - ``"share"`` (shipped): shares of the day's active customers, riskiest first: ``high = 0.1`` is the
      riskiest tenth, ``medium = 0.2`` the next fifth. The audience keeps its size whatever the season's
      churn rate, and the backtest's top-decile lift is the high tier's own lift;
    - ``"base_rate"``: multiples of the model's training churn rate: ``high = 3`` is "at least three times as
      likely to leave as the average active customer";
    - ``"probability"``: calibrated probabilities.
    """

    basis: Literal["share", "base_rate", "probability"] = "probability"
    high: float = Field(gt=0, le=100)
    medium: float = Field(gt=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Tiers:
        if self.basis == "share":
            if self.high + self.medium > 1:
                raise ValueError(f"the shares high ({self.high}) and medium ({self.medium}) exceed 1")
            return self
        if self.medium >= self.high:
            raise ValueError(f"medium ({self.medium}) must be below high ({self.high})")
        if self.basis == "probability" and self.high >= 1:
            raise ValueError(f"high ({self.high}) must be a probability below 1 with basis = 'probability'")
        return self

    def thresholds(
        self, base_rate: float | None = None, active: np.ndarray | None = None
    ) -> tuple[float, float]:
        """The (high, medium) probability thresholds: ``base_rate`` (the model's) is needed with basis
        ``base_rate``, ``active`` (the day's probabilities of the active customers) with basis ``share``."""
        if self.basis == "probability":
            return self.high, self.medium
        if self.basis == "base_rate":
            if base_rate is None or not 0 < base_rate < 1:
                raise ValueError(
                    f"tiers relative to the base rate need the model's base rate, not {base_rate}"
                )
            return min(self.high * base_rate, 1.0), min(self.medium * base_rate, 1.0)
        if active is None:
            raise ValueError("tiers by share need the day's probabilities of the active customers")
        if len(active) == 0:
            return 1.0, 1.0
        ranked = np.sort(np.asarray(active, dtype=np.float64))[::-1]
        # the k-th riskiest customer's probability: ties with it join the tier (a few more, never fewer)
        high = max(1, math.ceil(self.high * len(ranked)))
        medium = min(len(ranked), high + math.ceil(self.medium * len(ranked)))
        return float(ranked[high - 1]), float(ranked[medium - 1])

    def of(self, probability: float, base_rate: float | None = None, active: np.ndarray | None = None) -> str:
        """The tier of one active customer's probability (:meth:`thresholds` says what else is needed)."""
        high, medium = self.thresholds(base_rate, active)
        if probability >= high:
            return "high"
        return "medium" if probability >= medium else "low"


class ModelSettings(_Strict):
    """Gradient boosting and its calibration."""

    n_estimators: int = Field(default=150, ge=10, le=2000)
    max_depth: int = Field(default=3, ge=1, le=8)
    learning_rate: float = Field(default=0.08, gt=0, le=1)
    min_samples_leaf: int = Field(default=20, ge=1, le=10_000)
    calibration_share: float = Field(default=0.3, gt=0.05, lt=0.9)
    calibration: Literal["sigmoid", "isotonic"] = "sigmoid"


class ChurnConfig(_Strict):
    """The whole configuration."""

    version: int = Field(ge=1)
    horizon_days: int = Field(default=30, ge=7, le=365)
    active_days: int = Field(default=30, ge=1, le=365)
    warranty_months: int = Field(default=36, ge=0, le=240)
    snapshots: int = Field(default=4, ge=1, le=24)
    snapshot_step_days: int = Field(default=14, ge=1, le=180)
    tiers: Tiers
    model: ModelSettings = ModelSettings()
    # the daily job fits a new model when its newest one learnt from days this much older than the scoring day
    retrain_after_days: int = Field(default=28, ge=1, le=365)
    # score days older than this are deleted by the daily job (with the models no kept score refers to)
    keep_days: int = Field(default=400, ge=30, le=3650)


def load_config(path: Path | None = None) -> ChurnConfig:
    """The configuration at ``path`` (default: the shipped ``churn.toml``)."""
    return load_toml(
        path, package="cloud.churn", filename="churn.toml", schema=ChurnConfig, error=ConfigError
    )
