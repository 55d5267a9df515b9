"""Which dealer gets a lead: rules from configuration (``routing.toml``), tried in order; no I/O here.

A rule has a name, a ``when`` (every condition given must hold: the lead's source, channel, grade, intent,
region, model of interest) and a target: the dealer of the customer's car (``to = "customer_dealer"``), named
dealers (``dealers = [...]``), or any dealer of a ``role`` (showroom sales or the call-centre team), by
default in the lead's region (``match_region``) and, when ``require_model_expertise``, one that sells the
model asked about. Among a rule's candidates the lead goes to the one with the largest weight::

    weight = conversion x expertise x room

- ``conversion``: the dealer's orders per assigned lead over the last ``conversion_days``, smoothed toward
  the network's rate by ``conversion_prior`` leads (a new dealer starts at the network's rate, not at 0 or 1);
- ``expertise``: ``expertise_weight`` when the dealer sells the model of interest (and the rule prefers it);
- ``room``: the share of today's capacity still free (1 without a capacity). A dealer at capacity is not a
  candidate: the next rule is tried.

So the busiest good dealers fill up and the next-best take over, deterministically (ties: dealer id). A lead
no rule places stays ``unassigned`` with the reason. Every assignment names the rule and why. The deadline
for the first contact depends on the lead's grade (``[deadlines]``, hours).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloud.settings_file import load_toml


class RoutingError(ValueError):
    """A routing configuration that cannot be used; the message names the entry."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class When(_Strict):
    """Conditions on the lead; each one given must hold (lists: any of)."""

    sources: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    grades: tuple[Literal["A", "B", "C"], ...] | None = None
    intents: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None


class Rule(_Strict):
    """One routing rule (see the module docstring)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    when: When = When()
    to: Literal["customer_dealer"] | None = None
    dealers: tuple[str, ...] | None = None
    role: Literal["showroom", "call_centre"] | None = None
    match_region: bool = True
    require_model_expertise: bool = False
    prefer_model_expertise: bool = True

    @model_validator(mode="after")
    def _one_target(self) -> Rule:
        if self.to is not None and (self.dealers is not None or self.role is not None):
            raise ValueError(f"rule {self.name}: 'to' stands alone (no 'dealers' or 'role' beside it)")
        return self


class Deadlines(_Strict):
    """Hours until the first contact is due, per grade."""

    A: float = Field(default=2, gt=0, le=24 * 30)
    B: float = Field(default=24, gt=0, le=24 * 30)
    C: float = Field(default=72, gt=0, le=24 * 30)


class RoutingConfig(_Strict):
    """The whole ``routing.toml``."""

    version: int = Field(ge=1)
    deadlines: Deadlines = Deadlines()
    conversion_days: int = Field(default=90, ge=7, le=730)
    conversion_prior: float = Field(default=20, ge=0, le=10_000)
    expertise_weight: float = Field(default=1.5, ge=1, le=10)
    rules: tuple[Rule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> RoutingConfig:
        names = [r.name for r in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"rule names must be unique: {', '.join(twice)}")
        return self

    def named_dealers(self) -> set[str]:
        """Every dealer id a rule names (checked against the database when loaded there)."""
        return {d for r in self.rules for d in (r.dealers or ())}

    def check_dealers(self, known: Collection[str]) -> None:
        """Refuse a configuration naming a dealer not in ``known``."""
        unknown = sorted(self.named_dealers() - set(known))
        if unknown:
            rules = [r.name for r in self.rules if set(r.dealers or ()) & set(unknown)]
            raise RoutingError(f"rules {', '.join(rules)} name unknown dealers: {', '.join(unknown)}")


def load_routing(path: Path | None = None) -> RoutingConfig:
    """The routing configuration at ``path`` (default: the shipped ``routing.toml``)."""
    return load_toml(
        path, package="cloud.leads", filename="routing.toml", schema=RoutingConfig, error=RoutingError
    )


@dataclass(frozen=True, slots=True)
class DealerProfile:
    """What routing knows of a dealer."""

    dealer_id: str
    region: str | None
    role: str
    capacity_per_day: int | None
    models: frozenset[str]


@dataclass(frozen=True, slots=True)
class RoutableLead:
    """What routing looks at in a lead."""

    source: str
    channel: str
    grade: str
    intent: str
    region: str | None
    model_interest: str | None
    customer_dealer: str | None  # the dealer of the customer's car, when the customer is known


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a lead goes and why."""

    dealer_id: str
    rule: str
    why: str


