"""The in-memory input of every recommender: interactions, and optional item and user features.

A loader (the database one comes later; :mod:`cloud.recommend.files` reads files) builds
:class:`Interactions` from rows (:meth:`Interactions.from_records`) or columns
(:meth:`Interactions.from_arrays`).
Ids are strings; inside, users and items are integer codes into ``user_ids`` / ``item_ids`` (first-seen
order, so the same rows give the same codes). Weights say how much an interaction counts (a view 1, a
comment 2, a rating its value); timestamps are seconds since the epoch, NaN where unknown.

Item features carry what the campaign side knows about an item: portrait tags and categories it matches
(membership 0..1), the regions and vehicle models it targets (empty: everyone) and its validity window.
User features carry a customer's portrait: tag scores, category preferences, region and vehicle model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


class RecommendError(Exception):
    """Root of the recommender errors (tree in the package docstring)."""


class NotFittedError(RecommendError):
    """A recommender asked for recommendations before ``fit``."""


@dataclass(frozen=True, slots=True)
class Interaction:
    """One user-item event: the row a loader yields."""

    user: str
    item: str
    weight: float = 1.0
    timestamp: float | None = None


@dataclass(frozen=True)
class Interactions:
    """Interaction rows as arrays: user and item codes, weights, timestamps (NaN: unknown)."""

    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray
    #: how many events each row stands for (None: one each); a loader that sums a user's repeated
    #: interactions with an item into one row (weights added, the latest timestamp) keeps the count here, so
    #: that popularity by count stays what it was on the events
    counts: np.ndarray | None = None
    user_index: dict[str, int] = field(init=False, repr=False, compare=False)
    item_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.users)
        if not (len(self.items) == len(self.weights) == len(self.timestamps) == n):
            raise ValueError("users, items, weights and timestamps must have the same length")
        if n and (self.users.max() >= len(self.user_ids) or self.items.max() >= len(self.item_ids)):
            raise ValueError("a code beyond user_ids or item_ids")
        if n and not np.all(np.isfinite(self.weights)):
            raise ValueError("weights must be finite")
        if self.counts is not None and len(self.counts) != n:
            raise ValueError("counts must have one value per row")
        object.__setattr__(self, "user_index", {u: i for i, u in enumerate(self.user_ids)})
        object.__setattr__(self, "item_index", {u: i for i, u in enumerate(self.item_ids)})

    @classmethod
    def from_arrays(
        cls,
        users: Sequence[str] | np.ndarray,
        items: Sequence[str] | np.ndarray,
        weights: Sequence[float] | np.ndarray | None = None,
        timestamps: Sequence[float] | np.ndarray | None = None,
    ) -> Interactions:
        """Interactions from columns of ids (weights default to 1, timestamps to unknown)."""
        user_ids, user_codes = _encode(users)
        item_ids, item_codes = _encode(items)
        n = len(user_codes)
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        t = np.full(n, np.nan) if timestamps is None else np.asarray(timestamps, dtype=np.float64)
        return cls(user_ids, item_ids, user_codes, item_codes, w, t)

    @classmethod
    def from_records(
        cls, records: Iterable[Interaction | tuple[str, str, float, float | None]]
    ) -> Interactions:
        """Interactions from rows: :class:`Interaction` objects or ``(user, item, weight, timestamp)``."""
        users: list[str] = []
        items: list[str] = []
        weights: list[float] = []
        stamps: list[float] = []
        for r in records:
            row = r if isinstance(r, Interaction) else Interaction(*r)
            users.append(row.user)
            items.append(row.item)
            weights.append(row.weight)
            stamps.append(math.nan if row.timestamp is None else row.timestamp)
        return cls.from_arrays(users, items, weights, stamps)

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: np.ndarray) -> Interactions:
        """The interactions at ``rows`` (indexes or a boolean mask), with ids coded afresh."""
        users = np.asarray(self.user_ids, dtype=object)[self.users[rows]]
        items = np.asarray(self.item_ids, dtype=object)[self.items[rows]]
        taken = Interactions.from_arrays(users, items, self.weights[rows], self.timestamps[rows])
        if self.counts is None:
            return taken
        return Interactions(
            taken.user_ids, taken.item_ids, taken.users, taken.items, taken.weights, taken.timestamps,
            self.counts[rows],
        )  # fmt: skip

    def event_counts(self) -> np.ndarray:
        """How many events each row stands for (ones unless the rows were aggregated)."""
        return np.ones(len(self)) if self.counts is None else self.counts.astype(np.float64)

    def matrix(self, *, binary: bool = False) -> sp.csr_matrix:
        """Users x items (CSR, float64); repeated pairs add up, or count once with ``binary``."""
        shape = (len(self.user_ids), len(self.item_ids))
        values = np.ones(len(self)) if binary else self.weights
        m = sp.csr_matrix((values, (self.users, self.items)), shape=shape, dtype=np.float64)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def latest_timestamp(self) -> float | None:
        """The newest known timestamp (None when none is known)."""
        known = self.timestamps[np.isfinite(self.timestamps)]
        return float(known.max()) if len(known) else None

    def pairs_by_user(self) -> dict[str, set[str]]:
        """Each user's set of items."""
        out: dict[str, set[str]] = {}
        for u, i in zip(self.users.tolist(), self.items.tolist(), strict=True):
            out.setdefault(self.user_ids[u], set()).add(self.item_ids[i])
        return out


def _encode(ids: Sequence[str] | np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Ids to codes in first-seen order (stable: the same rows always give the same codes)."""
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(str(x), len(index)) for x in ids), dtype=np.int64)
    return tuple(index), codes


@dataclass(frozen=True, slots=True)
class ItemAttributes:
    """What is known about one item: tags and categories it matches (0..1), whom it targets, its validity.

    ``regions`` / ``models`` empty: the item is for everyone; otherwise only users whose region (model) is
    listed get it. ``valid_from`` / ``valid_until`` (seconds since the epoch, None: open) bound when it may
    be recommended: an expired offer is never shown.
    """

    tags: Mapping[str, float] = field(default_factory=dict)
    categories: Mapping[str, float] = field(default_factory=dict)
    regions: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    valid_from: float | None = None
    valid_until: float | None = None


@dataclass(frozen=True, slots=True)
class UserAttributes:
    """A customer's portrait: tag scores and category preferences (0..1), region and vehicle model."""

    tags: Mapping[str, float] = field(default_factory=dict)
    categories: Mapping[str, float] = field(default_factory=dict)
    region: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ItemFeatures:
    """Item id -> attributes. Items listed here but never interacted with are still recommendable."""

    items: Mapping[str, ItemAttributes]


@dataclass(frozen=True, slots=True)
class UserFeatures:
    """User id -> portrait. Users listed here but without interactions are cold-start users."""

    users: Mapping[str, UserAttributes]

    def get(self, user: str) -> UserAttributes | None:
        """The user's attributes, or None."""
        return self.users.get(user)
