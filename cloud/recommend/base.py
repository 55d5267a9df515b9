"""The one interface every recommender has, and the top-k machinery they share.

``fit(interactions, user_features=None, item_features=None)`` learns; ``recommend(user, k, exclude)`` returns
up to ``k`` :class:`Recommendation` (item, score, reasons) for one user; ``recommend_all(users, k)`` scores
users in blocks of :data:`BLOCK` rows (dense users x items scores, ``argpartition`` for the top k) and
returns a :class:`TopK` of arrays, fast enough for 100,000 customers.

Never recommended: an item the user has in the training interactions (unless ``exclude_seen=False``), an
item in the caller's ``exclude`` (items the customer converted on, say), an item outside its validity window
at ``at``, an item that targets other regions or vehicle models than the user's. Fewer than ``k`` come back
only when fewer eligible items remain: every eligible item has a finite score, and items the algorithm
cannot tell apart (score 0: no similar history) are ordered by training popularity, which is added at a
weight of 1e-9 (too small to reorder any two items the algorithm does tell apart).

A user the recommender has neither history nor features for is a cold-start user: subclasses that cannot
serve them (no history to go on) get the popularity order for them, reason ``popular``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self

import numpy as np
import scipy.sparse as sp

from .catalogue import Catalogue, UserTable
from .data import Interactions, ItemFeatures, NotFittedError, UserFeatures

#: users scored at once by ``recommend_all`` (a block of 1,024 x 10,000 items is 80 MB of float64)
BLOCK = 1024
#: the weight of the popularity tie-break
TIE_BREAK = 1e-9


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended item, its score (higher is better; comparable within one user's list) and reasons."""

    item: str
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class TopK:
    """``recommend_all``'s answer: row r holds user ``users[r]``'s items (codes into ``item_ids``; -1 pads a
    row when fewer than k items were eligible) and scores (NaN where padded), best first."""

    users: tuple[str, ...]
    item_ids: tuple[str, ...]
    items: np.ndarray
    scores: np.ndarray

    def for_user(self, row: int) -> list[tuple[str, float]]:
        """Row ``row`` as (item id, score) pairs, best first."""
        return [
            (self.item_ids[c], float(s))
            for c, s in zip(self.items[row].tolist(), self.scores[row].tolist(), strict=True)
            if c >= 0
        ]

    def rows(self) -> Iterator[tuple[str, str, int, float]]:
        """Every (user, item, rank from 1, score), user by user."""
        for r, user in enumerate(self.users):
            for rank, (item, score) in enumerate(self.for_user(r), start=1):
                yield user, item, rank, score

    def as_dict(self) -> dict[str, list[str]]:
        """User -> recommended item ids, best first."""
        return {u: [i for i, _ in self.for_user(r)] for r, u in enumerate(self.users)}


class Recommender(Protocol):
    """What campaigns and the evaluation use; every algorithm in :mod:`cloud.recommend.algorithms` has it."""

    name: ClassVar[str]

    def fit(
        self,
        interactions: Interactions,
        user_features: UserFeatures | None = None,
        item_features: ItemFeatures | None = None,
    ) -> Self:
        """Learn from interactions (and optional features); returns self."""
        ...

    def recommend(
        self, user: str, k: int, exclude: Iterable[str] = (), *, at: float | None = None
    ) -> list[Recommendation]:
        """Up to ``k`` items for ``user`` with scores and reasons, never one in ``exclude``."""
        ...

    def recommend_all(
        self,
        users: Sequence[str],
        k: int,
        *,
        exclude: Mapping[str, Iterable[str]] | None = None,
        at: float | None = None,
    ) -> TopK:
        """Up to ``k`` items for each of ``users`` (vectorised; no reasons)."""
        ...


