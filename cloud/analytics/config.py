"""The portrait configuration (``portrait.toml``): features, tags, clustering, preference weights, segments.

Loaded and checked once per run; every error names the entry and says what is wrong. The SQL of features is
trusted configuration (like a migration): it is checked against the database by :func:`check_sql` before a
run computes anything, so a typo fails with PostgreSQL's message and the feature's name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloud.settings_file import load_toml

_NAME = r"^[a-z][a-z0-9_]{0,62}$"

#: per source: the FROM clause (with a customer_id column) its features aggregate over
SOURCES: dict[str, str] = {
    "trips": "trips t JOIN vehicles v ON v.vehicle_id = t.vehicle_id",
    "service_visits": "service_visits s JOIN vehicles v ON v.vehicle_id = s.vehicle_id",
    "complaints": "complaints v",
    "interactions": (
        "interactions i JOIN identity_links v ON v.account_id = i.account_id AND v.undone_at IS NULL"
    ),
}


class ConfigError(ValueError):
    """A portrait configuration that cannot be used; the message names the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One data dimension: an aggregate over a source, per customer."""

    sql: str = Field(min_length=1)
    source: Literal["trips", "service_visits", "complaints", "interactions"] = "trips"
    default: float | None = None
    description: str = ""


class Condition(_Strict):
    """``feature op threshold``; the score reaches 1 at ``full``."""

    feature: str
    op: Literal[">=", "<="]
    threshold: float
    full: float

    @model_validator(mode="after")
    def _direction(self) -> Condition:
        if (self.op == ">=" and self.full <= self.threshold) or (
            self.op == "<=" and self.full >= self.threshold
        ):
            raise ValueError(
                f"full ({self.full}) must lie beyond the threshold ({self.threshold}) in the {self.op} way"
            )
        return self


class Tag(_Strict):
    """A tag: conditions that must all hold, and the least number of trips that counts as evidence."""

    description: str = ""
    min_trips: int = Field(default=0, ge=0)
    conditions: list[Condition] = Field(min_length=1)


class Clustering(_Strict):
    """Which features clustering uses and the range of k tried."""

    features: list[str] = Field(min_length=2)
    min_trips: int = Field(default=1, ge=0)
    k_range: tuple[int, int] = (2, 8)
    sample: int = Field(default=5000, ge=100)


class Preferences(_Strict):
    """How much each interaction kind weighs in r(u, i)."""

    weights: dict[str, float] = Field(default_factory=lambda: {"view": 1.0, "comment": 2.0, "collect": 3.0})


class Segment(_Strict):
    """A named segment: a boolean expression over tags and attributes (see cloud/analytics/segments.py)."""

    description: str = ""
    where: dict[str, Any]


class PortraitConfig(_Strict):
    """The whole configuration, cross-checked: tags and clustering name known features."""

    version: int = Field(ge=1)
    features: dict[str, Feature]
    tags: dict[str, Tag] = Field(default_factory=dict)
    clustering: Clustering
    preferences: Preferences = Preferences()
    segments: dict[str, Segment] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> PortraitConfig:
        for kind, names in (("feature", self.features), ("tag", self.tags), ("segment", self.segments)):
            bad = [n for n in names if not re.match(_NAME, n)]
            if bad:
                raise ValueError(f"{kind} names must be lower_snake_case: {bad}")
        for name, tag in self.tags.items():
            unknown = [c.feature for c in tag.conditions if c.feature not in self.features]
            if unknown:
                raise ValueError(f"tag {name!r} uses unknown feature(s) {unknown}")
        unknown = [f for f in self.clustering.features if f not in self.features]
        if unknown:
            raise ValueError(f"clustering uses unknown feature(s) {unknown}")
        if "trips" not in self.features:
            raise ValueError(
                "a feature named 'trips' (the count of trips) is required: tags need their support"
            )
        return self


def load_config(path: Path | None = None) -> PortraitConfig:
    """Read ``path`` (default: the shipped ``portrait.toml``) and check it."""
    return load_toml(
        path, package="cloud.analytics", filename="portrait.toml", schema=PortraitConfig, error=ConfigError
    )


def check_sql(conn: psycopg.Connection[tuple[object, ...]], config: PortraitConfig) -> None:
    """Plan every feature's SQL against the database; a broken one raises :class:`ConfigError` by name."""
    for name, feature in config.features.items():
        try:
            with conn.transaction():
                conn.execute(
                    f"EXPLAIN SELECT v.customer_id, ({feature.sql}) FROM {SOURCES[feature.source]}"
                    " GROUP BY v.customer_id"
                )
        except psycopg.Error as exc:
            raise ConfigError(f"feature {name!r}: {str(exc).strip().splitlines()[0]}") from exc
