"""``personalized``: what campaigns use — portrait match blended with collaborative filtering.

    score(u, j) = w_knn * knn(u, j) + w_als * als(u, j) + w_content * content(u, j) + w_pop * pop(u, j)

each component scaled per user so its best item is 1 (:func:`base.row_normalise`), so the weights compare
like with like. ``content`` matches the user's portrait to the item's features:

    content(u, j) = (sum_t tag_u(t) m_j(t) + sum_c pref_u(c) m_j(c)) / (sum_t tag_u(t) + sum_c pref_u(c))

the membership of j in the user's tags and categories, weighted by how strongly the user has each (0..1).
``pop`` is the region-aware :class:`Popularity`. The CF and popularity weights were chosen on a validation
split of MovieLens 100k training data (cloud/recommend/README.md); MovieLens has no portraits, so
``content_weight`` (1.0: a full portrait match counts like the best ALS item) is a choice, to be tuned on push
outcomes once there are some. Cold start falls through: a user with history gets all four;
without history (a new customer with a portrait) content and popularity; without either, popularity.

Every recommendation says why, strongest component first: "matched tags: suv, family", "matched categories:
..", "similar to items you viewed: I12", "liked by customers with a history like yours", "popular in north".
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import scipy.sparse as sp

from .base import BaseRecommender, row_normalise, top_per_group
from .data import Interactions, ItemFeatures, UserFeatures
from .itemknn import ItemKNN
from .learned import ALS
from .popularity import Popularity


class Personalized(BaseRecommender):
    """The hybrid: item-kNN + ALS + portrait match + popularity, with reasons and cold-start fallbacks."""

    name: ClassVar[str] = "personalized"
    serves_cold_users: ClassVar[bool] = True

    knn_: ItemKNN
    als_: ALS
    popularity_: Popularity

    def __init__(
        self,
        knn_weight: float = 0.25,
        als_weight: float = 2.0,
        content_weight: float = 1.0,
        popularity_weight: float = 0.05,
        knn: ItemKNN | None = None,
        als: ALS | None = None,
        popularity: Popularity | None = None,
    ) -> None:
        self.knn_weight = knn_weight
        self.als_weight = als_weight
        self.content_weight = content_weight
        self.popularity_weight = popularity_weight
        self.knn = knn
        self.als = als
        self.popularity = popularity

    def fit(
        self,
        interactions: Interactions,
        user_features: UserFeatures | None = None,
        item_features: ItemFeatures | None = None,
    ) -> Self:
        """Fit the components on the same data (so their codes agree with this recommender's)."""
        self.knn_ = (self.knn or ItemKNN()).fit(interactions, user_features, item_features)
        self.als_ = (self.als or ALS()).fit(interactions, user_features, item_features)
        self.popularity_ = (self.popularity or Popularity()).fit(interactions, user_features, item_features)
        return super().fit(interactions, user_features, item_features)

    def _fit(self, interactions: Interactions) -> None:
        self.prior_ = self.popularity_.prior_

    def _content(self, rows: np.ndarray) -> np.ndarray:
        """Portrait match (users x items), 0 for users without tags or preferences."""
        users, items = self.users_, self.catalogue_
        match = np.asarray((users.tags[rows] @ items.tags.T).toarray())
        match += np.asarray((users.categories[rows] @ items.categories.T).toarray())
        mass = (
            np.asarray(users.tags[rows].sum(axis=1)).ravel()
            + np.asarray(users.categories[rows].sum(axis=1)).ravel()
        )
        mass[mass == 0] = 1.0
        return np.asarray(match / mass[:, None])

    def _components(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Each weighted component's scores (users x items)."""
        n = len(rows), len(self.catalogue_)
        history = self._has_history(rows)
        parts: dict[str, np.ndarray] = {}
        if self.popularity_weight:
            parts["pop"] = self.popularity_weight * row_normalise(self.popularity_._score(rows))
        if self.content_weight and (self.catalogue_.tag_names or self.catalogue_.category_names):
            parts["content"] = self.content_weight * self._content(rows)
        for key, weight, model in (("knn", self.knn_weight, self.knn_), ("als", self.als_weight, self.als_)):
            if weight and history.any():
                part = np.zeros(n)
                part[history] = weight * row_normalise(model._score(rows[history]))
                parts[key] = part
        return parts

    def _score(self, rows: np.ndarray) -> np.ndarray:
        total = np.zeros((len(rows), len(self.catalogue_)))
        for part in self._components(rows).values():
            total += part
        return total

    def _explain_pairs(self, rows: np.ndarray, items: np.ndarray) -> list[tuple[str, ...]]:
        # each user's components once: the pairs come a user's whole list at a time (cloud/push/serving.py
        # explains 50 items per customer), and a row of components costs a row of every algorithm's scores
        users, pairs = np.unique(rows, return_inverse=True)
        parts = {key: part[pairs, items] for key, part in self._components(users).items()}
        # the items named are those that co-occur with the recommended one (item-kNN's similarity), whichever
        # collaborative component carried it
        cf = parts.get("knn", 0.0) + parts.get("als", 0.0) if ("knn" in parts or "als" in parts) else None
        similar = self.knn_.similar_reasons(rows, items) if cf is not None else [None] * len(items)
        pop_reasons = self.popularity_.region_reasons(rows)
        matched = self._matched(rows, items) if "content" in parts else None
        reasons: list[tuple[str, ...]] = []
        for col, item in enumerate(items.tolist()):
            said: list[tuple[float, str]] = []
            if matched is not None and parts["content"][col] > 0:
                said.extend((parts["content"][col], words) for words in matched[col])
            if cf is not None and cf[col] > 0 and similar[col]:
                said.append((cf[col], str(similar[col])))
            if "als" in parts and parts["als"][col] > 0:
                said.append((parts["als"][col], "liked by customers with a history like yours"))
            pop = parts["pop"][col] if "pop" in parts else 0.0
            if pop > 0 and (not said or pop >= max(v for v, _ in said)):
                said.append((pop, pop_reasons[col]))
            if not said:  # nothing speaks for it but that nothing else is left: say what it is
                said.append((0.0, pop_reasons[col] if self.prior_[item] > 0 else "new in the catalogue"))
            said.sort(key=lambda p: -p[0])
            reasons.append(tuple(words for _, words in said))
        return reasons

    def _matched(self, rows: np.ndarray, items: np.ndarray) -> list[list[str]]:
        """Per (user code, item code) pair, "matched tags: a, b" and "matched categories: c" for the three
        strongest of what the user and the item share."""
        out: list[list[str]] = [[] for _ in range(len(rows))]
        users, catalogue = self.users_, self.catalogue_
        for label, u, i, names in (
            ("tags", users.tags, catalogue.tags, catalogue.tag_names),
            ("categories", users.categories, catalogue.categories, catalogue.category_names),
        ):
            shared = sp.csr_matrix(u[rows].multiply(i[items]))
            shared.sort_indices()
            pair = np.repeat(np.arange(len(rows)), np.diff(shared.indptr))
            for r, top in enumerate(top_per_group(pair, shared.data, len(rows), 3)):
                if top:
                    out[r].append(f"matched {label}: " + ", ".join(names[shared.indices[e]] for e in top))
        return out
