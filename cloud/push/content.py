"""What a treated customer is shown: the arm's fixed item, or the best item of a recommender among those the
customer may get (valid now, targeted at their car's model and their region, not converted on before).

A "recommended for you" slot offers something to take up: only items of the offer kinds
(:data:`RECOMMENDABLE_KINDS`) fill it. Online content (articles, videos, products the customers read on the
site and app, imported as ``items``) teaches the learned recommenders what goes together but is pushed only
as an arm's fixed item.

Recommenders plug in through :data:`RANKERS`: a ranker gets the customers and, per customer, the items they
may get, and answers with one :class:`Choice` (item, score, reasons) per customer it can serve. ``random``
is the control arm of a recommender comparison (an eligible item drawn by hash, so a rerun draws the same);
the others are cloud/recommend's algorithms, fitted for the run on the database's interactions and
features (cloud/push/signals.py), and asked for every customer's top items in one vectorised call.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from cloud.recommend.algorithms import make
from cloud.recommend.base import BaseRecommender
from cloud.recommend.data import ItemFeatures

from .assign import position

#: the catalogue kinds a recommended slot may offer (cloud/analytics/imports.py CatalogueRow, minus articles)
RECOMMENDABLE_KINDS = frozenset(
    ("offer", "test_drive", "accessory", "service_package", "insurance", "charging_plan", "ota_feature")
)


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
    #: a financing offer's minimum credit score (the customer's newest, ``credit_scores``); None: anyone
    min_credit_score: float | None = None

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

    def credit_allows(self, score: float | None) -> bool:
        """Whether a customer with this newest credit score may get the item (a customer without a score may
        not get an offer that needs one)."""
        return self.min_credit_score is None or (score is not None and score >= self.min_credit_score)


@dataclass(frozen=True, slots=True)
class Target:
    """A treated customer as content selection sees them."""

    customer_id: str
    model: str | None
    region: str | None
    #: items this customer converted on before (never offered again)
    converted: frozenset[str] = field(default_factory=frozenset)
    #: the customer's newest credit score (None: none), for offers that need one
    credit_score: float | None = None


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
    #: what the run's rankers read once and share (the interactions and features, the heaviest reads)
    shared: dict[str, Any] = field(default_factory=dict, compare=False)


#: (context, customers, the items each may get) -> a choice per customer served
Ranker = Callable[[RankContext, Sequence[Target], Mapping[str, Sequence[Item]]], dict[str, Choice]]


def load_items(conn: psycopg.Connection[Any]) -> dict[str, Item]:
    """Every catalogue item, by id."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT item_id, kind, coalesce(title, item_id), coalesce(body, ''), url, category, tags,"
            " target_models, target_regions, valid_from, valid_until, cost_per_send, value_per_conversion,"
            " min_credit_score FROM content_items ORDER BY item_id"
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
            None if r[13] is None else float(r[13]),
        )
        for r in rows
    }


def eligible_items(
    targets: Sequence[Target], items: Mapping[str, Item], at: datetime
) -> dict[str, list[Item]]:
    """Per customer, the items a recommended slot may show them at ``at``: of an offer kind, valid, targeted
    at them, allowed by their credit score, not converted on. Customers alike (model, region, items converted
    on, credit score where an item needs one) share one list."""
    valid = [i for i in items.values() if i.kind in RECOMMENDABLE_KINDS and i.valid_at(at)]
    needs_credit = any(i.min_credit_score is not None for i in valid)
    lists: dict[tuple[str | None, str | None, frozenset[str], float | None], list[Item]] = {}
    out = {}
    for t in targets:
        key = (t.model, t.region, t.converted, t.credit_score if needs_credit else None)
        found = lists.get(key)
        if found is None:
            found = lists[key] = [
                i
                for i in valid
                if i.item_id not in t.converted
                and i.targets(t.model, t.region)
                and i.credit_allows(t.credit_score)
            ]
        out[t.customer_id] = found
    return out


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


def fit_recommender(
    conn: psycopg.Connection[Any],
    name: str,
    now: datetime,
    recommendable: Collection[str] | None = None,
    shared: dict[str, Any] | None = None,
) -> BaseRecommender:
    """Recommender ``name`` fitted on the database's interactions and features as of ``now``; with
    ``recommendable``, only those items are ever ranked. ``shared`` keeps what was read for the next
    recommender of the same run (every arm learns from the same data)."""
    from .signals import load_interactions, load_item_features, load_user_features

    shared = {} if shared is None else shared
    if "interactions" not in shared:
        shared["interactions"] = load_interactions(conn, now)
        shared["users"] = load_user_features(conn)
        shared["items"] = load_item_features(conn)
    items: ItemFeatures = shared["items"]
    if recommendable is not None:
        # the other items still teach the model (what is read together), but an empty validity window keeps
        # them out of every ranking: the recommender's own vectorised eligibility does the masking
        items = ItemFeatures(
            {
                i: a if i in recommendable else replace(a, valid_from=0.0, valid_until=1.0)
                for i, a in items.items.items()
            }
        )
    return make(name).fit(shared["interactions"], shared["users"], items)


def learned_ranker(name: str) -> Ranker:
    """A ranker that fits recommender ``name`` (cloud/recommend) for the run and gives each customer its best
    item among those they may get, with the recommender's reasons."""

    def rank(
        context: RankContext, targets: Sequence[Target], candidates: Mapping[str, Sequence[Item]]
    ) -> dict[str, Choice]:
        served = [t for t in targets if candidates.get(t.customer_id)]
        if not served:
            return {}
        allowed_sets: dict[int, frozenset[str]] = {}  # per shared candidate list (eligible_items shares them)
        recommendable = {i.item_id for t in served for i in candidates[t.customer_id]}
        model = fit_recommender(context.conn, name, context.now, recommendable, context.shared)
        top = model.recommend_all(
            [t.customer_id for t in served],
            RANK_DEPTH,
            exclude={t.customer_id: t.converted for t in served if t.converted},
            at=context.now.timestamp(),
        )
        picked: list[tuple[str, str, float]] = []  # (customer, item, score)
        for r, t in enumerate(served):
            listed = candidates[t.customer_id]
            allowed = allowed_sets.get(id(listed))
            if allowed is None:
                allowed = allowed_sets[id(listed)] = frozenset(i.item_id for i in listed)
            for code, score in zip(top.items[r].tolist(), top.scores[r].tolist(), strict=True):
                if code < 0:
                    break
                item = top.item_ids[code]
                if item in allowed:
                    picked.append((t.customer_id, item, score))
                    break
        # the reasons of the chosen items only, in blocks (one customer at a time cost 2.5 ms each)
        reasons = model.explain_many([c for c, _, _ in picked], [i for _, i, _ in picked])
        label = RANKER_LABELS.get(name, f"by {name}")
        return {
            customer: Choice(item, score, (label, *said))
            for (customer, item, score), said in zip(picked, reasons, strict=True)
        }

    return rank


#: how a decision's reason names the ranker that chose the item, before the ranker's own reasons
RANKER_LABELS = {
    "popularity": "by popularity",
    "personalized": "personalized",
    "itemknn": "by similar items",
    "als": "by customers with a similar history",
}

#: how deep in a customer's ranking to look for an item the campaign may show them
RANK_DEPTH = 20

#: rankers by the name an arm uses (cloud/push/spec.py RECOMMENDERS)
RANKERS: dict[str, Ranker] = {
    "random": random_ranker,
    **{name: learned_ranker(name) for name in ("popularity", "personalized", "itemknn", "als")},
}
