"""What a treated customer is shown: the arm's fixed item, or the best item of a recommender among those the
customer may get (valid now, targeted at their car's model and their region, not converted on before).

Recommenders plug in through :data:`RANKERS`: a ranker gets the customers and, per customer, the items they
may get, and answers with one :class:`Choice` (item, score, reasons) per customer it can serve. ``random``
is the control arm of a recommender comparison (an eligible item drawn by hash, so a rerun draws the same);
the others are cloud/recommend's algorithms, fitted for the run on the database's interactions and
features (cloud/push/signals.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from cloud.recommend.algorithms import make
from cloud.recommend.base import BaseRecommender

from .assign import position


@dataclass(frozen=True, slots=True)
class Item:
    """A catalogue item as campaigns use it."""

    item_id: str
    kind: str
    title: str
    body: str
    url: str | None
    category: str | None
    tags: tuple[str, ...]
    target_models: tuple[str, ...]
    target_regions: tuple[str, ...]
    valid_from: datetime | None
    valid_until: datetime | None
    cost_per_send: float
    value_per_conversion: float

    def valid_at(self, at: datetime) -> bool:
        """Whether the item may be shown at ``at``."""
        return (self.valid_from is None or self.valid_from <= at) and (
            self.valid_until is None or at < self.valid_until
        )

    def targets(self, model: str | None, region: str | None) -> bool:
        """Whether the item is meant for this car model and region (empty targets: everyone)."""
        return (not self.target_models or model in self.target_models) and (
            not self.target_regions or region in self.target_regions
        )


@dataclass(frozen=True, slots=True)
class Target:
    """A treated customer as content selection sees them."""

    customer_id: str
    model: str | None
    region: str | None
    #: items this customer converted on before (never offered again)
    converted: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Choice:
    """The item chosen for one customer, its score and why."""

    item_id: str
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RankContext:
    """What a ranker may read: the database, the campaign and the time of the run."""

    conn: psycopg.Connection[Any]
    campaign_id: str
    now: datetime


#: (context, customers, the items each may get) -> a choice per customer served
Ranker = Callable[[RankContext, Sequence[Target], Mapping[str, Sequence[Item]]], dict[str, Choice]]


def load_items(conn: psycopg.Connection[Any]) -> dict[str, Item]:
    """Every catalogue item, by id."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT item_id, kind, coalesce(title, item_id), coalesce(body, ''), url, category, tags,"
            " target_models, target_regions, valid_from, valid_until, cost_per_send, value_per_conversion"
            " FROM content_items ORDER BY item_id"
        )
        .fetchall()
    )
    return {
        r[0]: Item(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            tuple(r[6]),
            tuple(r[7]),
            tuple(r[8]),
            r[9],
            r[10],
            float(r[11]),
            float(r[12]),
        )
        for r in rows
    }


def eligible_items(
    targets: Sequence[Target], items: Mapping[str, Item], at: datetime
) -> dict[str, list[Item]]:
    """Per customer, the items they may be shown at ``at``: valid, targeted at them, not converted on."""
    valid = [i for i in items.values() if i.valid_at(at)]
    return {
        t.customer_id: [i for i in valid if i.item_id not in t.converted and i.targets(t.model, t.region)]
        for t in targets
    }


def random_ranker(
    context: RankContext, targets: Sequence[Target], candidates: Mapping[str, Sequence[Item]]
) -> dict[str, Choice]:
    """An eligible item drawn uniformly by hash of the campaign and customer (the same on every run)."""
    chosen = {}
    for t in targets:
        items = candidates.get(t.customer_id, ())
        if items:
            index = int(position(f"random:{context.campaign_id}", t.customer_id) * len(items))
            chosen[t.customer_id] = Choice(items[index].item_id, 0.0, ("drawn at random (control arm)",))
    return chosen


def fit_recommender(conn: psycopg.Connection[Any], name: str, now: datetime) -> BaseRecommender:
    """Recommender ``name`` fitted on the database's interactions and features as of ``now``."""
    from .signals import load_interactions, load_item_features, load_user_features

    return make(name).fit(load_interactions(conn, now), load_user_features(conn), load_item_features(conn))


def learned_ranker(name: str) -> Ranker:
    """A ranker that fits recommender ``name`` (cloud/recommend) for the run and gives each customer its best
    item among those they may get, with the recommender's reasons."""

    def rank(
        context: RankContext, targets: Sequence[Target], candidates: Mapping[str, Sequence[Item]]
    ) -> dict[str, Choice]:
        model = fit_recommender(context.conn, name, context.now)
        at = context.now.timestamp()
        chosen = {}
        for t in targets:
            allowed = {i.item_id for i in candidates.get(t.customer_id, ())}
            if not allowed:
                continue
            for r in model.recommend(t.customer_id, RANK_DEPTH, t.converted, at=at):
                if r.item in allowed:
                    chosen[t.customer_id] = Choice(r.item, r.score, (f"{name}:", *r.reasons))
                    break
        return chosen

    return rank


#: how deep in a customer's ranking to look for an item the campaign may show them
RANK_DEPTH = 20

#: rankers by the name an arm uses (cloud/push/spec.py RECOMMENDERS)
RANKERS: dict[str, Ranker] = {
    "random": random_ranker,
    **{name: learned_ranker(name) for name in ("popularity", "personalized", "itemknn", "als")},
}