class BaseRecommender(ABC):
    """Fit bookkeeping, eligibility, exclusions, top-k and the cold-start fallback; subclasses score."""

    name: ClassVar[str] = "base"
    #: whether the subclass scores users without history itself (else they get the popularity order)
    serves_cold_users: ClassVar[bool] = False

    catalogue_: Catalogue
    users_: UserTable
    matrix_: sp.csr_matrix
    seen_: sp.csr_matrix
    prior_: np.ndarray

    def fit(
        self,
        interactions: Interactions,
        user_features: UserFeatures | None = None,
        item_features: ItemFeatures | None = None,
    ) -> Self:
        """Learn from interactions (and optional features); returns self."""
        self.catalogue_ = Catalogue.build(interactions, item_features)
        self.users_ = UserTable.build(interactions, user_features, self.catalogue_)
        shape = (len(self.users_), len(self.catalogue_))
        # the catalogue and user table put the interactions' codes first, so the rows map over unchanged
        m = sp.csr_matrix((interactions.weights, (interactions.users, interactions.items)), shape=shape)
        m.sum_duplicates()
        self.matrix_ = m
        self.seen_ = m.copy()
        self.seen_.data[:] = 1.0
        counts = np.asarray(self.seen_.sum(axis=0)).ravel()
        self.prior_ = counts / counts.max() if counts.max() > 0 else counts
        self._fit(interactions)
        return self

    @abstractmethod
    def _fit(self, interactions: Interactions) -> None:
        """Algorithm-specific learning; ``matrix_``, ``catalogue_`` and ``users_`` are set."""

    @abstractmethod
    def _score(self, rows: np.ndarray) -> np.ndarray:
        """Scores (len(rows) x items, finite) for known user codes ``rows``."""

    def _explain_pairs(self, rows: np.ndarray, items: np.ndarray) -> list[tuple[str, ...]]:
        """Reasons for item code ``items[r]`` recommended to served user code ``rows[r]`` (default:
        popularity); called with at most :data:`BLOCK` pairs."""
        return [("popular",)] * len(items)

    def explain_many(self, users: Sequence[str], items: Sequence[str]) -> list[tuple[str, ...]]:
        """The reasons for item ``items[r]`` recommended to ``users[r]``, as :meth:`recommend` gives them
        (``popular`` for a user the recommender cannot serve), vectorised over blocks of :data:`BLOCK` pairs
        like :meth:`recommend_all`: for reasons at campaign scale, after choosing from its top k."""
        self._check_fitted()
        if len(users) != len(items):
            raise ValueError("one item per user")
        rows = np.array([self.users_.user_index.get(u, -1) for u in users], dtype=np.int64)
        index = self.catalogue_.item_index
        return self._reasons(rows, np.array([index[i] for i in items], dtype=np.int64))

    def _reasons(self, rows: np.ndarray, codes: np.ndarray) -> list[tuple[str, ...]]:
        """Reasons per (user code, item code) pair; cold and unknown users (-1) get ``popular``."""
        out: list[tuple[str, ...]] = [("popular",)] * len(rows)
        served = rows >= 0
        if not self.serves_cold_users:
            served[served] = self._has_history(rows[served])
        pairs = np.flatnonzero(served)
        for start in range(0, len(pairs), BLOCK):
            block = pairs[start : start + BLOCK]
            for k, said in zip(block.tolist(), self._explain_pairs(rows[block], codes[block]), strict=True):
                out[k] = said
        return out

    def _check_fitted(self) -> None:
        if not hasattr(self, "catalogue_"):
            raise NotFittedError(f"{self.name}: call fit before recommending")

    def _has_history(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(np.diff(self.seen_.indptr)[rows] > 0)

    def _block_scores(self, rows: np.ndarray) -> np.ndarray:
        """Scores for user codes ``rows`` (-1: unknown user), cold users falling back to popularity."""
        out = np.tile(self.prior_, (len(rows), 1))
        served = rows >= 0
        if not self.serves_cold_users:
            served[served] = self._has_history(rows[served])
        if served.any():
            out[served] = self._score(rows[served]) + TIE_BREAK * self.prior_
        return out

    def recommend_all(
        self,
        users: Sequence[str],
        k: int,
        *,
        exclude: Mapping[str, Iterable[str]] | None = None,
        at: float | None = None,
        exclude_seen: bool = True,
        upcoming: bool = False,
    ) -> TopK:
        """Up to ``k`` items for each of ``users``, best first (the module docstring says what is left out).

        ``at`` (seconds since the epoch) is the moment validity windows are checked against; None: now.
        With ``upcoming``, items whose window opens after ``at`` are ranked too: for a caller that keeps the
        lists and checks each item's window when it serves one (cloud/push/serving.py).
        """
        self._check_fitted()
        if k < 1:
            raise ValueError("k must be at least 1")
        if at is None and self.catalogue_.has_validity:
            at = time.time()
        n_items = len(self.catalogue_)
        kk = min(k, n_items)
        codes = np.array([self.users_.user_index.get(u, -1) for u in users], dtype=np.int64)
        items = np.full((len(users), kk), -1, dtype=np.int64)
        scores = np.full((len(users), kk), np.nan)
        for start in range(0, len(users), BLOCK):
            rows = codes[start : start + BLOCK]
            block = self._block_scores(rows)
            self._mask(block, rows, users[start : start + BLOCK], exclude, at, exclude_seen, upcoming)
            top, top_scores = _top_k(block, kk)
            items[start : start + len(rows)] = top
            scores[start : start + len(rows)] = top_scores
        return TopK(tuple(users), self.catalogue_.item_ids, items, scores)

    def _mask(
        self,
        block: np.ndarray,
        rows: np.ndarray,
        users: Sequence[str],
        exclude: Mapping[str, Iterable[str]] | None,
        at: float | None,
        exclude_seen: bool,
        upcoming: bool = False,
    ) -> None:
        """Set -inf where an item may not go to the user: seen, excluded, ineligible."""
        known = np.flatnonzero(rows >= 0)
        if exclude_seen and len(known):
            seen = self.seen_[rows[known]].tocoo()
            block[known[seen.row], seen.col] = -np.inf
        unknown_region = len(self.catalogue_.region_names)
        unknown_model = len(self.catalogue_.model_names)
        regions = np.where(rows >= 0, self.users_.regions[rows], unknown_region)
        models = np.where(rows >= 0, self.users_.models[rows], unknown_model)
        eligible = self.catalogue_.eligible(regions, models, at, upcoming=upcoming)
        if eligible is not None:
            block[~np.broadcast_to(eligible, block.shape)] = -np.inf
        if exclude:
            index = self.catalogue_.item_index
            for r, user in enumerate(users):
                gone = [index[i] for i in exclude.get(user, ()) if i in index]
                block[r, gone] = -np.inf

    def recommend(
        self,
        user: str,
        k: int,
        exclude: Iterable[str] = (),
        *,
        at: float | None = None,
        exclude_seen: bool = True,
    ) -> list[Recommendation]:
        """Up to ``k`` items for ``user`` with scores and reasons, never one in ``exclude``."""
        top = self.recommend_all([user], k, exclude={user: exclude}, at=at, exclude_seen=exclude_seen)
        codes = top.items[0][top.items[0] >= 0]
        row = self.users_.user_index.get(user, -1)
        reasons = self._reasons(np.full(len(codes), row, dtype=np.int64), codes)
        return [
            Recommendation(self.catalogue_.item_ids[c], float(s), r)
            for c, s, r in zip(codes.tolist(), top.scores[0].tolist(), reasons, strict=False)
        ]


def _top_k(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k highest finite scores (codes, scores), best first; -1 / NaN where fewer are finite.

    Ties are broken by item code (lowest first), so the same scores always give the same list."""
    n_items = block.shape[1]
    if k < n_items:
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(block, part, axis=1)
        # argpartition picks among items tied at the k-th score arbitrarily: where a tie straddles the cut
        # (equal popularity counts, too few eligible items), that row is sorted in full, stably
        straddling = (block >= vals.min(axis=1, keepdims=True)).sum(axis=1) > k
        for r in np.flatnonzero(straddling):
            part[r] = np.argsort(-block[r], kind="stable")[:k]
            vals[r] = block[r, part[r]]
    else:
        part = np.tile(np.arange(n_items), (block.shape[0], 1))
        vals = np.take_along_axis(block, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(vals, order, axis=1)
    missing = ~np.isfinite(top_scores)
    top[missing] = -1
    top_scores[missing] = np.nan
    return top, top_scores


def top_per_group(groups: np.ndarray, values: np.ndarray, n_groups: int, most: int) -> list[list[int]]:
    """Per group 0..n_groups-1, the entries (indexes into ``values``) with the ``most`` highest values,
    highest first, ties in entry order, of those positive: which history items or tags a reason names, for
    many (user, item) pairs at once."""
    positive = np.flatnonzero(values > 0)
    order = positive[np.lexsort((positive, -values[positive], groups[positive]))]
    owner = groups[order]
    rank = np.arange(len(order)) - np.searchsorted(owner, owner)
    out: list[list[int]] = [[] for _ in range(n_groups)]
    for g, entry in zip(owner[rank < most].tolist(), order[rank < most].tolist(), strict=True):
        out[g].append(entry)
    return out


def row_normalise(scores: np.ndarray) -> np.ndarray:
    """Each row divided by its largest absolute value (rows of zeros stay zero): blends compare like with
    like whatever each algorithm's scale."""
    top = np.abs(scores).max(axis=1, keepdims=True)
    top[top == 0] = 1.0
    return np.asarray(scores / top)
