"""The upgrade configuration (``upgrade.toml``): label horizon, what counts as new-model content, training
snapshots, model. Loaded and checked once per run; an error names the entry and says what is wrong."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cloud.churn.config import ModelSettings
from cloud.settings_file import load_toml


class ConfigError(ValueError):
    """An upgrade configuration that cannot be used; the message names the entry."""


class UpgradeConfig(BaseModel):
    """The whole configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    horizon_days: int = Field(default=90, ge=14, le=730)
    warranty_months: int = Field(default=36, ge=0, le=240)
    new_model_kinds: tuple[str, ...] = ("test_drive",)
    new_model_tags: tuple[str, ...] = ("new_model",)
    snapshots: int = Field(default=6, ge=1, le=24)
    snapshot_step_days: int = Field(default=14, ge=1, le=180)
    # the daily job fits a new model when its newest one learnt from days this much older than the scoring day
    retrain_after_days: int = Field(default=28, ge=1, le=365)
    # score days older than this are deleted by the daily job (with the models no kept score refers to)
    keep_days: int = Field(default=400, ge=30, le=3650)
    model: ModelSettings = ModelSettings()


def load_config(path: Path | None = None) -> UpgradeConfig:
    """The configuration at ``path`` (default: the shipped ``upgrade.toml``)."""
    return load_toml(
        path, package="cloud.upgrade", filename="upgrade.toml", schema=UpgradeConfig, error=ConfigError
    )
