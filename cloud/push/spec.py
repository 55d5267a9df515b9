"""A campaign's definition, validated whole before anything is stored or sent.

A campaign is JSON (a file for the CLI, a body for the API)::

    {"campaign_id": "winter-tyres-2026", "name": "Winter tyres",
     "audience": {"segment": "family_suv"},            # or {"where": <segment expression>}
     "arms": [{"name": "personalized", "content": {"recommended": "personalized"}},
              {"name": "relevance", "content": {"recommended": "popularity"}},
              {"name": "fixed", "content": {"item": "ACC-TYRES-W"}, "share": 1}],
     "holdout_share": 0.1,
     "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-12-15T00:00:00Z",
     "quiet_hours": {"from": "21:00", "to": "09:00"},    # the car's local time
     "caps": {"per_day": 1, "per_week": 3},              # per customer, across every campaign
     "message_ttl_hours": 48, "priority": 10,
     "channels": ["push"],                               # and/or "webhook" with "webhook_url"
     "attribution_days": 14}

A retention campaign (``"objective": "retention"``, cloud/push/retention.py) is measured by the churn of its
audience instead: ``"retention": {"days": 60, "silent_days": 30, "active_days": 7,
"cost_per_offer": 5.0, "value_per_retained": 800.0}`` (all optional).

Arms split the customers who are neither in the global control group nor in the holdout, by ``share``
(weights, equal by default). An arm shows one catalogue item to everyone, or fills a "recommended for you"
slot per customer with a recommender (``random`` is the control arm of a recommender comparison).
What the database must confirm (the segment exists, items exist and are valid during the campaign, the
schedule is not over) is checked by :func:`check_against_database`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

import psycopg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from cloud.analytics.segments import SegmentError, compile_expression

#: the recommenders an arm can fill its slot with (cloud/push/content.py)
RECOMMENDERS = ("popularity", "personalized", "itemknn", "als", "random")
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class SpecError(ValueError):
    """A campaign that cannot run; the message says what and where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Audience(_Strict):
    """Who the campaign is for: a stored segment, or an expression over tags and attributes."""

    segment: str | None = Field(default=None, min_length=1, max_length=128)
    where: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> Audience:
        if (self.segment is None) == (self.where is None):
            raise ValueError("an audience is either {'segment': NAME} or {'where': EXPRESSION}")
        if self.where is not None:
            try:
                compile_expression(self.where, [])
            except SegmentError as exc:
                raise ValueError(str(exc)) from exc
        return self


class Content(_Strict):
    """What an arm shows: one catalogue item, or a recommender's top item per customer."""

    item: str | None = Field(default=None, min_length=1, max_length=128)
    recommended: Literal["popularity", "personalized", "itemknn", "als", "random"] | None = None

    @model_validator(mode="after")
    def _one(self) -> Content:
        if (self.item is None) == (self.recommended is None):
            raise ValueError("content is either {'item': ID} or {'recommended': ALGORITHM}")
        return self


