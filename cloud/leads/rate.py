"""Rating: how promising a cleaned lead is, as a score 0-100, a grade A/B/C and the reasons, strongest first.

The score is a sum of points (no model: a dealer must be able to read why a lead is an A) from

- intent: order > quote > test drive > service > brochure > newsletter > unknown;
- recency: full points at creation, halving every ``recency_half_life_hours``;
- channel: how it reached us (the car, the showroom and the call centre high; a purchased list low);
- a model of interest given; contactable by phone (more than by e-mail only); consent to be contacted (a
  refusal takes points off and caps the grade at ``no_consent_max_grade``);
- optional signals in [0, 1] each with a weight: ``upgrade_probability`` (the upgrade-intent score),
  ``service_due`` (0/1), ``engagement``.

The sum is clipped to [0, 100]; the grade is A from ``grade_a``, B from ``grade_b``, else C.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloud.leads.model import Lead, Rating


class RatingSettings(BaseModel):
    """Points and grade thresholds. The defaults put a fresh in-car test-drive request with a phone, a model
    and consent near 88 (A) and a month-old newsletter sign-up from a purchased list near 9 (C)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Intent leads (40 at most) because what a person asked for predicts a sale best: an order or quote
    # request is a buyer, a newsletter sign-up a reader.
    intent_points: dict[str, float] = Field(
        default_factory=lambda: {
            "order": 40.0,
            "quote": 35.0,
            "test_drive": 30.0,
            "service": 20.0,
            "brochure": 12.0,
            "newsletter": 5.0,
            "unknown": 0.0,
        }
    )
    # Recency second: dealers convert leads called within a day several times better than week-old ones; a
    # 48-hour half-life keeps a lead of yesterday at 70 % and a lead of last week at 9 %.
    recency_points: float = Field(default=20.0, ge=0)
    recency_half_life_hours: float = Field(default=48.0, gt=0)
    # Channel: a person in the car, at the showroom or on the phone chose to ask; web and events are
    # browsing; a bought list never asked at all.
    channel_points: dict[str, float] = Field(
        default_factory=lambda: {
            "in_car": 15.0,
            "showroom": 15.0,
            "call_centre": 15.0,
            "dealer": 15.0,
            "website": 8.0,
            "app": 8.0,
            "wechat": 8.0,
            "autoshow": 8.0,
            "event": 8.0,
            "campaign": 5.0,
            "purchased_list": 0.0,
        }
    )
    other_channel_points: float = 4.0  # a channel not in the table: known little about
    model_interest_points: float = 8.0
    phone_points: float = 10.0  # a phone call reaches a person the same day
    email_only_points: float = 4.0
    consent_points: float = 5.0
    no_consent_points: float = -25.0
    # A person asked who said no may not be called: whatever else the lead has, it is graded no better than
    # this (the points still show how keen they were, for when consent is asked again).
    no_consent_max_grade: Literal["A", "B", "C"] = "C"
    signal_points: dict[str, float] = Field(
        default_factory=lambda: {"upgrade_probability": 15.0, "service_due": 8.0, "engagement": 10.0}
    )
    # A from 70: intent, recency and a strong channel together, or a strong intent with good signals;
    # B from 45: a real request that is older or came from the web; below, C (nurture, do not call first).
    grade_a: float = Field(default=70.0, ge=0, le=100)
    grade_b: float = Field(default=45.0, ge=0, le=100)
    max_reasons: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> RatingSettings:
        if self.grade_b > self.grade_a:
            raise ValueError(f"grade_b ({self.grade_b}) must not exceed grade_a ({self.grade_a})")
        return self


_DEFAULT = RatingSettings()

_INTENT_TEXT = {
    "order": "wants to order",
    "quote": "asked for a quote",
    "test_drive": "asked for a test drive",
    "service": "asked for service",
    "brochure": "asked for a brochure",
    "newsletter": "signed up for the newsletter",
    "unknown": "intent unknown",
}
_SIGNAL_TEXT = {
    "upgrade_probability": "upgrade intent {value:.0%}",
    "service_due": "service due",
    "engagement": "engagement {value:.0%}",
}


def _age(hours: float) -> str:
    if hours < 1:
        return "created less than an hour ago"
    if hours < 48:
        count = int(hours)
        return f"created {count} hour{'s' if count != 1 else ''} ago"
    return f"created {int(hours // 24)} days ago"


def rate(
    lead: Lead,
    *,
    now: datetime,
    signals: Mapping[str, float] | None = None,
    settings: RatingSettings | None = None,
) -> Rating:
    """Score, grade and reasons for one lead at ``now`` (aware); the same input gives the same rating.

    ``signals`` are optional values in [0, 1] (clipped) named in ``settings.signal_points``; an unknown name
    or a value that is not a finite number raises ``ValueError`` (a misspelt signal must not score 0 unseen).
    """
    s = settings or _DEFAULT
    raw = lead.raw
    parts: list[tuple[float, str]] = []

    parts.append((s.intent_points.get(raw.intent, 0.0), _INTENT_TEXT.get(raw.intent, raw.intent)))

    # a created_at slightly ahead of now (clock skew) counts as brand new, not as a bonus
    hours = max(0.0, (now - raw.created_at).total_seconds() / 3600.0)
    parts.append((s.recency_points * 0.5 ** (hours / s.recency_half_life_hours), _age(hours)))

    channel = raw.channel.strip().lower()
    parts.append(
        (s.channel_points.get(channel, s.other_channel_points), f"came via {channel.replace('_', ' ')}")
    )

    if lead.model_interest:
        parts.append((s.model_interest_points, f"interested in {lead.model_interest}"))
    if lead.phone:
        parts.append((s.phone_points, "reachable by phone"))
    elif lead.email:
        parts.append((s.email_only_points, "reachable by e-mail only"))
    if raw.consent_contact is True:
        parts.append((s.consent_points, "agreed to be contacted"))
    elif raw.consent_contact is False:
        parts.append((s.no_consent_points, "did not agree to be contacted"))

    for name, value in sorted((signals or {}).items()):
        if name not in s.signal_points:
            raise ValueError(f"unknown signal {name!r}; known: {', '.join(sorted(s.signal_points))}")
        if not math.isfinite(value):
            raise ValueError(f"signal {name!r} is {value}, not a finite number")
        clipped = min(1.0, max(0.0, float(value)))
        text = _SIGNAL_TEXT.get(name, name.replace("_", " ") + " {value:.2f}").format(value=clipped)
        parts.append((s.signal_points[name] * clipped, text))

    score = round(min(100.0, max(0.0, sum(points for points, _ in parts))), 1)
    grade: Literal["A", "B", "C"] = "A" if score >= s.grade_a else "B" if score >= s.grade_b else "C"
    if raw.consent_contact is False:
        grade = max(grade, s.no_consent_max_grade)  # "C" > "B" > "A": the worse of the two
    # strongest first by size (a penalty is a strong reason too); the text breaks ties so the order is fixed
    shown = sorted((p for p in parts if round(p[0]) != 0), key=lambda p: (-abs(p[0]), p[1]))
    reasons = tuple(f"{text} ({points:+.0f})" for points, text in shown[: s.max_reasons])
    return Rating(grade=grade, score=score, reasons=reasons)
