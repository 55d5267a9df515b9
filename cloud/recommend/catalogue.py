"""Items and users aligned to integer codes, with what decides eligibility and content matching.

Codes: the interactions' items (users) first, in their order, then items (users) known only from features,
sorted, so a recommender's columns (rows) are the interaction matrix's, padded. Eligibility of item i for a
user is vectorised: ``region_ok[user's region code, i] & model_ok[user's model code, i] & valid(i, at)``; the
last row of each table is "unknown region/model", which only untargeted items pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .data import Interactions, ItemAttributes, ItemFeatures, UserAttributes, UserFeatures


def _vocabulary(maps: Iterable[Mapping[str, float]]) -> tuple[str, ...]:
    return tuple(sorted({name for m in maps for name in m}))


def _matrix(maps: list[Mapping[str, float]], vocabulary: tuple[str, ...]) -> sp.csr_matrix:
    """Rows of {name: value} as a sparse matrix over ``vocabulary`` (unknown names are dropped)."""
    col = {name: j for j, name in enumerate(vocabulary)}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for r, m in enumerate(maps):
        for name, value in m.items():
            j = col.get(name)
            if j is not None and value:
                rows.append(r)
                cols.append(j)
                vals.append(float(value))
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(maps), len(vocabulary)), dtype=np.float64)


def _target_table(targets: list[frozenset[str]], names: tuple[str, ...]) -> np.ndarray:
    """(len(names) + 1) x items: may an item go to a user of this region/model (last row: unknown)."""
    table = np.zeros((len(names) + 1, len(targets)), dtype=bool)
    index = {n: r for r, n in enumerate(names)}
    for i, target in enumerate(targets):
        if not target:
            table[:, i] = True
            continue
        for name in target:
            table[index[name], i] = True
    return table


@dataclass(frozen=True)
class Catalogue:
    """The items a recommender can rank: ids, tags, categories, targets and validity, by code."""

    item_ids: tuple[str, ...]
    item_index: dict[str, int]
    tag_names: tuple[str, ...]
    tags: sp.csr_matrix
    category_names: tuple[str, ...]
    categories: sp.csr_matrix
    region_names: tuple[str, ...]
    region_ok: np.ndarray
    model_names: tuple[str, ...]
    model_ok: np.ndarray
    valid_from: np.ndarray
    valid_until: np.ndarray

    @classmethod
    def build(cls, interactions: Interactions, features: ItemFeatures | None) -> Catalogue:
        """The interactions' items then the feature-only ones (sorted), with their attributes."""
        known = features.items if features is not None else {}
        extra = sorted(set(known) - set(interactions.item_index))
        ids = interactions.item_ids + tuple(extra)
        attrs = [known.get(i, ItemAttributes()) for i in ids]
        tag_names = _vocabulary(a.tags for a in attrs)
        category_names = _vocabulary(a.categories for a in attrs)
        region_names = tuple(sorted({r for a in attrs for r in a.regions}))
        model_names = tuple(sorted({m for a in attrs for m in a.models}))
        nan = np.nan
        return cls(
            item_ids=ids,
            item_index={i: c for c, i in enumerate(ids)},
            tag_names=tag_names,
            tags=_matrix([a.tags for a in attrs], tag_names),
            category_names=category_names,
            categories=_matrix([a.categories for a in attrs], category_names),
            region_names=region_names,
            region_ok=_target_table([a.regions for a in attrs], region_names),
            model_names=model_names,
            model_ok=_target_table([a.models for a in attrs], model_names),
            valid_from=np.array([nan if a.valid_from is None else a.valid_from for a in attrs], dtype=float),
            valid_until=np.array(
                [nan if a.valid_until is None else a.valid_until for a in attrs], dtype=float
            ),
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def has_validity(self) -> bool:
        """Whether any item has a validity window (else the time check is skipped)."""
        return bool(np.isfinite(self.valid_from).any() or np.isfinite(self.valid_until).any())

    @property
    def has_targets(self) -> bool:
        """Whether any item targets regions or models."""
        return bool(self.region_names or self.model_names)

    def valid_at(self, at: float, *, upcoming: bool = False) -> np.ndarray:
        """Items whose validity window contains ``at`` (with ``upcoming``: or opens after it)."""
        with np.errstate(invalid="ignore"):
            running = ~(self.valid_until <= at)
            if upcoming:
                return np.asarray(running)
            started = ~(self.valid_from > at)
        return np.asarray(started & running)

    def eligible(
        self, regions: np.ndarray, models: np.ndarray, at: float | None, *, upcoming: bool = False
    ) -> np.ndarray | None:
        """users x items: may the item go to the user (by region and model codes) at ``at`` (with
        ``upcoming``: or once its window opens); None: all."""
        mask: np.ndarray | None = None
        if self.has_targets:
            mask = self.region_ok[regions] & self.model_ok[models]
        if at is not None and self.has_validity:
            valid = self.valid_at(at, upcoming=upcoming)[None, :]
            mask = valid if mask is None else mask & valid
        return mask


@dataclass(frozen=True)
class UserTable:
    """The users a recommender knows (interactions' users, then feature-only ones) and their portraits."""

    user_ids: tuple[str, ...]
    user_index: dict[str, int]
    regions: np.ndarray
    models: np.ndarray
    region_of: tuple[str | None, ...]
    tags: sp.csr_matrix
    categories: sp.csr_matrix

    @classmethod
    def build(
        cls, interactions: Interactions, features: UserFeatures | None, catalogue: Catalogue
    ) -> UserTable:
        """Users and their region and model codes (into the catalogue's target tables), tags, categories."""
        known = features.users if features is not None else {}
        extra = sorted(set(known) - set(interactions.user_index))
        ids = interactions.user_ids + tuple(extra)
        attrs = [known.get(u, UserAttributes()) for u in ids]
        region_code = {n: r for r, n in enumerate(catalogue.region_names)}
        model_code = {n: r for r, n in enumerate(catalogue.model_names)}
        unknown_region, unknown_model = len(catalogue.region_names), len(catalogue.model_names)
        return cls(
            user_ids=ids,
            user_index={u: c for c, u in enumerate(ids)},
            regions=np.array(
                [region_code.get(a.region or "", unknown_region) for a in attrs], dtype=np.int64
            ),
            models=np.array([model_code.get(a.model or "", unknown_model) for a in attrs], dtype=np.int64),
            region_of=tuple(a.region for a in attrs),
            tags=_matrix([a.tags for a in attrs], catalogue.tag_names),
            categories=_matrix([a.categories for a in attrs], catalogue.category_names),
        )

    def __len__(self) -> int:
        return len(self.user_ids)