class Arm(_Strict):
    """One variant of the campaign and its share of the treated customers."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    content: Content
    share: float = Field(default=1.0, gt=0, le=1000)

    @field_validator("name")
    @classmethod
    def _reserved(cls, name: str) -> str:
        if name in ("holdout", "global_control", "ineligible"):
            raise ValueError(f"{name!r} is the name of a group every campaign has; name the arm otherwise")
        return name


class LocalHours(_Strict):
    """A span of local clock time, ``from`` inclusive, ``to`` exclusive; it may wrap midnight."""

    from_: time = Field(alias="from")
    to: time

    def contains(self, t: time) -> bool:
        """Whether the local time ``t`` falls in the span."""
        if self.from_ <= self.to:
            return self.from_ <= t < self.to
        return t >= self.from_ or t < self.to


class Caps(_Strict):
    """How many pushes one customer may get, across every campaign, per local day and per 7 local days."""

    per_day: int = Field(default=1, ge=1, le=50)
    per_week: int = Field(default=3, ge=1, le=200)


class RetentionSettings(_Strict):
    """How a retention campaign's effect on churn is measured (cloud/push/retention.py): among the customers
    active when assigned (a trip or a service visit in the ``active_days`` before), one churned when neither
    a trip nor a service visit falls in the last ``silent_days`` of the ``days`` after the assignment; money
    when both a cost per offer and a value per retained customer are given."""

    # churned = silent for as long as the churn label's horizon (cloud/churn/churn.toml, 30 days), at the end
    # of a window twice as long: a shorter silence counts light drivers (a trip every two or three weeks) as
    # leavers in both groups alike and drowns the difference
    days: int = Field(default=60, ge=7, le=365)
    silent_days: int = Field(default=30, ge=1, le=365)
    active_days: int = Field(default=7, ge=1, le=365)
    cost_per_offer: float | None = Field(default=None, ge=0, le=1e6)
    value_per_retained: float | None = Field(default=None, ge=0, le=1e9)

    @model_validator(mode="after")
    def _inside(self) -> RetentionSettings:
        if self.silent_days > self.days:
            raise ValueError(f"silent_days ({self.silent_days}) cannot exceed days ({self.days})")
        return self


class CampaignSpec(_Strict):
    """A campaign as the marketer defines it (see the module docstring)."""

    campaign_id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=200)
    audience: Audience
    arms: list[Arm] = Field(min_length=1, max_length=10)
    holdout_share: float = Field(default=0.10, ge=0.0, le=0.5)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    quiet_hours: LocalHours = LocalHours.model_validate({"from": "21:00", "to": "09:00"})
    caps: Caps = Caps()
    message_ttl_hours: float = Field(default=48.0, gt=0, le=24 * 30)
    priority: int = Field(default=0, ge=-1000, le=1000)
    channels: list[Literal["push", "webhook"]] = Field(default=["push"], min_length=1)
    webhook_url: str | None = Field(default=None, max_length=500)
    attribution_days: float = Field(default=14.0, gt=0, le=180)
    objective: Literal["conversion", "retention"] = "conversion"
    retention: RetentionSettings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        if self.retention is not None and self.objective != "retention":
            raise ValueError('retention settings need "objective": "retention"')
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ: {names}")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("a channel is named twice")
        if "webhook" in self.channels and not (
            self.webhook_url and re.match(r"^https?://", self.webhook_url)
        ):
            raise ValueError("the webhook channel needs webhook_url (http:// or https://)")
        return self

    def retention_settings(self) -> RetentionSettings | None:
        """How the churn effect is measured: None unless the objective is retention (defaults then)."""
        if self.objective != "retention":
            return None
        return self.retention or RetentionSettings()

    def arm_shares(self) -> list[tuple[str, float]]:
        """(arm, share of the treated customers) with the shares normalised to sum to 1."""
        total = sum(a.share for a in self.arms)
        return [(a.name, a.share / total) for a in self.arms]

    def arm(self, name: str) -> Arm:
        """The arm called ``name``."""
        return next(a for a in self.arms if a.name == name)

    @property
    def message_ttl(self) -> timedelta:
        """How long a push stays valid after it is sent."""
        return timedelta(hours=self.message_ttl_hours)


def parse_spec(document: Any) -> CampaignSpec:
    """Validate a campaign document; :class:`SpecError` lists every problem with its place."""
    from pydantic import ValidationError

    from edge_agent.protocol import format_validation_error

    try:
        return CampaignSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError(f"campaign refused: {format_validation_error(exc)}") from exc


def check_against_database(
    conn: psycopg.Connection[Any], spec: CampaignSpec, now: datetime | None = None
) -> None:
    """Refuse, before anything is stored or sent, a campaign whose schedule is over, whose segment is unknown
    or empty, or whose items are unknown or not valid at any time during the campaign."""
    now = now or datetime.now(UTC)
    if spec.ends_at <= now:
        raise SpecError(f"the campaign's schedule is over: it ended at {spec.ends_at.isoformat()}")
    if spec.audience.segment is not None:
        row = conn.execute("SELECT size FROM segments WHERE name = %s", (spec.audience.segment,)).fetchone()
        if row is None:
            known = [r[0] for r in conn.execute("SELECT name FROM segments ORDER BY name LIMIT 20")]
            raise SpecError(
                f"unknown segment {spec.audience.segment!r}; segments: {', '.join(known) or 'none'}"
            )
    if audience_size(conn, spec) == 0:
        raise SpecError("the audience is empty: no customer matches it")
    for arm in spec.arms:
        item = arm.content.item
        if item is None:
            continue
        row = conn.execute(
            "SELECT valid_from, valid_until FROM content_items WHERE item_id = %s", (item,)
        ).fetchone()
        if row is None:
            raise SpecError(f"arm {arm.name!r}: unknown catalogue item {item!r}")
        valid_from, valid_until = row
        start = max(spec.starts_at, now)
        if valid_until is not None and valid_until <= start:
            raise SpecError(f"arm {arm.name!r}: item {item!r} expired at {valid_until.isoformat()}")
        if valid_from is not None and valid_from >= spec.ends_at:
            raise SpecError(f"arm {arm.name!r}: item {item!r} is valid only from {valid_from.isoformat()}")


def audience_sql(spec: CampaignSpec) -> tuple[str, list[object]]:
    """A query of the audience's customer ids (sorted) and its parameters."""
    if spec.audience.segment is not None:
        return (
            "SELECT customer_id FROM segment_members WHERE segment = %s ORDER BY customer_id",
            [spec.audience.segment],
        )
    params: list[object] = []
    where = compile_expression(spec.audience.where, params)
    return f"SELECT c.customer_id FROM customers c WHERE {where} ORDER BY c.customer_id", params


def audience_size(conn: psycopg.Connection[Any], spec: CampaignSpec) -> int:
    """How many customers the audience holds now."""
    query, params = audience_sql(spec)
    row = conn.execute(f"SELECT count(*) FROM ({query}) a", params).fetchone()
    return int(row[0]) if row else 0
