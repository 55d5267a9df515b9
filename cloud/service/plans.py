"""Service plans: when a model is due for service, when to remind again, which fault codes are severe.

The configuration is TOML (the shipped ``plans.toml`` documents every key): ``[default]`` and
``[models."NAME"]`` with ``interval_km`` and ``interval_months``; ``[reminders]`` with ``renotify_days``,
``quiet_hours``, ``caps`` (cloud/push/spec.py's own models, so reminders keep them as campaigns do),
``message_ttl_hours`` and the fallback ``booking_url``; ``[faults]`` with severe code ``prefixes`` and
``codes``. The whole file is checked at load: every problem with its place, an unknown key included.

Errors::

    PlanError (ValueError)     the file cannot be read, is not TOML, or fails a check (the message says where)
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cloud.push.spec import Caps, LocalHours
from cloud.settings_file import load_toml

#: the form of a fault code (SAE J2012, as the wire contract's ``DtcCode``) and of a prefix of one
_CODE = re.compile(r"^[PCBU][0-3][0-9A-F]{3}$")
_PREFIX = re.compile(r"^[PCBU]([0-3][0-9A-F]{0,3})?$")


class PlanError(ValueError):
    """A service plan file that cannot be used; the message says what and where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(_Strict):
    """A service interval: due at whichever comes first."""

    interval_km: float = Field(gt=0, le=200_000)
    interval_months: int = Field(ge=1, le=120)

    @property
    def interval(self) -> timedelta:
        """The interval in time (a month counted as 30.44 days: the mean Gregorian month)."""
        return timedelta(days=30.44 * self.interval_months)


class Reminders(_Strict):
    """How reminders are sent: again after ``renotify_days`` while not booked, as campaigns keep hours and
    caps."""

    renotify_days: list[float] = Field(default=[7.0, 14.0], max_length=10)
    quiet_hours: LocalHours = LocalHours.model_validate({"from": "21:00", "to": "09:00"})
    caps: Caps = Caps()
    message_ttl_hours: float = Field(default=72.0, gt=0, le=24 * 30)
    booking_url: str = Field(pattern=r"^https?://", max_length=500)

    @field_validator("renotify_days")
    @classmethod
    def _increasing(cls, days: list[float]) -> list[float]:
        if any(d <= 0 for d in days) or days != sorted(set(days)):
            raise ValueError("renotify_days must be positive and strictly increasing, e.g. [7, 14]")
        return days

    @field_validator("booking_url")
    @classmethod
    def _placeholders(cls, url: str) -> str:
        unknown = set(re.findall(r"{([^}]*)}", url)) - {"dealer_id", "vehicle_id"}
        if unknown:
            raise ValueError(f"booking_url may hold {{dealer_id}} and {{vehicle_id}}, not {sorted(unknown)}")
        return url

    @property
    def attempts(self) -> int:
        """Reminders per due episode at most: the first and one per ``renotify_days``."""
        return 1 + len(self.renotify_days)


class Faults(_Strict):
    """Which fault codes are severe: by prefix (``P03``: misfires) or by code."""

    prefixes: list[str] = Field(default=[], max_length=200)
    codes: list[str] = Field(default=[], max_length=2000)

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _PREFIX.match(v)]
        if bad:
            raise ValueError(f"not a fault code prefix (P, C, B or U, then up to 4 of its digits): {bad}")
        return values

    @field_validator("codes")
    @classmethod
    def _codes(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _CODE.match(v)]
        if bad:
            raise ValueError(f"not a fault code (e.g. P0420): {bad}")
        return values

    def severe(self, code: str) -> bool:
        """Whether ``code`` is severe."""
        return code in self.codes or any(code.startswith(p) for p in self.prefixes)


class ServicePlans(_Strict):
    """The whole file: intervals per model, reminders, severe faults."""

    default: Interval
    models: dict[str, Interval] = {}
    reminders: Reminders
    faults: Faults = Faults()

    @model_validator(mode="after")
    def _named(self) -> ServicePlans:
        empty = [m for m in self.models if not m.strip()]
        if empty:
            raise ValueError("a model needs a name")
        return self

    def interval(self, model: str | None) -> Interval:
        """The plan of ``model``, or the default one."""
        return self.models.get(model or "", self.default)


def load_plans(path: Path | None = None) -> ServicePlans:
    """Read ``path`` (default: the shipped ``plans.toml``) and check it whole."""
    return load_toml(
        path, package="cloud.service", filename="plans.toml", schema=ServicePlans, error=PlanError
    )
