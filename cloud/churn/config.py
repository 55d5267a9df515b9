"""The churn configuration (``churn.toml``): label horizon, training snapshots, tier thresholds, model.

Loaded and checked once per run; an error names the entry and says what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloud.settings_file import load_toml


class ConfigError(ValueError):
    """A churn configuration that cannot be used; the message names the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tiers(_Strict):
    """Probability thresholds: ``high`` and above is high, ``medium`` and above medium, the rest low."""

    high: float = Field(gt=0, lt=1)
    medium: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> Tiers:
        if self.medium >= self.high:
            raise ValueError(f"medium ({self.medium}) must be below high ({self.high})")
        return self

    def of(self, probability: float) -> str:
        """The tier of one probability."""
        if probability >= self.high:
            return "high"
        return "medium" if probability >= self.medium else "low"


class ModelSettings(_Strict):
    """Gradient boosting and its calibration."""

    n_estimators: int = Field(default=150, ge=10, le=2000)
    max_depth: int = Field(default=3, ge=1, le=8)
    learning_rate: float = Field(default=0.08, gt=0, le=1)
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


def load_config(path: Path | None = None) -> ChurnConfig:
    """The configuration at ``path`` (default: the shipped ``churn.toml``)."""
    return load_toml(
        path, package="cloud.churn", filename="churn.toml", schema=ChurnConfig, error=ConfigError
    )
