"""``popularity``: the relevance recommendation, one ranking for everyone (per region where there is one).

An item's score is the sum of its interactions' weights in the window (``window_days`` before ``now``, the
newest interaction by default), each halved every ``half_life_days`` of age (None: no decay). Interactions
without a timestamp count undecayed. Aggregated rows (a user's repeated interactions with an item summed,
``Interactions.counts``) count as many events as they stand for and age by their latest event: the same
scores without decay and window (the defaults), slightly more weight for old repeats with them. Where user
features give regions, a region with interactions from at least ``min_region_users`` users gets its own
ranking ("popular in north"); other users get the global one.
Items that target regions or models (item features) only reach users of those, as in every recommender.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import BaseRecommender
from .data import Interactions

DAY_S = 86_400.0


class Popularity(BaseRecommender):
    """Time-decayed, weighted popularity in a window, by region where the region has enough users."""

    name: ClassVar[str] = "popularity"
    serves_cold_users: ClassVar[bool] = True

    scores_: np.ndarray
    region_scores_: dict[str, np.ndarray]

    def __init__(
        self,
        half_life_days: float | None = None,
        window_days: float | None = None,
        now: float | None = None,
        use_weights: bool = False,
        min_region_users: int = 20,
    ) -> None:
        self.half_life_days = half_life_days
        self.window_days = window_days
        self.now = now
        self.use_weights = use_weights
        self.min_region_users = min_region_users

    def _fit(self, interactions: Interactions) -> None:
        mass = self.item_mass(interactions)
        n_items = len(self.catalogue_)
        self.scores_ = _unit(np.bincount(interactions.items, mass, minlength=n_items))
        self.region_scores_ = {}
        regions = np.array([r or "" for r in self.users_.region_of], dtype=object)[interactions.users]
        for region in sorted(set(regions.tolist()) - {""}):
            rows = regions == region
            if len(np.unique(interactions.users[rows])) >= self.min_region_users:
                counts = np.bincount(interactions.items[rows], mass[rows], minlength=n_items)
                self.region_scores_[region] = _unit(counts)
        # the decayed global ranking is also what unknown users and ties fall back to
        self.prior_ = self.scores_

    def item_mass(self, interactions: Interactions) -> np.ndarray:
        """Each interaction's contribution: its weight (or 1), decayed by age, 0 outside the window."""
        mass = interactions.weights.copy() if self.use_weights else interactions.event_counts()
        now = self.now if self.now is not None else interactions.latest_timestamp()
        if now is None:
            return mass
        age_days = (now - interactions.timestamps) / DAY_S
        known = np.isfinite(age_days)
        if self.window_days is not None:
            mass[known & ((age_days > self.window_days) | (age_days < 0))] = 0.0
        if self.half_life_days is not None:
            mass[known] *= 0.5 ** (np.maximum(age_days[known], 0.0) / self.half_life_days)
        return mass

    def _score(self, rows: np.ndarray) -> np.ndarray:
        out = np.tile(self.scores_, (len(rows), 1))
        for r, row in enumerate(rows.tolist()):
            regional = self.region_scores_.get(self.users_.region_of[row] or "")
            if regional is not None:
                out[r] = regional
        return out

    def region_reasons(self, rows: np.ndarray) -> list[str]:
        """Per user code, "popular in REGION" where the region has its own ranking, else "popular"."""
        regions = self.users_.region_of
        return [
            f"popular in {regions[r]}" if regions[r] in self.region_scores_ else "popular"
            for r in rows.tolist()
        ]

    def _explain_pairs(self, rows: np.ndarray, items: np.ndarray) -> list[tuple[str, ...]]:
        return [(reason,) for reason in self.region_reasons(rows)]


def _unit(values: np.ndarray) -> np.ndarray:
    """Scaled so the largest is 1 (all zeros stay zeros)."""
    top = values.max() if len(values) else 0.0
    return values / top if top > 0 else values.astype(np.float64)