def _holds(when: When, lead: RoutableLead) -> bool:
    checks = (
        (when.sources, lead.source),
        (when.channels, lead.channel),
        (when.grades, lead.grade),
        (when.intents, lead.intent),
        (when.regions and tuple(r.casefold() for r in when.regions), lead.region and lead.region.casefold()),
        (when.models, lead.model_interest),
    )
    return all(allowed is None or value in allowed for allowed, value in checks)


def route(
    lead: RoutableLead,
    dealers: Mapping[str, DealerProfile],
    config: RoutingConfig,
    *,
    load_today: Mapping[str, int],
    conversion: Mapping[str, float],
    exclude: Collection[str] = (),
) -> Placement | None:
    """The first rule that holds for ``lead`` and has a candidate with room: its best dealer (see the module
    docstring); None when no rule places the lead. ``load_today``: leads assigned to each dealer today;
    ``conversion``: each dealer's smoothed conversion rate; ``exclude``: dealers not to use (tried before)."""
    for rule in config.rules:
        if not _holds(rule.when, lead):
            continue
        candidates = _candidates(rule, lead, dealers, load_today, exclude)
        if not candidates:
            continue
        scored = []
        for d in candidates:
            expert = lead.model_interest is not None and lead.model_interest in d.models
            bonus = config.expertise_weight if expert and rule.prefer_model_expertise else 1.0
            room = (
                1.0 if d.capacity_per_day is None else 1 - load_today.get(d.dealer_id, 0) / d.capacity_per_day
            )
            weight = conversion.get(d.dealer_id, 0.0) * bonus * room
            scored.append((weight, d.dealer_id, expert, room))
        # the largest weight; ties by dealer id, so that the same inputs always place the same way
        weight, dealer_id, expert, room = max(scored, key=lambda s: (s[0], _reverse(s[1])))
        why = (
            f"{len(candidates)} candidate(s); conversion {conversion.get(dealer_id, 0.0):.3f}"
            f"{', sells ' + str(lead.model_interest) if expert else ''}, {room:.0%} of today's capacity free"
        )
        return Placement(dealer_id, rule.name, why)
    return None


def _reverse(dealer_id: str) -> tuple[int, ...]:
    """A key that sorts dealer ids descending, so that ``max`` picks the smallest id among equal weights."""
    return tuple(-ord(c) for c in dealer_id)


def _candidates(
    rule: Rule,
    lead: RoutableLead,
    dealers: Mapping[str, DealerProfile],
    load_today: Mapping[str, int],
    exclude: Collection[str],
) -> Sequence[DealerProfile]:
    if rule.to == "customer_dealer":
        owner = lead.customer_dealer
        pool = [dealers[owner]] if owner is not None and owner in dealers else []
    elif rule.dealers is not None:
        pool = [dealers[d] for d in rule.dealers if d in dealers]
    else:
        pool = list(dealers.values())
    out = []
    for d in pool:
        if d.dealer_id in exclude:
            continue
        if rule.role is not None and d.role != rule.role:
            continue
        if (
            rule.to is None
            and rule.match_region
            and lead.region is not None
            and not _same(d.region, lead.region)
        ):
            continue
        if rule.require_model_expertise and (
            lead.model_interest is None or lead.model_interest not in d.models
        ):
            continue
        if d.capacity_per_day is not None and load_today.get(d.dealer_id, 0) >= d.capacity_per_day:
            continue
        out.append(d)
    return out


def _same(a: str | None, b: str | None) -> bool:
    """Two place names are the same one, whatever their case ("North" from a form, "north" from the CRM)."""
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


def smoothed_conversion(
    assigned: Mapping[str, int], orders: Mapping[str, int], dealers: Collection[str], prior: float
) -> dict[str, float]:
    """Each dealer's orders per assigned lead, smoothed toward the network's rate with ``prior`` leads."""
    total_assigned, total_orders = sum(assigned.values()), sum(orders.values())
    network = (total_orders + 1) / (total_assigned + 2)  # never 0 or 1, even before any order
    return {
        d: (orders.get(d, 0) + prior * network) / (assigned.get(d, 0) + prior)
        if prior or assigned.get(d)
        else network
        for d in dealers
    }
